"""What the domain may ask of each store. The MongoDB repositories and the in-memory twins
(:mod:`authnode.repositories.memory`) both satisfy these; ``tests/contract`` checks that
they answer alike.

Every ``now`` is the caller's clock: expiry is decided by it, never by the store's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from authnode.repositories.records import (
    AdminKey,
    AuditEvent,
    EmailToken,
    Identity,
    Registration,
    SecondFactors,
    Session,
    User,
    WebhookDelivery,
    WebhookEndpoint,
)


class UserStore(Protocol):
    async def create(self, user: User, now: datetime) -> bool:
        """Insert a new account; False when its address has one already (one winner
        among concurrent creations of an address)."""
        ...

    async def by_email(self, email: str) -> User | None: ...

    async def by_id(self, user_id: str) -> User | None: ...

    async def by_id_for_display(self, user_id: str) -> User | None:
        """Like :meth:`by_id`, but may lag behind recent writes (a replica's read)."""
        ...

    async def mark_verified(self, user_id: str, credential_version: int,
                            now: datetime) -> User | None:
        """Verify the address, unless the credentials are no longer at that version."""
        ...

    async def set_password(self, user_id: str, password_hash: str, now: datetime,
                           *, expected_hash: str | None = None,
                           expected_version: int | None = None,
                           verify_email: bool = False) -> User | None:
        """Replace the password and bump the credential version, if the given
        expectations still hold; None otherwise (or for an unknown user)."""
        ...

    async def rehash_password(self, user_id: str, old_hash: str, new_hash: str) -> None:
        """Replace the hash only if it is still ``old_hash``."""
        ...

    async def update_name(self, user_id: str, name: str | None,
                          now: datetime) -> User | None: ...

    async def set_disabled(self, user_id: str, disabled: bool,
                           now: datetime) -> User | None: ...

    async def delete(self, user_id: str) -> bool:
        """Delete the account and free its address; False if there was none."""
        ...

    async def count(self) -> int: ...

    async def page(self, *, after_id: str | None, limit: int, email: str | None = None,
                   email_prefix: str | None = None,
                   created_after: datetime | None = None) -> list[User]:
        """Up to ``limit`` users in ``id`` order after ``after_id`` (the cursor), matching
        every filter given: the exact (normalized) address, an address prefix, accounts
        created after a time. Paging on ``id`` never skips or repeats a user."""
        ...


class SessionStore(Protocol):
    async def insert(self, session: Session) -> None: ...

    async def by_id(self, session_id: str, *, with_spent: bool = False) -> Session | None: ...

    async def claim_rotation(self, session_id: str, current_hash: str,
                             now: datetime) -> str | None:
        """The session's user id for the one caller that may rotate this live token;
        None for every other caller, and for a token that is not the live one."""
        ...

    async def rotate(self, session_id: str, current_hash: str, *, new_hash: str, nonce: str,
                     now: datetime) -> Session | None:
        """Swap the refresh hash if ``current_hash`` is still the live one, remembering
        it as spent; the rotated session (with ``spent``), or None. Two concurrent
        rotations may both pass on FerretDB v1: only the caller that won
        :meth:`claim_rotation` rotates."""
        ...

    async def confirm_credentials(self, session_id: str, user_id: str,
                                  now: datetime) -> None: ...

    async def reauthenticated(self, session_id: str, user_id: str, amr: tuple[str, ...],
                              now: datetime) -> bool:
        """Record a fresh proof of identity (``amr``, at ``now``) in this live session of
        the user; False if it is not one."""
        ...

    async def touch(self, session_id: str, now: datetime) -> None: ...

    async def revoke(self, session_id: str, now: datetime,
                     *, user_id: str | None = None) -> bool:
        """End one unrevoked session (with ``user_id``: only if it is that user's);
        whether this call ended it."""
        ...

    async def revoke_all(self, user_id: str, now: datetime,
                         *, except_session: str | None = None) -> int: ...

    async def active_for_user(self, user_id: str, now: datetime) -> list[Session]:
        """Live sessions, newest first, without ``spent``; may lag behind writes."""
        ...

    async def live_ids_for_user(self, user_id: str, now: datetime) -> list[str]: ...

    async def ids_to_mark(self, user_id: str, now: datetime,
                          revoked_since: datetime) -> list[str]:
        """Unexpired sessions that are live or were revoked after ``revoked_since``."""
        ...

    async def delete_for_user(self, user_id: str) -> None: ...

    async def purge(self, now: datetime, revoked_before: datetime) -> int:
        """Delete expired sessions, those revoked by ``revoked_before``, and expired spend
        guards; how many of them."""
        ...


class EmailTokenStore(Protocol):
    async def insert(self, token: EmailToken) -> None: ...

    async def consume(self, token_hash: str, kind: str, now: datetime) -> EmailToken | None:
        """Spend a usable token of this kind, once; the spent token, or None."""
        ...

    async def is_usable(self, token_hash: str, kind: str, now: datetime) -> bool: ...

    async def owner(self, token_hash: str) -> str | None:
        """The user a token names (spent or not), if any."""
        ...

    async def delete_for_user(self, user_id: str) -> None: ...

    async def purge(self, now: datetime) -> int:
        """Delete expired and spent tokens; how many."""
        ...


class RegistrationStore(Protocol):
    async def insert(self, registration: Registration) -> None: ...

    async def live(self, registration_id: str, now: datetime) -> Registration | None: ...

    async def newest_live(self, email: str, now: datetime) -> Registration | None: ...

    async def extend(self, registration_id: str, until: datetime) -> None:
        """Keep the registration at least until ``until`` (never shortens it)."""
        ...

    async def delete(self, registration_id: str) -> None: ...

    async def delete_for_email(self, email: str) -> int: ...

    async def purge(self, now: datetime) -> int: ...


class SentEmailStore(Protocol):
    async def was_sent(self, key: str) -> bool: ...

    async def record(self, key: str, kind: str, now: datetime) -> None:
        """Remember ``key`` as sent (again: no effect)."""
        ...

    async def purge(self, sent_before: datetime) -> int: ...


class SpendGuardStore(Protocol):
    async def claim(self, key: str, now: datetime) -> bool:
        """True for the first caller with this ``key``; False for every later one, until
        the guard expires and is purged."""
        ...

    async def purge(self, now: datetime) -> int: ...


class SecondFactorStore(Protocol):
    async def get(self, user_id: str) -> SecondFactors | None: ...

    async def replace(self, factors: SecondFactors) -> bool:
        """Store ``factors`` if the stored version is ``factors.version - 1`` (none stored:
        version 1); False when another change came first."""
        ...

    async def delete(self, user_id: str) -> bool: ...


class AdminKeyStore(Protocol):
    async def insert(self, key: AdminKey) -> None: ...

    async def by_digest(self, digest: str) -> AdminKey | None: ...

    async def all(self) -> list[AdminKey]:
        """Every key, oldest first (revoked ones too)."""
        ...

    async def revoke(self, key_id: str, now: datetime) -> bool:
        """Revoke the key; False if there is no such key or it was revoked already."""
        ...


class AuditStore(Protocol):
    async def append(self, events: list[AuditEvent]) -> None: ...

    async def page(self, *, before_id: str | None, limit: int, user_id: str | None = None,
                   event: str | None = None, after: datetime | None = None
                   ) -> list[AuditEvent]:
        """Up to ``limit`` events, newest first, older than the cursor ``before_id``,
        matching every filter given."""
        ...

    async def purge(self, before: datetime) -> int: ...

class WebhookEndpointStore(Protocol):
    async def insert(self, endpoint: WebhookEndpoint) -> None: ...

    async def by_id(self, endpoint_id: str) -> WebhookEndpoint | None:
        """The endpoint, deleted or not."""
        ...

    async def live(self) -> list[WebhookEndpoint]:
        """The endpoints not deleted, oldest first."""
        ...

    async def delete(self, endpoint_id: str, now: datetime) -> bool:
        """Mark a live endpoint deleted and drop its secret; False if there was none."""
        ...


class WebhookDeliveryStore(Protocol):
    async def get(self, delivery_id: str) -> WebhookDelivery | None: ...

    async def replace(self, delivery: WebhookDelivery) -> bool:
        """Store ``delivery`` if the stored version is ``delivery.version - 1`` (none
        stored: version 1); False when another change came first."""
        ...

    async def for_endpoint(self, endpoint_id: str, limit: int) -> list[WebhookDelivery]:
        """Up to ``limit`` deliveries to the endpoint, newest first."""
        ...

    async def purge(self, updated_before: datetime) -> int:
        """Delete deliveries last changed before ``updated_before``; how many."""
        ...


class IdentityStore(Protocol):
    async def insert(self, identity: Identity) -> bool:
        """Link it; False when this provider's ``sub`` is already linked (to anyone)."""

    async def by_subject(self, provider: str, subject: str) -> Identity | None: ...

    async def for_user(self, user_id: str) -> list[Identity]:
        """Oldest first."""

    async def delete(self, user_id: str, identity_id: str) -> bool:
        """Unlink one of this user's identities; False if it is not theirs."""

    async def delete_for_user(self, user_id: str) -> int: ...
