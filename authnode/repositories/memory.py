"""In-memory twins of the stores, for fast tests of the account flows (no server, any
async backend). ``tests/contract`` runs one suite against each twin and its MongoDB
repository, so they answer alike.

Each twin keeps plain dicts of frozen records. Every method yields once before it acts,
as a round trip to the database would, so concurrent callers interleave between calls;
within a call nothing else runs, so a compare-and-set is atomic, as the repositories'
guarded writes are. Times are kept as BSON keeps them (whole milliseconds), and a store's
"now" is always the caller's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio.lowlevel

from authnode.repositories.records import (
    AdminKey,
    AuditEvent,
    EmailToken,
    Identity,
    Passkey,
    Registration,
    SecondFactors,
    Session,
    User,
    WebhookDelivery,
    WebhookEndpoint,
    identity_id,
    spent_prefix,
)
from authnode.repositories.sessions import (
    ACTIVE_LISTED_MAX,
    SPENT_KEPT_AFTER_TRIM,
    SPENT_KEPT_MAX,
)
from authnode.repositories.spend_guards import GUARD_TTL

_Record = TypeVar("_Record", User, Session, EmailToken, Registration, SecondFactors,
                   Passkey, AdminKey, AuditEvent, Identity)


def _ms(moment: datetime) -> datetime:
    """``moment`` as BSON stores it: whole milliseconds."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _stored(record: _Record) -> _Record:
    changes: dict[str, Any] = {
        field.name: _ms(value) for field in dataclasses.fields(record)
        if isinstance(value := getattr(record, field.name), datetime)}
    return dataclasses.replace(record, **changes)


async def _round_trip() -> None:
    await anyio.lowlevel.checkpoint()


class MemorySpendGuards:
    """Twin of :class:`~authnode.repositories.spend_guards.SpendGuards`."""

    def __init__(self) -> None:
        self._expiries: dict[str, datetime] = {}

    async def claim(self, key: str, now: datetime) -> bool:
        await _round_trip()
        if key in self._expiries:
            return False
        self._expiries[key] = _ms(now) + GUARD_TTL
        return True

    async def purge(self, now: datetime) -> int:
        await _round_trip()
        expired = [key for key, until in self._expiries.items() if until <= _ms(now)]
        for key in expired:
            del self._expiries[key]
        return len(expired)


class MemoryUserStore:
    """Twin of :class:`~authnode.repositories.users.UserRepository`: one account per
    address and per id; no replica, so a display read is never stale."""

    def __init__(self) -> None:
        self._users: dict[str, User] = {}
        self._ids_by_email: dict[str, str] = {}

    async def create(self, user: User, now: datetime) -> bool:
        await _round_trip()
        if user.email in self._ids_by_email or user.id in self._users:
            return False
        self._users[user.id] = _stored(user)
        self._ids_by_email[user.email] = user.id
        return True

    async def by_email(self, email: str) -> User | None:
        await _round_trip()
        user_id = self._ids_by_email.get(email)
        return self._users.get(user_id) if user_id is not None else None

    async def by_id(self, user_id: str) -> User | None:
        await _round_trip()
        return self._users.get(user_id)

    async def by_id_for_display(self, user_id: str) -> User | None:
        return await self.by_id(user_id)

    def _change(self, user_id: str, **changes: Any) -> User:
        user = self._users[user_id] = _stored(dataclasses.replace(self._users[user_id],
                                                                  **changes))
        return user

    async def mark_verified(self, user_id: str, credential_version: int,
                            now: datetime) -> User | None:
        await _round_trip()
        user = self._users.get(user_id)
        if user is None or user.credential_version != credential_version:
            return None
        return self._change(user_id, email_verified=True, updated_at=now)

    async def set_password(self, user_id: str, password_hash: str, now: datetime,
                           *, expected_hash: str | None = None,
                           expected_version: int | None = None,
                           verify_email: bool = False) -> User | None:
        await _round_trip()
        user = self._users.get(user_id)
        if user is None or expected_hash not in (None, user.password_hash) or \
                expected_version not in (None, user.credential_version):
            return None
        return self._change(user_id, password_hash=password_hash, updated_at=now,
                            password_changed_at=now,
                            email_verified=user.email_verified or verify_email,
                            credential_version=user.credential_version + 1)

    async def rehash_password(self, user_id: str, old_hash: str, new_hash: str) -> None:
        await _round_trip()
        user = self._users.get(user_id)
        if user is not None and user.password_hash == old_hash:
            self._change(user_id, password_hash=new_hash)

    async def update_name(self, user_id: str, name: str | None,
                          now: datetime) -> User | None:
        await _round_trip()
        if user_id not in self._users:
            return None
        return self._change(user_id, name=name, updated_at=now)

    async def set_disabled(self, user_id: str, disabled: bool,
                           now: datetime) -> User | None:
        await _round_trip()
        if user_id not in self._users:
            return None
        return self._change(user_id, disabled=disabled, updated_at=now)

    async def delete(self, user_id: str) -> bool:
        await _round_trip()
        user = self._users.pop(user_id, None)
        if user is None:
            return False
        if self._ids_by_email.get(user.email) == user_id:
            del self._ids_by_email[user.email]
        return True

    async def count(self) -> int:
        await _round_trip()
        return len(self._users)

    async def page(self, *, after_id: str | None, limit: int, email: str | None = None,
                   email_prefix: str | None = None,
                   created_after: datetime | None = None) -> list[User]:
        await _round_trip()
        found = sorted((u for u in self._users.values()
                        if (after_id is None or u.id > after_id)
                        and (email is None or u.email == email)
                        and (email is not None or email_prefix is None
                             or u.email.startswith(email_prefix))
                        and (created_after is None or (u.created_at is not None
                                                       and u.created_at > created_after))),
                       key=lambda u: u.id)
        return found[:limit]


