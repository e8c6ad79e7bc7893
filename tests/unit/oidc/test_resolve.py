"""Who a provider's identity signs in as, on the in-memory twins:
new accounts, stale identities, an identity whose account is still being made, and
addresses the provider did not verify."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from authnode.accounts.models import lookup_email
from authnode.oidc.errors import InvalidState, ProviderEmailNotVerified
from authnode.oidc.flow import DANGLING_AFTER, Oidc
from authnode.repositories.records import Identity, User
from authnode.settings import OidcProvider, Secret
from tests.unit.accounts._twins import Twins, twins

pytestmark = pytest.mark.anyio

PROVIDER = OidcProvider(name="idp", issuer="https://idp.example.test", client_id="c",
                        client_secret=Secret("s"), scopes=("openid",), display_name="IdP")


class Unused:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"not used here: {name}")


def claims(sub: str = "s-1", email: str = "ann@example.com", verified: object = True,
           name: object = "Ann") -> dict[str, Any]:
    return {"sub": sub, "email": email, "email_verified": verified, "name": name}


async def setup() -> tuple[Twins, Oidc]:
    made = await twins()
    unused: Any = Unused()
    return made, Oidc(made.accounts, unused, unused, directory=unused)


async def test_a_new_identity_makes_a_password_less_account_once() -> None:
    _, oidc = await setup()
    user = await oidc._resolve(PROVIDER, claims(name="Ann\u0000"))
    assert isinstance(user, User) and not user.has_password and user.email_verified
    assert user.name is None, "a name with control characters is not used"
    again = await oidc._resolve(PROVIDER, claims(email="changed@example.com"))
    assert isinstance(again, User) and again.id == user.id, "the sub decides, not the email"


@pytest.mark.parametrize("verified", [False, "false", None, 1])
async def test_an_unverified_address_matches_and_makes_nothing(verified: object) -> None:
    made, oidc = await setup()
    with pytest.raises(ProviderEmailNotVerified):
        await oidc._resolve(PROVIDER, claims(verified=verified))
    assert await made.accounts.users.by_email(lookup_email("ann@example.com")) is None


async def test_a_matching_address_asks_for_a_link() -> None:
    made, oidc = await setup()
    first = await oidc._resolve(PROVIDER, claims(sub="a"))
    assert isinstance(first, User)
    link = await oidc._resolve(PROVIDER, claims(sub="b"))
    assert link == {"provider": "idp", "subject": "b", "email": "ann@example.com",
                    "user_id": first.id}
    assert await made.accounts.identities.by_subject("idp", "b") is None


async def test_a_stale_identity_is_dropped_and_a_young_one_waited_for() -> None:
    made, oidc = await setup()
    now = made.accounts.now()
    young = Identity(provider="idp", subject="s-1", user_id="being-made", email=None,
                     created_at=now)
    await made.accounts.identities.insert(young)
    with pytest.raises(InvalidState):  # its account never appears within the wait
        await oidc._resolve(PROVIDER, claims())
    made.clock.advance((DANGLING_AFTER + timedelta(seconds=1)).total_seconds())
    user = await oidc._resolve(PROVIDER, claims())
    assert isinstance(user, User) and user.id != "being-made"
    found = await made.accounts.identities.by_subject("idp", "s-1")
    assert found is not None and found.user_id == user.id
