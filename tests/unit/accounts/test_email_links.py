"""Email-link rules, on the in-memory stores: each registration's link creates the
account that registration asked for; the first link confirmed wins and the others of the
address die; a link works once, even under concurrent clicks; links expire."""

from __future__ import annotations

import anyio
import pytest

from authnode.accounts import registration
from authnode.accounts.authentication import login
from authnode.errors import InvalidCredentials, InvalidEmailToken
from tests.unit.accounts._twins import Twins, twins

ADDRESS = "ada@example.com"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


async def _register(env: Twins, password: str, name: str) -> str:
    """Register, let the worker send the link; the link's token."""
    await registration.register(env.accounts, email=ADDRESS, password=password, name=name,
                                ip="192.0.2.1")
    assert await env.deliver_all() == ["sent"]
    return env.link_tokens(ADDRESS)[-1]


@pytest.mark.anyio
async def test_the_first_confirmed_link_wins_with_its_own_registration() -> None:
    env = await twins()
    first = await _register(env, "first secret 1", "First")
    second = await _register(env, "second secret 2", "Second")
    assert await registration.link_is_usable(env.accounts, token=first)

    user = await registration.verify_email(env.accounts, token=second)
    assert (user["email"], user["name"], user["email_verified"]) == (ADDRESS, "Second", True)
    # The other registration's link died with it (the page still offers it: confirming
    # is what fails, see link_is_usable).
    with pytest.raises(InvalidEmailToken):
        await registration.verify_email(env.accounts, token=first)
    # The account has the winning registration's password, not the other's.
    issued = await login(env.accounts, email=ADDRESS, password="second secret 2",
                         ip="192.0.2.1", user_agent="test")
    assert issued.user["id"] == user["id"]
    with pytest.raises(InvalidCredentials):
        await login(env.accounts, email=ADDRESS, password="first secret 1", ip="192.0.2.1",
                    user_agent="test")


@pytest.mark.anyio
async def test_a_link_works_once() -> None:
    env = await twins()
    token = await _register(env, "correct horse 1", "Ada")
    await registration.verify_email(env.accounts, token=token)
    assert not await registration.link_is_usable(env.accounts, token=token)
    with pytest.raises(InvalidEmailToken):
        await registration.verify_email(env.accounts, token=token)


@pytest.mark.anyio
async def test_concurrent_clicks_on_one_link_create_one_account() -> None:
    env = await twins()
    token = await _register(env, "correct horse 1", "Ada")
    outcomes: list[str] = []

    async def click() -> None:
        try:
            user = await registration.verify_email(env.accounts, token=token)
        except InvalidEmailToken:
            outcomes.append("refused")
        else:
            outcomes.append(user["id"])

    async with anyio.create_task_group() as clicks:
        for _ in range(4):
            clicks.start_soon(click)
    assert len(outcomes) == 4 and outcomes.count("refused") == 3
    assert await env.accounts.users.count() == 1


@pytest.mark.anyio
async def test_concurrent_links_of_one_address_create_one_account() -> None:
    env = await twins()
    tokens = [await _register(env, f"correct horse {n}", f"N{n}") for n in range(3)]
    created: list[str] = []

    async def confirm(token: str) -> None:
        try:
            created.append((await registration.verify_email(env.accounts, token=token))["id"])
        except InvalidEmailToken:
            pass

    async with anyio.create_task_group() as confirmations:
        for token in tokens:
            confirmations.start_soon(confirm, token)
    assert len(created) == 1
    assert await env.accounts.users.count() == 1
    for token in tokens:
        with pytest.raises(InvalidEmailToken):
            await registration.verify_email(env.accounts, token=token)


@pytest.mark.anyio
async def test_a_link_expires() -> None:
    env = await twins()
    token = await _register(env, "correct horse 1", "Ada")
    env.clock.advance(env.accounts.settings.verify_email_token_ttl_s)
    assert not await registration.link_is_usable(env.accounts, token=token)
    with pytest.raises(InvalidEmailToken):
        await registration.verify_email(env.accounts, token=token)
    assert await env.accounts.users.count() == 0


@pytest.mark.anyio
async def test_registering_a_taken_address_sends_a_notice_and_no_link() -> None:
    env = await twins()
    await registration.verify_email(env.accounts,
                                    token=await _register(env, "correct horse 1", "Ada"))
    await registration.register(env.accounts, email=ADDRESS, password="another one 2",
                                name="Eve", ip="192.0.2.9")
    assert await env.deliver_all() == ["sent"]
    assert env.sender.kinds()[-1] == "already_registered"
    assert len(env.link_tokens(ADDRESS)) == 1, "only the first registration's link"
