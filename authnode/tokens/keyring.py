"""The in-memory ring of signing keys: the current key signs, current and previous verify.

The store (MongoDB in production) holds every key; each instance keeps the newest two in
memory and re-reads them at most every ``refresh_interval_s``, or sooner when a token
names a kid it has not seen (throttled, so garbage kids cannot hammer the store). The
newest key signs; the one before it stays published and verifiable, so tokens signed
just before a rotation keep working until they expire.

Rotation inserts generation N+1; the store's unique index on ``generation`` lets exactly
one of several racing instances win, and the losers simply adopt the winner's key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from authnode.errors import Unavailable
from authnode.settings import Secret
from authnode.tokens.signing_keys import (
    KID_PATTERN,
    SigningKey,
    SigningKeyError,
    from_document,
    generate_signing_key,
    public_jwk,
    to_document,
)

log = logging.getLogger(__name__)

KEPT_KEYS = 2  # current and previous
UNKNOWN_KID_REFRESH_S = 5.0
FAILED_REFRESH_RETRY_S = 5.0


class SigningKeyStore(Protocol):
    async def insert(self, doc: dict[str, Any]) -> bool:
        """Insert a key document; False if its generation or kid already exists."""
        ...

    async def newest(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` key documents, highest generation first."""
        ...


class KeyRingNotLoaded(RuntimeError):
    """``KeyRing.load()`` has not completed yet."""