class MemorySessionStore:
    """Twin of :class:`~authnode.repositories.sessions.SessionRepository`. ``guards``:
    shared with the email-token twin, as the one ``spend_guards`` collection is."""

    def __init__(self, guards: MemorySpendGuards | None = None) -> None:
        self._sessions: dict[str, Session] = {}
        self._guards = guards or MemorySpendGuards()

    def _live(self, session_id: str, refresh_hash: str, now: datetime) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None or session.refresh_hash != refresh_hash or \
                session.revoked_at is not None or session.expires_at <= _ms(now):
            return None
        return session

    def _set(self, session: Session, **changes: Any) -> Session:
        changed = self._sessions[session.id] = _stored(dataclasses.replace(session, **changes))
        return changed

    async def insert(self, session: Session) -> None:
        await _round_trip()
        if session.id in self._sessions:
            raise ValueError(f"session {session.id!r} exists already")
        self._set(session, spent=session.spent or ())

    async def by_id(self, session_id: str, *, with_spent: bool = False) -> Session | None:
        await _round_trip()
        session = self._sessions.get(session_id)
        if session is None or with_spent:
            return session
        return dataclasses.replace(session, spent=None)

    async def claim_rotation(self, session_id: str, current_hash: str,
                             now: datetime) -> str | None:
        await _round_trip()
        live = self._live(session_id, current_hash, now)
        if live is None or not await self._guards.claim(f"refresh:{current_hash}", now):
            return None
        return live.user_id

    async def rotate(self, session_id: str, current_hash: str, *, new_hash: str, nonce: str,
                     now: datetime) -> Session | None:
        await _round_trip()
        live = self._live(session_id, current_hash, now)
        if live is None:
            return None
        spent = (*(live.spent or ()), spent_prefix(current_hash))
        rotated = self._set(live, refresh_hash=new_hash, previous_hash=current_hash,
                            rotation_nonce=nonce, rotated_at=now, last_used_at=now,
                            spent=spent)
        if len(spent) > SPENT_KEPT_MAX:
            self._set(rotated, spent=spent[-SPENT_KEPT_AFTER_TRIM:])
        return rotated  # as the repository's update returns it: before the trim

    async def confirm_credentials(self, session_id: str, user_id: str,
                                  now: datetime) -> None:
        await _round_trip()
        session = self._sessions.get(session_id)
        if session is not None and session.user_id == user_id and session.revoked_at is None:
            self._set(session, credentials_at=now)

    async def reauthenticated(self, session_id: str, user_id: str, amr: tuple[str, ...],
                              now: datetime) -> bool:
        await _round_trip()
        session = self._sessions.get(session_id)
        if session is None or session.user_id != user_id or session.revoked_at is not None:
            return False
        self._set(session, amr=amr, auth_time=_ms(now))
        return True

    async def touch(self, session_id: str, now: datetime) -> None:
        await _round_trip()
        if (session := self._sessions.get(session_id)) is not None:
            self._set(session, last_used_at=now)

    async def revoke(self, session_id: str, now: datetime,
                     *, user_id: str | None = None) -> bool:
        await _round_trip()
        session = self._sessions.get(session_id)
        if session is None or session.revoked_at is not None or \
                user_id not in (None, session.user_id):
            return False
        self._set(session, revoked_at=now)
        return True

    async def revoke_all(self, user_id: str, now: datetime,
                         *, except_session: str | None = None) -> int:
        await _round_trip()
        doomed = [session for session in self._sessions.values()
                  if session.user_id == user_id and session.revoked_at is None
                  and session.id != except_session]
        for session in doomed:
            self._set(session, revoked_at=now)
        return len(doomed)

    def _unexpired(self, user_id: str, now: datetime) -> list[Session]:
        return [session for session in self._sessions.values()
                if session.user_id == user_id and session.expires_at > _ms(now)]

    async def active_for_user(self, user_id: str, now: datetime) -> list[Session]:
        await _round_trip()
        live = [dataclasses.replace(session, spent=None)
                for session in self._unexpired(user_id, now) if session.revoked_at is None]
        live.sort(key=lambda session: session.created_at, reverse=True)
        return live[:ACTIVE_LISTED_MAX]

    async def live_ids_for_user(self, user_id: str, now: datetime) -> list[str]:
        await _round_trip()
        return [session.id for session in self._unexpired(user_id, now)
                if session.revoked_at is None]

    async def ids_to_mark(self, user_id: str, now: datetime,
                          revoked_since: datetime) -> list[str]:
        await _round_trip()
        return [session.id for session in self._unexpired(user_id, now)
                if session.revoked_at is None or session.revoked_at > _ms(revoked_since)]

    async def delete_for_user(self, user_id: str) -> None:
        await _round_trip()
        for session_id in [s.id for s in self._sessions.values() if s.user_id == user_id]:
            del self._sessions[session_id]

    async def purge(self, now: datetime, revoked_before: datetime) -> int:
        await _round_trip()
        doomed = [session.id for session in self._sessions.values()
                  if session.expires_at <= _ms(now) or (
                      session.revoked_at is not None
                      and session.revoked_at <= _ms(revoked_before))]
        for session_id in doomed:
            del self._sessions[session_id]
        return len(doomed) + await self._guards.purge(now)


