"""Argon2id hashing and verification in a bounded pool of worker threads, never on the
event loop. Passwords are hashed in their NFKC form (see :mod:`.normalization`)."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import anyio
import anyio.to_thread
import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from authnode.accounts.passwords.normalization import normalize

__all__ = ["PasswordHasher"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Args = TypeVarTuple("_Args")


class PasswordHasher:
    """Argon2id hashing and verification, off the event loop and bounded.

    Every Argon2 computation (hash, verify, dummy verify) runs in a worker thread through
    :func:`anyio.to_thread.run_sync` under one :class:`anyio.CapacityLimiter` of
    ``threads`` tokens, so at most ``threads`` run at once per instance (and at most
    ``threads * memory_kib`` KiB of Argon2 memory is in use); further callers wait their
    turn. Build one instance per process and share it. A caller cancelled while its
    computation runs stays until the thread finishes (anyio's default), so the bound
    holds even under cancellation.

    ``memory_kib``, ``time_cost`` and ``parallelism`` are Argon2's ``m``, ``t`` and ``p``.
    This class accepts any value Argon2 accepts (tests use tiny ones); the OWASP minimum
    is enforced by the settings (``ARGON2_MEMORY_KIB`` >= 19456, ``ARGON2_TIME_COST`` >=
    2), not here.

    ``on_hash_seconds`` (a metrics hook) is called on the event loop with the wall time in
    seconds of each Argon2 computation (hash, verify or dummy verify), measured inside
    the worker thread, so it excludes time spent waiting for a thread.

    Passwords are NFKC-normalized before hashing and verifying (see the module
    docstring).

    **Dummy hash.** :meth:`verify_dummy` needs a hash made with the current parameters.
    It is made lazily, once, by the first caller (under an :class:`anyio.Lock`, so
    concurrent first callers make only one); call :meth:`prepare` at startup to make it
    eagerly, so that the first login for an unknown email does not pay for an extra
    hash. It is never stored and uses a random password nobody knows.
    """

    def __init__(
        self,
        *,
        memory_kib: int,
        time_cost: int,
        parallelism: int,
        threads: int,
        on_hash_seconds: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        if parallelism < 1:
            raise ValueError(f"parallelism must be >= 1, got {parallelism!r}")
        if time_cost < 1:
            raise ValueError(f"time_cost must be >= 1, got {time_cost!r}")
        if memory_kib < 8 * parallelism:
            raise ValueError(
                f"memory_kib must be >= 8 * parallelism ({8 * parallelism}), got {memory_kib!r}"
            )
        self._argon2 = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._limiter = anyio.CapacityLimiter(threads)
        self._on_hash_seconds = on_hash_seconds
        self._dummy_lock = anyio.Lock()
        self._dummy_hash: str | None = None

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The limiter bounding concurrent Argon2 computations (for metrics and tests)."""
        return self._limiter

    async def hash(self, password: str) -> str:
        """The encoded Argon2id hash (``$argon2id$v=19$m=...``) of ``password``.

        Check the password with :class:`PasswordPolicy` first; a password that cannot be
        encoded as UTF-8 raises :class:`ValueError`.
        """
        return await self._run(self._hash_sync, password)

    async def verify(self, stored_hash: str, password: str) -> bool:
        """Whether ``password`` matches ``stored_hash``.

        False on a mismatch and also when ``stored_hash`` is not a usable Argon2 hash
        (empty, truncated, corrupt, another scheme) or ``password`` cannot be encoded;
        never raises for those. A corrupt hash is logged (without its value).
        """
        return await self._run(self._verify_sync, stored_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether ``stored_hash`` was made with other parameters than this hasher's
        (memory, time cost, parallelism, type, version, salt or hash length), so it
        should be replaced by :meth:`hash` after the next successful :meth:`verify`.
        True for a hash that cannot be parsed. Cheap: no Argon2 computation.
        """
        try:
            return self._argon2.check_needs_rehash(stored_hash)
        except (ValueError, TypeError, AttributeError):  # InvalidHashError is a ValueError
            return True

    async def prepare(self) -> None:
        """Make the dummy hash now (idempotent). Optional; see the class docstring."""
        await self._get_dummy_hash()

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of a wrong-password :meth:`verify`, for an unknown account.

        Verifies ``password`` against a dummy hash made with this hasher's parameters,
        through the same limiter and thread pool, and discards the result, so that a
        login for an unknown email costs the same as a wrong password for a known one.
        """
        dummy = await self._get_dummy_hash()
        await self._run(self._verify_sync, dummy, password)

    # ------------------------------------------------------------------ internals

    async def _get_dummy_hash(self) -> str:
        if self._dummy_hash is None:
            async with self._dummy_lock:
                if self._dummy_hash is None:
                    self._dummy_hash = await self.hash(secrets.token_urlsafe(32))
        return self._dummy_hash

    async def _run(
        self, func: Callable[[*_Args], tuple[_T, float]], *args: *_Args
    ) -> _T:
        result, seconds = await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)
        self._on_hash_seconds(seconds)
        return result

    def _hash_sync(self, password: str) -> tuple[str, float]:
        """Worker thread: hash. Returns the hash and the seconds it took."""
        _yield_cpu_to_the_event_loop()
        started = time.perf_counter()
        encoded = self._argon2.hash(normalize(password))
        return encoded, time.perf_counter() - started

    def _verify_sync(self, stored_hash: str, password: str) -> tuple[bool, float]:
        """Worker thread: verify. Returns the outcome and the seconds it took."""
        _yield_cpu_to_the_event_loop()
        started = time.perf_counter()
        ok = self._verify_outcome(stored_hash, password)
        return ok, time.perf_counter() - started

    def _verify_outcome(self, stored_hash: str, password: str) -> bool:
        hash_value: object = stored_hash
        if not isinstance(hash_value, str) or not hash_value:
            log.warning("stored password hash is missing or not a string")
            return False
        try:
            encoded_password = normalize(password).encode("utf-8")
        except (UnicodeEncodeError, TypeError):
            return False  # policy never accepts such a password, so it cannot match
        try:
            return self._argon2.verify(hash_value, encoded_password)
        except VerificationError as error:
            if not isinstance(error, argon2.exceptions.VerifyMismatchError):
                log.warning("stored password hash could not be verified: %s", error)
            return False
        except (InvalidHashError, ValueError):  # ValueError: a non-ASCII hash
            log.warning("stored password hash is not a valid Argon2 hash")
            return False


HASH_THREAD_NICENESS = 10
_this_thread = threading.local()


def _yield_cpu_to_the_event_loop() -> None:
    """Lower the calling worker thread's CPU priority, once per thread.

    With as many hash threads as CPUs, argon2 (which releases the GIL) competes with the
    event loop for every core, and requests that need no hashing wait behind it
    (bench/README.md: /healthz p99 under login). On Linux the niceness of a thread is its
    own; at +10 the scheduler lets the event loop run first whenever it has work, and the
    threads still get every cycle it leaves. Raising niceness needs no privilege; where it
    is not possible this does nothing. anyio's idle worker threads exit after a while and
    new ones start at the process's niceness."""
    if getattr(_this_thread, "lowered", False):
        return
    _this_thread.lowered = True
    try:
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                       max(current, HASH_THREAD_NICENESS))
    except (OSError, AttributeError):
        pass
