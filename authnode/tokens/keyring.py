"""The in-memory ring of signing keys: the current key signs, current and previous verify.

The store (MongoDB in production) holds every key; each instance keeps the keys it trusts
in memory and re-reads the store every ``refresh_interval_s`` (5 s), or sooner when a
token names a kid it has not seen (throttled, so garbage kids cannot hammer the store).

Which stored keys are trusted:

- only keys whose MAC verifies under SECRET_KEY (or SECRET_KEY_PREVIOUS) — a key planted
  by someone who can write to MongoDB but lacks the secret is refused;
- never a retired key (``authnode keys retire``);
- the newest of the rest signs and verifies;
- the one before it verifies only for ``access_token_ttl_s + refresh_interval_s +
  CLOCK_SKEW_S`` (15 min + 10 s by default) after the key that replaced it was created:
  long enough for every token it signed to expire — including those signed by an
  instance that had not re-read the store yet — and no more, so a leaked previous key
  is worthless soon after a rotation.

A retirement therefore reaches every instance within ``refresh_interval_s`` while MongoDB
answers: the next re-read drops the key, and the access-token cache of
:mod:`authnode.tokens.access` re-checks the key of a cached token on every use. While
MongoDB is unreachable an instance keeps the keys it has.

Rotation inserts generation N+1; the store's unique index on ``generation`` lets exactly
one of several racing instances win, and the losers simply adopt the winner's key.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import anyio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from authnode.errors import NotFound, Unavailable
from authnode.settings import Secret
from authnode.tokens.signing_keys import (
    KID_PATTERN,
    SigningKey,
    SigningKeyError,
    UnauthenticKey,
    from_document,
    generate_signing_key,
    public_jwk,
    restamp,
    to_document,
)

log = logging.getLogger(__name__)

KEY_REFRESH_S = 5.0  # also the bound on how long a retired key stays trusted anywhere
UNKNOWN_KID_REFRESH_S = 5.0
FAILED_REFRESH_RETRY_S = 5.0
CLOCK_SKEW_S = 5  # tolerated between hosts; access tokens use the same leeway
# Enough to see current and previous keys past a few retired (or refused) ones: the
# purge job deletes retired keys, so more than this never pile up in practice.
READ_KEYS = 8
SCAN_KEYS = 10_000  # the purge reads every key (one small document per rotation)
DEFAULT_ACCESS_TOKEN_TTL_S = 900
_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)

RetireOutcome = Literal["retired", "already retired", "missing"]


class SigningKeyStore(Protocol):
    async def insert(self, doc: dict[str, Any]) -> bool:
        """Insert a key document; False if its generation or kid already exists."""
        ...

    async def newest(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` key documents, highest generation first."""
        ...

    async def retire(self, kid: str, at: datetime) -> RetireOutcome:
        """Mark the key retired (and drop its sealed private half)."""
        ...

    async def delete(self, kids: Sequence[str]) -> int:
        """Delete these keys; the number deleted."""
        ...

    async def update(self, kid: str, expected_mac: bytes | None,
                     fields: Mapping[str, Any]) -> bool:
        """Set ``fields`` on the key if its ``mac`` is still ``expected_mac`` (None: none)."""
        ...


class KeyRingNotLoaded(RuntimeError):
    """``KeyRing.load()`` has not completed yet."""


@dataclass
class _View:
    """What one read of the store says: who signs, who verifies until when."""

    signing: SigningKey | None = None
    trusted: dict[str, tuple[SigningKey, float]] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)  # known kids never to trust
    retired: dict[str, SigningKey] = field(default_factory=dict)
    authentic: list[SigningKey] = field(default_factory=list)
    newest_generation: int = 0
    problems: dict[str, str] = field(default_factory=dict)  # kid -> why it was refused