class MemoryEmailTokenStore:
    """Twin of :class:`~authnode.repositories.email_tokens.EmailTokenRepository`."""

    def __init__(self, guards: MemorySpendGuards | None = None) -> None:
        self._tokens: dict[str, EmailToken] = {}
        self._guards = guards or MemorySpendGuards()

    def _usable(self, token_hash: str, kind: str, now: datetime) -> EmailToken | None:
        token = self._tokens.get(token_hash)
        if token is None or token.kind != kind or token.used_at is not None or \
                token.expires_at <= _ms(now):
            return None
        return token

    async def insert(self, token: EmailToken) -> None:
        await _round_trip()
        if token.id in self._tokens:
            raise ValueError("an email token is inserted once")
        self._tokens[token.id] = _stored(token)

    async def consume(self, token_hash: str, kind: str, now: datetime) -> EmailToken | None:
        if not await self._guards.claim(f"email:{token_hash}", now):
            return None
        await _round_trip()
        token = self._usable(token_hash, kind, now)
        if token is None:
            return None
        spent = self._tokens[token_hash] = _stored(dataclasses.replace(token, used_at=now))
        return spent

    async def is_usable(self, token_hash: str, kind: str, now: datetime) -> bool:
        await _round_trip()
        return self._usable(token_hash, kind, now) is not None

    async def owner(self, token_hash: str) -> str | None:
        await _round_trip()
        token = self._tokens.get(token_hash)
        return token.user_id if token is not None else None

    async def delete_for_user(self, user_id: str) -> None:
        await _round_trip()
        for token_hash in [t.id for t in self._tokens.values() if t.user_id == user_id]:
            del self._tokens[token_hash]

    async def purge(self, now: datetime) -> int:
        await _round_trip()
        doomed = [token.id for token in self._tokens.values()
                  if token.expires_at <= _ms(now) or token.used_at is not None]
        for token_hash in doomed:
            del self._tokens[token_hash]
        return len(doomed)


