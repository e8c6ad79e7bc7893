"""Operators' pieces on the in-memory stores: admin keys and scopes, the audit log's
queue (written in batches, failures counted, never raised), and user paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from authnode.errors import InvalidRequest, InvalidToken
from authnode.operators import keys
from authnode.operators.audit import AuditContext, AuditLog, bound
from authnode.operators.users import find
from authnode.repositories.memory import MemoryAdminKeyStore, MemoryAuditStore
from authnode.repositories.records import AuditEvent, User, new_user_id
from tests.unit.accounts._twins import twins

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.mark.anyio
async def test_a_key_works_for_its_scopes_until_revoked() -> None:
    env = await twins()
    store = MemoryAdminKeyStore()
    key, secret = await keys.create(store, name="support", scopes=["users:read"], now=NOW)
    assert secret.startswith("ak_") and key.digest == keys.digest(secret)
    settings, limiter = env.accounts.settings, env.accounts.limiter
    admin = await keys.authenticate(store, limiter, settings, secret,
                                    needs=frozenset({"users:read"}))
    assert admin.actor == "admin:support"
    with pytest.raises(keys.InsufficientScope):
        await keys.authenticate(store, limiter, settings, secret,
                                needs=frozenset({"users:write"}))
    for forged in (secret[:-1] + ("A" if secret[-1] != "A" else "B"), "ak_x", secret + "x",
                   "eyJhbGciOiJFZERTQSJ9.e30.sig"):
        with pytest.raises(InvalidToken):
            await keys.authenticate(store, limiter, settings, forged, needs=frozenset())
    assert await store.revoke(key.id, NOW)
    with pytest.raises(InvalidToken):
        await keys.authenticate(store, limiter, settings, secret, needs=frozenset())


@pytest.mark.anyio
async def test_bad_key_requests_are_clear_errors() -> None:
    store = MemoryAdminKeyStore()
    for name, scopes in (("", ["users:read"]), ("x", []), ("x", ["users:everything"]),
                         ("x" * 101, ["users:read"]), ("tab\there", ["users:read"])):
        with pytest.raises(InvalidRequest):
            await keys.create(store, name=name, scopes=scopes, now=NOW)


class FailingAuditStore(MemoryAuditStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def append(self, events: list[AuditEvent]) -> None:
        if self.down:
            raise ConnectionError("store down")
        await super().append(events)


@pytest.mark.anyio
async def test_the_audit_log_never_raises_and_counts_what_it_loses() -> None:
    lost: list[int] = []
    store = FailingAuditStore()
    audit = AuditLog(store, clock=lambda: NOW.timestamp(), on_failure=lambda: lost.append(1))
    with bound(AuditContext(actor="admin:support", ip="192.0.2.7", request_id="r1")):
        audit.record("user.disabled", user_id="u1")
    audit.record("login.failed", user_id=None, outcome="unknown_address")
    assert await audit.flush() == 0 and len(lost) == 2
    store.down = False
    audit.record("user.enabled", user_id="u1")
    assert await audit.flush() == 1
    [event] = await store.page(before_id=None, limit=10)
    assert (event.event, event.actor, event.ip) == ("user.enabled", "system", None)


@pytest.mark.anyio
async def test_user_pages_and_a_time_without_a_zone() -> None:
    env = await twins()
    for i in range(5):
        assert await env.accounts.users.create(User(
            id=new_user_id(), email=f"p{i}@example.com", name=None, password_hash="h",
            email_verified=True, disabled=False, credential_version=1,
            created_at=NOW + timedelta(seconds=i), updated_at=NOW), NOW)
    first = await find(env.accounts, email=None, email_prefix="p", created_after=None,
                       limit=2, cursor=None)
    assert len(first["users"]) == 2 and first["next_cursor"] is not None
    naive = (NOW + timedelta(seconds=2.5)).replace(tzinfo=None)
    later = await find(env.accounts, email=None, email_prefix=None, created_after=naive,
                       limit=None, cursor=None)
    assert sorted(u["email"] for u in later["users"]) == ["p3@example.com", "p4@example.com"]
    assert later["next_cursor"] is None
    with pytest.raises(InvalidRequest):
        await find(env.accounts, email=None, email_prefix=None, created_after=None,
                   limit=201, cursor=None)