class KeyRing:
    def __init__(
        self,
        store: SigningKeyStore,
        secret: Secret,
        *,
        rotation_s: int,
        clock: Callable[[], float] = time.time,
        refresh_interval_s: float = KEY_REFRESH_S,
        unknown_kid_refresh_s: float = UNKNOWN_KID_REFRESH_S,
        access_token_ttl_s: int = DEFAULT_ACCESS_TOKEN_TTL_S,
        previous_secret: Secret | None = None,
    ) -> None:
        """``previous_secret`` (SECRET_KEY_PREVIOUS) only authenticates and opens keys
        stored before SECRET_KEY changed; every write uses ``secret``."""
        if rotation_s < 1:
            raise ValueError("rotation_s must be at least 1")
        if access_token_ttl_s < 1:
            raise ValueError("access_token_ttl_s must be at least 1")
        self._store = store
        self._secrets: tuple[Secret, ...] = (
            (secret,) if previous_secret is None or previous_secret == secret
            else (secret, previous_secret))
        self._rotation_s = rotation_s
        self._clock = clock
        self._refresh_interval_s = refresh_interval_s
        self._unknown_kid_refresh_s = unknown_kid_refresh_s
        # Instances that have not re-read the store yet sign with the previous key for up
        # to refresh_interval_s after a rotation; their tokens must live out their lifetime.
        self._previous_trust_s = (access_token_ttl_s + math.ceil(refresh_interval_s)
                                  + CLOCK_SKEW_S)
        self._lock = anyio.Lock()
        self._signing: SigningKey | None = None
        self._trusted: dict[str, tuple[SigningKey, float]] = {}
        self._refused: frozenset[str] = frozenset()
        self._newest_generation = 0
        self._next_refresh_at = 0.0
        self._unknown_kid_refresh_at = 0.0
        self._reported: set[tuple[str, str]] = set()

    @property
    def previous_trust_s(self) -> int:
        """How long the previous key verifies after the key that replaced it appeared."""
        return self._previous_trust_s

    # ------------------------------------------------------------------ reading

    def current_signing_key(self) -> SigningKey:
        if self._signing is None:
            raise KeyRingNotLoaded("KeyRing.load() must complete before signing")
        return self._signing

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The published key set: current key first, then the previous one while it is
        still trusted."""
        now = self._clock()
        ordered = sorted(self._trusted.values(), key=lambda entry: -entry[1])
        return {"keys": [public_jwk(key) for key, until in ordered if now < until]}

    async def public_key_for(self, kid: object) -> Ed25519PublicKey | None:
        """The verifying key for ``kid``, or None. An unknown kid triggers a re-read of the
        store at most once per ``unknown_kid_refresh_s``; raises :class:`Unavailable` if
        that re-read fails."""
        if not isinstance(kid, str):
            return None
        entry = self._trusted.get(kid)
        if entry is not None:
            key, until = entry
            return key.public_key if self._clock() < until else None
        if kid in self._refused or not KID_PATTERN.fullmatch(kid):
            return None
        if self._clock() < self._unknown_kid_refresh_at:
            return None
        async with self._lock:
            if kid not in self._trusted and self._clock() >= self._unknown_kid_refresh_at:
                self._unknown_kid_refresh_at = self._clock() + self._unknown_kid_refresh_s
                await self._refresh_locked()
            entry = self._trusted.get(kid)
        if entry is None or self._clock() >= entry[1]:
            return None
        return entry[0].public_key

    # ------------------------------------------------------------------ refreshing

    async def load(self) -> None:
        """Read the trusted keys; create the first one if there is none.

        Raises :class:`SigningKeyError` if the store holds keys but none this instance can
        sign with (SECRET_KEY differs from the instance that created them, or keys written
        before MACs existed and `authnode migrate` has not run).
        """
        async with self._lock:
            view = await self._read_creating()
            if view.signing is None:
                reasons = "; ".join(view.problems.values()) or "no usable key"
                raise SigningKeyError(f"no usable signing key in the store: {reasons}")
            self._adopt(view)
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
        """Rotate when the signing key is older than ``rotation_s``; True if this call did."""
        async with self._lock:
            await self._refresh_locked()
            current = self._signing
            if (current is not None
                    and self._clock() - current.created_at.timestamp() < self._rotation_s):
                return False
            inserted = await self._insert_generation(self._newest_generation + 1)
            await self._refresh_locked()
            if inserted:
                log.info("rotated the signing key; new kid %s", self.current_signing_key().kid)
            return inserted

    async def retire(self, kid: str) -> SigningKey:
        """Stop trusting ``kid`` everywhere (a compromised key); returns the key that signs
        now. Retiring the current key first rotates, so something always signs.

        Raises :class:`~authnode.errors.NotFound` for a kid the store does not hold."""
        async with self._lock:
            await self._refresh_locked()
            if self._signing is not None and self._signing.kid == kid:
                await self._insert_generation(self._newest_generation + 1)
                await self._refresh_locked()
                if self.current_signing_key().kid == kid:
                    raise SigningKeyError(f"could not replace signing key {kid}")
            outcome = await self._store.retire(kid, self._now())
            if outcome == "missing":
                raise NotFound(f"no signing key {kid}")
            log.warning("signing key %s retired (%s)", kid, outcome)
            await self._refresh_locked()
            return self.current_signing_key()

    async def purge(self) -> list[str]:
        """Delete the keys that can no longer verify anything: retired ones (once they
        have been retired for the previous key's trust window, so operators still see
        them for a while) and superseded ones past that window. Keys this instance cannot
        authenticate are left alone: it cannot tell what they are. Returns the kids."""
        async with self._lock:
            view = self._judge(await self._store.newest(SCAN_KEYS))
            now = self._clock()
            doomed = []
            for key in view.authentic:
                if key.kid in view.trusted and now < view.trusted[key.kid][1]:
                    continue
                if (key.retired_at is not None
                        and now < key.retired_at.timestamp() + self._previous_trust_s):
                    continue
                doomed.append(key.kid)
            if doomed:
                await self._store.delete(doomed)
            return doomed

    async def describe(self) -> list[dict[str, Any]]:
        """Every stored key with what this instance makes of it (``authnode keys list``)."""
        async with self._lock:
            docs = await self._store.newest(SCAN_KEYS)
            view = self._judge(docs)
        now = self._clock()
        rows = []
        for doc in docs:
            kid = doc.get("_id")
            row: dict[str, Any] = {"kid": kid, "generation": doc.get("generation"),
                                   "created_at": doc.get("created_at")}
            if isinstance(kid, str) and kid in view.problems:
                row["status"], row["detail"] = "refused", view.problems[kid]
            elif isinstance(kid, str) and kid in view.retired:
                row["status"], row["retired_at"] = "retired", view.retired[kid].retired_at
            elif view.signing is not None and kid == view.signing.kid:
                row["status"] = "current"
            elif isinstance(kid, str) and kid in view.trusted and now < view.trusted[kid][1]:
                row["status"] = "previous"
                row["trusted_until"] = datetime.fromtimestamp(view.trusted[kid][1], UTC)
            else:
                row["status"] = "expired"
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ internals

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def _insert_generation(self, generation: int) -> bool:
        key = generate_signing_key(self._now(), generation=generation)
        return await self._store.insert(to_document(key, self._secrets[0]))

    async def _read_creating(self) -> _View:
        """Read the store; insert a first (or, when every trusted key was retired, a
        fresh) key where there is none to sign with."""
        docs = await self._store.newest(READ_KEYS)
        view = self._judge(docs)
        if view.signing is None and (not docs or view.retired) and not view.trusted:
            await self._insert_generation(view.newest_generation + 1)
            view = self._judge(await self._store.newest(READ_KEYS))
        return view

    async def _refresh_locked(self) -> None:
        self._adopt(await self._read_creating())
        self._next_refresh_at = self._clock() + self._refresh_interval_s

    def _adopt(self, view: _View) -> None:
        for kid, reason in view.problems.items():
            self._report(kid, f"ignoring a stored signing key: {reason}")
        signing = view.signing
        trusted = dict(view.trusted)
        kept = self._signing
        if signing is None and kept is not None:
            # Nothing in the store this instance can sign with (SECRET_KEY differs from the
            # instance that wrote it?): go on with the key we had, unless it was retired.
            retired = kept.kid in view.retired
            if not retired:
                trusted.setdefault(kept.kid, (kept, math.inf))
            self._report(kept.kid, "no usable signing key in the store; "
                         + ("the key in memory was retired: tokens are refused until a new "
                            "key is stored" if retired else
                            f"signing goes on with {kept.kid}, the key in memory"))
            signing = kept
        if signing is None:
            raise SigningKeyError("no usable signing key in the store")
        self._signing = signing
        self._trusted = trusted
        self._refused = frozenset(view.refused - trusted.keys())
        self._newest_generation = max(view.newest_generation, signing.generation)

    def _report(self, kid: str, message: str) -> None:
        """Log an error once per kid and message, not on every re-read (every 5 s)."""
        if (kid, message) not in self._reported:
            self._reported.add((kid, message))
            log.error("%s", message)

    def _judge(self, docs: list[dict[str, Any]]) -> _View:
        """Sort ``docs`` (newest first) into the key that signs, the keys that verify and
        until when, and the kids to refuse."""
        view = _View()
        for doc in docs:
            generation = doc.get("generation")
            if type(generation) is int:  # counted even when refused: inserts must not clash
                view.newest_generation = max(view.newest_generation, generation)
            kid = doc.get("_id")
            try:
                key = from_document(doc, self._secrets)
            except SigningKeyError as error:
                if isinstance(kid, str):
                    view.refused.add(kid)
                    view.problems[kid] = str(error)
                continue
            view.authentic.append(self._known(key))
        live = [(index, key) for index, key in enumerate(view.authentic)
                if key.retired_at is None]
        for key in view.authentic:
            if key.retired_at is not None:
                view.retired[key.kid] = key
                view.refused.add(key.kid)
        # The current key must open: retiring deletes the private half, so a retired key
        # "un-retired" by someone who can write to MongoDB (retired_at is not under the MAC)
        # can never become current again; at most it is the previous key, for the window.
        while live:
            _, newest = live[0]
            signing = self._open(next(doc for doc in docs if doc.get("_id") == newest.kid),
                                 newest, view)
            if signing is not None:
                break
            view.refused.add(newest.kid)
            live.pop(0)
        else:
            return view
        view.signing = signing
        view.trusted[newest.kid] = (signing, math.inf)
        if len(live) > 1:
            index, previous = live[1]
            replaced_at = view.authentic[index - 1].created_at.timestamp()
            view.trusted[previous.kid] = (previous, replaced_at + self._previous_trust_s)
        for _, older in live[2:]:
            view.refused.add(older.kid)
        return view

    def _known(self, key: SigningKey) -> SigningKey:
        """The object already held for this key, if any: the token cache of
        :mod:`authnode.tokens.access` compares key objects, so a re-read must not replace
        them (that would re-verify every cached token after each refresh)."""
        entry = self._trusted.get(key.kid)
        if entry is None:
            return key
        held = entry[0]
        if (held.public_key.public_bytes(*_RAW) == key.public_key.public_bytes(*_RAW)
                and (held.generation, held.created_at, held.retired_at)
                == (key.generation, key.created_at, key.retired_at)):
            return held
        return key

    def _open(self, doc: Mapping[str, Any], key: SigningKey, view: _View) -> SigningKey | None:
        if key.private_key is not None:
            return key  # opened already: no Fernet and Ed25519 work every 5 s
        try:
            return from_document(doc, self._secrets, private=True)
        except SigningKeyError as error:
            view.problems[key.kid] = str(error)
            return None


async def restamp_keys(store: SigningKeyStore, secret: Secret,
                       previous_secret: Secret | None = None) -> tuple[int, list[str]]:
    """Put every stored key under ``secret``: MAC keys written before MACs existed, and
    re-seal and re-MAC keys written under ``previous_secret`` (``authnode migrate``).

    Each update is conditional on the document's MAC being unchanged. Returns how many
    were updated and the kids that could not be authenticated (left as they are, and
    refused by every instance)."""
    keys = (secret,) if previous_secret is None else (secret, previous_secret)
    updated, refused = 0, []
    for doc in await store.newest(SCAN_KEYS):
        try:
            fields = restamp(doc, keys)
        except UnauthenticKey:
            refused.append(str(doc.get("_id")))
            continue
        except SigningKeyError as error:
            log.error("cannot restamp a stored signing key: %s", error)
            refused.append(str(doc.get("_id")))
            continue
        if fields is None:
            continue
        mac = doc.get("mac")
        if await store.update(str(doc["_id"]), mac if isinstance(mac, bytes) else None,
                              fields):
            updated += 1
    return updated, refused