class MemoryRegistrationStore:
    """Twin of :class:`~authnode.repositories.registrations.RegistrationRepository`."""

    def __init__(self) -> None:
        self._registrations: dict[str, Registration] = {}

    async def insert(self, registration: Registration) -> None:
        await _round_trip()
        if registration.id in self._registrations:
            raise ValueError("a registration is inserted once")
        self._registrations[registration.id] = _stored(registration)

    async def live(self, registration_id: str, now: datetime) -> Registration | None:
        await _round_trip()
        registration = self._registrations.get(registration_id)
        if registration is None or registration.expires_at <= _ms(now):
            return None
        return registration

    async def newest_live(self, email: str, now: datetime) -> Registration | None:
        await _round_trip()
        live = [registration for registration in self._registrations.values()
                if registration.email == email and registration.expires_at > _ms(now)]
        return max(live, key=lambda registration: registration.created_at, default=None)

    async def extend(self, registration_id: str, until: datetime) -> None:
        await _round_trip()
        registration = self._registrations.get(registration_id)
        if registration is not None and registration.expires_at < _ms(until):
            self._registrations[registration_id] = _stored(
                dataclasses.replace(registration, expires_at=until))

    async def delete(self, registration_id: str) -> None:
        await _round_trip()
        self._registrations.pop(registration_id, None)

    async def delete_for_email(self, email: str) -> int:
        await _round_trip()
        doomed = [r.id for r in self._registrations.values() if r.email == email]
        for registration_id in doomed:
            del self._registrations[registration_id]
        return len(doomed)

    async def purge(self, now: datetime) -> int:
        await _round_trip()
        doomed = [r.id for r in self._registrations.values() if r.expires_at <= _ms(now)]
        for registration_id in doomed:
            del self._registrations[registration_id]
        return len(doomed)


class MemorySentEmailStore:
    """Twin of :class:`~authnode.repositories.sent_emails.SentEmailRepository`."""

    def __init__(self) -> None:
        self._sent_at: dict[str, datetime] = {}

    async def was_sent(self, key: str) -> bool:
        await _round_trip()
        return key in self._sent_at

    async def record(self, key: str, kind: str, now: datetime) -> None:
        await _round_trip()
        self._sent_at.setdefault(key, _ms(now))

    async def purge(self, sent_before: datetime) -> int:
        await _round_trip()
        doomed = [key for key, sent_at in self._sent_at.items() if sent_at <= _ms(sent_before)]
        for key in doomed:
            del self._sent_at[key]
        return len(doomed)


class MemorySecondFactorStore:
    """Twin of :class:`~authnode.repositories.second_factors.SecondFactorRepository`."""

    def __init__(self) -> None:
        self._factors: dict[str, SecondFactors] = {}

    async def get(self, user_id: str) -> SecondFactors | None:
        await _round_trip()
        return self._factors.get(user_id)

    async def replace(self, factors: SecondFactors) -> bool:
        await _round_trip()
        stored = self._factors.get(factors.user_id)
        if (stored.version if stored else 0) != factors.version - 1:
            return False
        self._factors[factors.user_id] = _stored(dataclasses.replace(
            factors, passkeys=tuple(_stored(p) for p in factors.passkeys)))
        return True

    async def delete(self, user_id: str) -> bool:
        await _round_trip()
        return self._factors.pop(user_id, None) is not None