class KeyRing:
    def __init__(
        self,
        store: SigningKeyStore,
        secret: Secret,
        *,
        rotation_s: int,
        clock: Callable[[], float] = time.time,
        refresh_interval_s: float = 30.0,
        unknown_kid_refresh_s: float = UNKNOWN_KID_REFRESH_S,
    ) -> None:
        if rotation_s < 1:
            raise ValueError("rotation_s must be at least 1")
        self._store = store
        self._secret = secret
        self._rotation_s = rotation_s
        self._clock = clock
        self._refresh_interval_s = refresh_interval_s
        self._unknown_kid_refresh_s = unknown_kid_refresh_s
        self._lock = anyio.Lock()
        self._signing: SigningKey | None = None
        self._verifying: dict[str, SigningKey] = {}
        self._published: tuple[dict[str, str], ...] = ()
        self._newest_generation = 0
        self._newest_created_at: datetime | None = None
        self._next_refresh_at = 0.0
        self._unknown_kid_refresh_at = 0.0

    # ------------------------------------------------------------------ reading

    def current_signing_key(self) -> SigningKey:
        if self._signing is None:
            raise KeyRingNotLoaded("KeyRing.load() must complete before signing")
        return self._signing

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The published key set: current key first, then the previous one."""
        return {"keys": [dict(jwk) for jwk in self._published]}

    async def public_key_for(self, kid: object) -> Ed25519PublicKey | None:
        """The verifying key for ``kid``, or None. An unknown kid triggers a re-read of the
        store at most once per ``unknown_kid_refresh_s``; raises :class:`Unavailable` if
        that re-read fails."""
        if not isinstance(kid, str):
            return None
        key = self._verifying.get(kid)
        if key is not None:
            return key.public_key
        if not KID_PATTERN.fullmatch(kid):
            return None
        if self._clock() < self._unknown_kid_refresh_at:
            return None
        async with self._lock:
            key = self._verifying.get(kid)
            if key is None and self._clock() >= self._unknown_kid_refresh_at:
                self._unknown_kid_refresh_at = self._clock() + self._unknown_kid_refresh_s
                await self._refresh_locked()
                key = self._verifying.get(kid)
        return None if key is None else key.public_key

    # ------------------------------------------------------------------ refreshing

    async def load(self) -> None:
        """Read the newest keys; create the first one if the store is empty.

        Raises :class:`SigningKeyError` if the newest key cannot be opened (for example,
        SECRET_KEY differs from the instance that created it).
        """
        async with self._lock:
            docs = await self._store.newest(KEPT_KEYS)
            if not docs:
                await self._insert_generation(1)
                docs = await self._store.newest(KEPT_KEYS)
            if not docs:
                raise SigningKeyError("the signing key store returned no key after an insert")
            self._apply(docs, strict=True)
            self._next_refresh_at = self._clock() + self._refresh_interval_s

    async def maybe_refresh(self) -> None:
        """Re-read the store if ``refresh_interval_s`` has passed; a time check otherwise.

        A store outage is logged and retried a little later: signing goes on with the keys
        in memory.
        """
        if self._clock() < self._next_refresh_at:
            return
        async with self._lock:
            if self._clock() < self._next_refresh_at:
                return
            try:
                await self._refresh_locked()
            except Unavailable:
                log.warning("could not refresh signing keys; retrying in %.0fs",
                            FAILED_REFRESH_RETRY_S)
                self._next_refresh_at = self._clock() + FAILED_REFRESH_RETRY_S

    async def refresh(self) -> None:
        """Re-read the store now."""
        async with self._lock:
            await self._refresh_locked()

    async def rotate(self) -> SigningKey:
        """Insert a new key now and sign with it; returns the key now current (another
        instance's, if it rotated at the same moment)."""
        async with self._lock:
            await self._refresh_locked()
            await self._insert_generation(self._newest_generation + 1)
            await self._refresh_locked()
            return self.current_signing_key()

    async def rotate_if_due(self) -> bool:
        """Rotate when the newest key is older than ``rotation_s``; True if this call did."""
        async with self._lock:
            await self._refresh_locked()
            created = self._newest_created_at
            if created is not None and self._clock() - created.timestamp() < self._rotation_s:
                return False
            inserted = await self._insert_generation(self._newest_generation + 1)
            await self._refresh_locked()
            if inserted:
                log.info("rotated the signing key; new kid %s", self.current_signing_key().kid)
            return inserted

    # ------------------------------------------------------------------ internals

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def _insert_generation(self, generation: int) -> bool:
        key = generate_signing_key(self._now(), generation=generation)
        return await self._store.insert(to_document(key, self._secret))

    async def _refresh_locked(self) -> None:
        docs = await self._store.newest(KEPT_KEYS)
        if docs:
            self._apply(docs, strict=False)
        else:
            log.error("the signing key store is empty; keeping the keys in memory")
        self._next_refresh_at = self._clock() + self._refresh_interval_s

    def _apply(self, docs: list[dict[str, Any]], *, strict: bool) -> None:
        """Adopt ``docs`` (newest first). ``strict`` raises when the newest key cannot be
        opened; otherwise that is logged and signing goes on with the current key."""
        verifying: list[SigningKey] = []
        signing: SigningKey | None = None
        for position, doc in enumerate(docs[:KEPT_KEYS]):
            try:
                if position == 0:
                    signing = from_document(doc, self._secret)
                    verifying.append(signing)
                else:
                    verifying.append(from_document(doc, None))
            except SigningKeyError as error:
                if strict and position == 0:
                    raise
                log.error("ignoring a stored signing key: %s", error)
                if position == 0:
                    verifying.extend(self._public_only(doc))
        if signing is None:
            signing = self._signing
        if signing is None:
            raise SigningKeyError("no usable signing key in the store")
        if signing.kid not in {key.kid for key in verifying}:
            verifying.insert(0, signing)
        self._signing = signing
        self._verifying = {key.kid: key for key in verifying}
        self._published = tuple(public_jwk(key) for key in verifying)
        self._newest_generation = max(key.generation for key in verifying)
        self._newest_created_at = max(
            key.created_at for key in verifying if key.generation == self._newest_generation)

    @staticmethod
    def _public_only(doc: Mapping[str, Any]) -> list[SigningKey]:
        try:
            return [from_document(doc, None)]
        except SigningKeyError:
            return []