class MemorySigningKeyStore:
    """Twin of :class:`~authnode.repositories.signing_keys.SigningKeyRepository`: key
    documents (dicts, as the key ring writes them), unique by kid and by generation."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []

    async def insert(self, doc: dict[str, Any]) -> bool:
        await _round_trip()
        if any(d["_id"] == doc["_id"] or d["generation"] == doc["generation"]
               for d in self.docs):
            return False
        self.docs.append(dict(doc))
        return True

    async def newest(self, limit: int) -> list[dict[str, Any]]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        await _round_trip()
        ordered = sorted(self.docs, key=lambda d: (d["generation"], d["created_at"]),
                         reverse=True)
        return [dict(d) for d in ordered[:limit]]

    async def retire(self, kid: str, at: datetime) -> Literal["retired", "already retired",
                                                               "missing"]:
        await _round_trip()
        for doc in self.docs:
            if doc["_id"] == kid:
                if doc.get("retired_at") is not None:
                    return "already retired"
                doc["retired_at"] = _ms(at)
                doc.pop("sealed_private_key", None)
                return "retired"
        return "missing"

    async def update(self, kid: str, expected_mac: bytes | None,
                     fields: Mapping[str, Any]) -> bool:
        await _round_trip()
        for doc in self.docs:
            unchanged = ("mac" not in doc if expected_mac is None
                         else doc.get("mac") == expected_mac)
            if doc["_id"] == kid and unchanged:
                doc.update(fields)
                return True
        return False

    async def delete(self, kids: Sequence[str]) -> int:
        await _round_trip()
        before = len(self.docs)
        self.docs = [doc for doc in self.docs if doc["_id"] not in kids]
        return before - len(self.docs)


class MemoryAdminKeyStore:
    """Twin of :class:`~authnode.repositories.admin_keys.AdminKeyRepository`."""

    def __init__(self) -> None:
        self._keys: dict[str, AdminKey] = {}

    async def insert(self, key: AdminKey) -> None:
        await _round_trip()
        if key.digest in self._keys:
            raise ValueError("duplicate admin key")
        self._keys[key.digest] = _stored(key)

    async def by_digest(self, digest: str) -> AdminKey | None:
        await _round_trip()
        return self._keys.get(digest)

    async def all(self) -> list[AdminKey]:
        await _round_trip()
        return sorted(self._keys.values(), key=lambda k: (k.created_at, k.id))

    async def revoke(self, key_id: str, now: datetime) -> bool:
        await _round_trip()
        for digest, key in self._keys.items():
            if key.id == key_id and key.revoked_at is None:
                self._keys[digest] = dataclasses.replace(key, revoked_at=_ms(now))
                return True
        return False


class MemoryAuditStore:
    """Twin of :class:`~authnode.repositories.audit.AuditRepository`."""

    def __init__(self) -> None:
        self._events: dict[str, AuditEvent] = {}

    async def append(self, events: list[AuditEvent]) -> None:
        await _round_trip()
        for event in events:
            self._events[event.id] = _stored(event)

    async def page(self, *, before_id: str | None, limit: int, user_id: str | None = None,
                   event: str | None = None, after: datetime | None = None
                   ) -> list[AuditEvent]:
        await _round_trip()
        found = sorted((e for e in self._events.values()
                        if (before_id is None or e.id < before_id)
                        and (user_id is None or e.user_id == user_id)
                        and (event is None or e.event == event)
                        and (after is None or e.at > after)),
                       key=lambda e: e.id, reverse=True)
        return found[:limit]

    async def purge(self, before: datetime) -> int:
        await _round_trip()
        old = [i for i, e in self._events.items() if e.at < before]
        for event_id in old:
            del self._events[event_id]
        return len(old)

class MemoryWebhookEndpointStore:
    """Twin of :class:`~authnode.repositories.webhooks.WebhookEndpointRepository`."""

    def __init__(self) -> None:
        self._endpoints: dict[str, WebhookEndpoint] = {}

    async def insert(self, endpoint: WebhookEndpoint) -> None:
        await _round_trip()
        if endpoint.id in self._endpoints:
            raise ValueError(f"duplicate endpoint id {endpoint.id}")
        self._endpoints[endpoint.id] = dataclasses.replace(
            endpoint, created_at=_ms(endpoint.created_at),
            deleted_at=_ms(endpoint.deleted_at) if endpoint.deleted_at else None)

    async def by_id(self, endpoint_id: str) -> WebhookEndpoint | None:
        await _round_trip()
        return self._endpoints.get(endpoint_id)

    async def live(self) -> list[WebhookEndpoint]:
        await _round_trip()
        return sorted((e for e in self._endpoints.values() if e.deleted_at is None),
                      key=lambda e: (e.created_at, e.id))

    async def delete(self, endpoint_id: str, now: datetime) -> bool:
        await _round_trip()
        found = self._endpoints.get(endpoint_id)
        if found is None or found.deleted_at is not None:
            return False
        self._endpoints[endpoint_id] = dataclasses.replace(found, deleted_at=_ms(now),
                                                           sealed_secret=None)
        return True


class MemoryWebhookDeliveryStore:
    """Twin of :class:`~authnode.repositories.webhooks.WebhookDeliveryRepository`."""

    def __init__(self) -> None:
        self._deliveries: dict[str, WebhookDelivery] = {}

    async def get(self, delivery_id: str) -> WebhookDelivery | None:
        await _round_trip()
        return self._deliveries.get(delivery_id)

    async def replace(self, delivery: WebhookDelivery) -> bool:
        await _round_trip()
        stored = self._deliveries.get(delivery.id)
        if (stored.version if stored else 0) != delivery.version - 1:
            return False
        self._deliveries[delivery.id] = dataclasses.replace(
            delivery, created_at=_ms(delivery.created_at), updated_at=_ms(delivery.updated_at),
            attempts=tuple(dataclasses.replace(a, at=_ms(a.at)) for a in delivery.attempts))
        return True

    async def for_endpoint(self, endpoint_id: str, limit: int) -> list[WebhookDelivery]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        await _round_trip()
        found = sorted((d for d in self._deliveries.values() if d.endpoint_id == endpoint_id),
                       key=lambda d: (d.created_at, d.id), reverse=True)
        return found[:limit]

    async def purge(self, updated_before: datetime) -> int:
        await _round_trip()
        doomed = [key for key, d in self._deliveries.items()
                  if d.updated_at < _ms(updated_before)]
        for key in doomed:
            del self._deliveries[key]
        return len(doomed)


if TYPE_CHECKING:  # mypy checks that both sides of each contract satisfy its Protocol
    from authnode.clients.mongo import MongoHandles
    from authnode.repositories import protocols
    from authnode.repositories.admin_keys import AdminKeyRepository
    from authnode.repositories.audit import AuditRepository
    from authnode.repositories.email_tokens import EmailTokenRepository
    from authnode.repositories.registrations import RegistrationRepository
    from authnode.repositories.second_factors import SecondFactorRepository
    from authnode.repositories.sent_emails import SentEmailRepository
    from authnode.repositories.sessions import SessionRepository
    from authnode.repositories.signing_keys import SigningKeyRepository
    from authnode.repositories.spend_guards import SpendGuards
    from authnode.repositories.users import UserRepository
    from authnode.tokens.keyring import SigningKeyStore

    def _both(mongo: MongoHandles) -> None:
        users: list[protocols.UserStore] = [MemoryUserStore(), UserRepository(mongo)]
        sessions: list[protocols.SessionStore] = [MemorySessionStore(),
                                                  SessionRepository(mongo)]
        email_tokens: list[protocols.EmailTokenStore] = [MemoryEmailTokenStore(),
                                                         EmailTokenRepository(mongo)]
        registrations: list[protocols.RegistrationStore] = [MemoryRegistrationStore(),
                                                            RegistrationRepository(mongo)]
        sent_emails: list[protocols.SentEmailStore] = [MemorySentEmailStore(),
                                                       SentEmailRepository(mongo)]
        guards: list[protocols.SpendGuardStore] = [MemorySpendGuards(), SpendGuards(mongo)]
        factors: list[protocols.SecondFactorStore] = [MemorySecondFactorStore(),
                                                      SecondFactorRepository(mongo)]
        keys: list[SigningKeyStore] = [MemorySigningKeyStore(),
                                       SigningKeyRepository(mongo.primary)]
        admin_keys: list[protocols.AdminKeyStore] = [MemoryAdminKeyStore(),
                                                     AdminKeyRepository(mongo)]
        audit: list[protocols.AuditStore] = [MemoryAuditStore(), AuditRepository(mongo)]
        del users, sessions, email_tokens, registrations, sent_emails, guards, factors, keys
        del admin_keys, audit


    from authnode.repositories.webhooks import (
        WebhookDeliveryRepository,
        WebhookEndpointRepository,
    )

    def _both_webhooks(mongo: MongoHandles) -> None:
        endpoints: list[protocols.WebhookEndpointStore] = [MemoryWebhookEndpointStore(),
                                                           WebhookEndpointRepository(mongo)]
        deliveries: list[protocols.WebhookDeliveryStore] = [MemoryWebhookDeliveryStore(),
                                                            WebhookDeliveryRepository(mongo)]
        del endpoints, deliveries


class MemoryIdentityStore:
    """Twin of :class:`~authnode.repositories.identities.IdentityRepository`."""

    def __init__(self) -> None:
        self._identities: dict[str, Identity] = {}

    async def insert(self, identity: Identity) -> bool:
        await _round_trip()
        if identity.id in self._identities:
            return False
        self._identities[identity.id] = _stored(identity)
        return True

    async def by_subject(self, provider: str, subject: str) -> Identity | None:
        await _round_trip()
        found = self._identities.get(identity_id(provider, subject))
        return found if found is not None and found.subject == subject else None

    async def for_user(self, user_id: str) -> list[Identity]:
        await _round_trip()
        mine = [i for i in self._identities.values() if i.user_id == user_id]
        return sorted(mine, key=lambda i: (i.created_at, i.id))

    async def delete(self, user_id: str, identity_id: str) -> bool:
        await _round_trip()
        found = self._identities.get(identity_id)
        if found is None or found.user_id != user_id:
            return False
        del self._identities[identity_id]
        return True

    async def delete_for_user(self, user_id: str) -> int:
        await _round_trip()
        mine = [key for key, i in self._identities.items() if i.user_id == user_id]
        for key in mine:
            del self._identities[key]
        return len(mine)
