"""Unit tests for authnode.tuning: pure, fake inputs only, no network."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from authnode import tuning
from authnode.tuning import HostResources, Tuned, read_host_resources, tune

MIB = 1024**2
GIB = 1024**3
ARGON2_19_MIB_KIB = 19 * 1024  # 19456 KiB, OWASP's argon2id minimum

# cgroup v1 "no limit" value on 4 KiB pages.
V1_UNLIMITED = "9223372036854771712"


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")


def _meminfo(total_kib: int) -> str:
    return (
        f"MemTotal:       {total_kib} kB\n"
        "MemFree:         1000000 kB\n"
        "MemAvailable:    2000000 kB\n"
    )


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    proc_root = tmp_path / "proc"
    cgroup_root = tmp_path / "cgroup"
    proc_root.mkdir()
    cgroup_root.mkdir()
    _write(proc_root, "meminfo", _meminfo(24 * 1024 * 1024))  # 24 GiB
    return proc_root, cgroup_root


def _read(roots: tuple[Path, Path], cpus: int = 4) -> HostResources:
    proc_root, cgroup_root = roots
    return read_host_resources(proc_root=proc_root, cgroup_root=cgroup_root, affinity=lambda: cpus)


# --------------------------------------------------------------------------- #
# read_host_resources
# --------------------------------------------------------------------------- #


def test_cgroup_v2_limits_apply(roots: tuple[Path, Path]) -> None:
    _write(roots[1], "cpu.max", "150000 100000\n")
    _write(roots[1], "memory.max", "536870912\n")
    assert _read(roots, cpus=4) == HostResources(cpus=1.5, memory_bytes=512 * MIB)


def test_cgroup_v2_max_falls_back_to_affinity_and_memtotal(roots: tuple[Path, Path]) -> None:
    _write(roots[1], "cpu.max", "max 100000\n")
    _write(roots[1], "memory.max", "max\n")
    assert _read(roots, cpus=4) == HostResources(cpus=4.0, memory_bytes=24 * GIB)


def test_quota_above_affinity_uses_affinity(roots: tuple[Path, Path]) -> None:
    _write(roots[1], "cpu.max", "800000 100000\n")  # 8 CPUs of quota
    _write(roots[1], "memory.max", str(64 * GIB))  # above MemTotal
    assert _read(roots, cpus=4) == HostResources(cpus=4.0, memory_bytes=24 * GIB)


def test_missing_cgroup_files_fall_back(roots: tuple[Path, Path]) -> None:
    assert _read(roots, cpus=2) == HostResources(cpus=2.0, memory_bytes=24 * GIB)


def test_missing_everything_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning, "_physical_memory_bytes", lambda: 3 * GIB)
    host = read_host_resources(
        proc_root=tmp_path / "nope", cgroup_root=tmp_path / "nope", affinity=lambda: 3
    )
    assert host == HostResources(cpus=3.0, memory_bytes=3 * GIB)


def test_missing_everything_and_no_sysconf_uses_1_gib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tuning, "_physical_memory_bytes", lambda: None)
    host = read_host_resources(
        proc_root=tmp_path / "nope", cgroup_root=tmp_path / "nope", affinity=lambda: 1
    )
    assert host == HostResources(cpus=1.0, memory_bytes=1 * GIB)


def test_missing_meminfo_uses_cgroup_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning, "_physical_memory_bytes", lambda: None)
    _write(tmp_path, "cgroup/memory.max", str(512 * MIB))
    host = read_host_resources(
        proc_root=tmp_path / "proc", cgroup_root=tmp_path / "cgroup", affinity=lambda: 2
    )
    assert host == HostResources(cpus=2.0, memory_bytes=512 * MIB)


def test_meminfo_without_memtotal_uses_sysconf(
    roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tuning, "_physical_memory_bytes", lambda: 3 * GIB)
    _write(roots[0], "meminfo", "MemFree: 1 kB\nMemAvailable: 2 kB\n")
    assert _read(roots, cpus=2) == HostResources(cpus=2.0, memory_bytes=3 * GIB)


@pytest.mark.parametrize(
    "cpu_max",
    ["", "garbage", "100000", "abc 100000", "150000 0", "0 100000", "-1 100000"],
)
def test_malformed_cpu_max_is_ignored(roots: tuple[Path, Path], cpu_max: str) -> None:
    _write(roots[1], "cpu.max", cpu_max)
    _write(roots[1], "memory.max", "not-a-number")
    assert _read(roots, cpus=4) == HostResources(cpus=4.0, memory_bytes=24 * GIB)


def test_unreadable_file_is_ignored(roots: tuple[Path, Path]) -> None:
    # A directory where a file is expected raises OSError on read.
    (roots[1] / "cpu.max").mkdir()
    (roots[1] / "memory.max").write_bytes(b"\xff\xfe")  # not ASCII
    assert _read(roots, cpus=4) == HostResources(cpus=4.0, memory_bytes=24 * GIB)


def test_nested_cgroup_v2_takes_tightest_ancestor(roots: tuple[Path, Path]) -> None:
    proc_root, cgroup_root = roots
    _write(proc_root, "self/cgroup", "0::/system.slice/authnode.service\n")
    _write(cgroup_root, "system.slice/cpu.max", "250000 100000")
    _write(cgroup_root, "system.slice/memory.max", "max")
    _write(cgroup_root, "system.slice/authnode.service/cpu.max", "max 100000")
    _write(cgroup_root, "system.slice/authnode.service/memory.max", str(2 * GIB))
    assert _read(roots, cpus=8) == HostResources(cpus=2.5, memory_bytes=2 * GIB)


def test_cgroup_path_cannot_escape_root(roots: tuple[Path, Path], tmp_path: Path) -> None:
    proc_root, _ = roots
    _write(proc_root, "self/cgroup", "0::/../outside\n")
    _write(tmp_path, "outside/cpu.max", "50000 100000")
    assert _read(roots, cpus=4).cpus == 4.0


def test_cgroup_v1_limits_apply(roots: tuple[Path, Path]) -> None:
    _write(roots[1], "cpu,cpuacct/cpu.cfs_quota_us", "150000\n")
    _write(roots[1], "cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    _write(roots[1], "memory/memory.limit_in_bytes", "536870912\n")
    assert _read(roots, cpus=4) == HostResources(cpus=1.5, memory_bytes=512 * MIB)


def test_cgroup_v1_unlimited_values_fall_back(roots: tuple[Path, Path]) -> None:
    _write(roots[1], "cpu/cpu.cfs_quota_us", "-1\n")
    _write(roots[1], "cpu/cpu.cfs_period_us", "100000\n")
    _write(roots[1], "memory/memory.limit_in_bytes", V1_UNLIMITED + "\n")
    assert _read(roots, cpus=4) == HostResources(cpus=4.0, memory_bytes=24 * GIB)


def test_zero_affinity_is_treated_as_one_cpu(roots: tuple[Path, Path]) -> None:
    assert _read(roots, cpus=0).cpus == 1.0


def test_default_affinity_reads_real_host() -> None:
    # Smoke test against the real host (read-only): values must be sane.
    host = read_host_resources()
    assert host.cpus > 0
    assert host.memory_bytes > 0


# --------------------------------------------------------------------------- #
# tune
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param(
            HostResources(cpus=2.0, memory_bytes=24 * GIB),
            Tuned(
                io_worker_concurrency=10,
                cpu_worker_concurrency=2,
                db_pool_size=20,
                db_min_pool_size=2,
                hash_threads=2,
                redis_max_connections=50,
                api_workers=2,
                postgres_pool_size=7,
            ),
            id="2cpu-24gib",
        ),
        pytest.param(
            HostResources(cpus=1.5, memory_bytes=512 * MIB),
            Tuned(
                io_worker_concurrency=7,
                cpu_worker_concurrency=1,
                db_pool_size=10,
                db_min_pool_size=1,
                hash_threads=1,
                redis_max_connections=25,
                api_workers=1,
                postgres_pool_size=4,
            ),
            id="1.5cpu-512mib",
        ),
        pytest.param(
            # 25 % of 64 MiB = 16 MiB < one 19 MiB hash: still 1 thread.
            HostResources(cpus=1.0, memory_bytes=64 * MIB),
            Tuned(
                io_worker_concurrency=5,
                cpu_worker_concurrency=1,
                db_pool_size=10,
                db_min_pool_size=1,
                hash_threads=1,
                redis_max_connections=25,
                api_workers=1,
                postgres_pool_size=4,
            ),
            id="1cpu-64mib",
        ),
        pytest.param(
            # 25 % of 512 MiB = 128 MiB -> 6 hashes of 19 MiB, below 8 CPUs.
            HostResources(cpus=8.0, memory_bytes=512 * MIB),
            Tuned(
                io_worker_concurrency=40,
                cpu_worker_concurrency=8,
                db_pool_size=80,
                db_min_pool_size=8,
                hash_threads=6,
                redis_max_connections=200,
                api_workers=8,
                postgres_pool_size=20,
            ),
            id="8cpu-512mib-hash-memory-cap",
        ),
        pytest.param(
            HostResources(cpus=64.0, memory_bytes=256 * GIB),
            Tuned(
                io_worker_concurrency=320,
                cpu_worker_concurrency=64,
                db_pool_size=100,
                db_min_pool_size=64,
                hash_threads=64,
                redis_max_connections=200,
                api_workers=64,
                postgres_pool_size=20,
            ),
            id="64cpu-256gib",
        ),
        pytest.param(
            # 25 % of 1 GiB = 256 MiB -> 13 hashes of 19 MiB.
            HostResources(cpus=64.0, memory_bytes=1 * GIB),
            Tuned(
                io_worker_concurrency=320,
                cpu_worker_concurrency=64,
                db_pool_size=100,
                db_min_pool_size=64,
                hash_threads=13,
                redis_max_connections=200,
                api_workers=64,
                postgres_pool_size=20,
            ),
            id="64cpu-1gib",
        ),
        pytest.param(
            HostResources(cpus=0.25, memory_bytes=256 * MIB),
            Tuned(
                io_worker_concurrency=1,
                cpu_worker_concurrency=1,
                db_pool_size=10,
                db_min_pool_size=1,
                hash_threads=1,
                redis_max_connections=25,
                api_workers=1,
                postgres_pool_size=4,
            ),
            id="quarter-cpu",
        ),
    ],
)
def test_tune_exact_numbers(host: HostResources, expected: Tuned) -> None:
    assert tune(host, argon2_memory_kib=ARGON2_19_MIB_KIB) == expected


@pytest.mark.parametrize(
    ("cpus", "io_concurrency"),
    [(0.1, 1), (0.2, 1), (0.4, 2), (0.6, 3), (1.4, 7), (1.5, 7), (2.2, 11), (3.0, 15)],
)
def test_io_concurrency_truncates_without_float_noise(cpus: float, io_concurrency: int) -> None:
    host = HostResources(cpus=cpus, memory_bytes=GIB)
    assert tune(host, argon2_memory_kib=ARGON2_19_MIB_KIB).io_worker_concurrency == io_concurrency


def test_hash_threads_memory_budget_boundary() -> None:
    # Exactly 4 hashes' worth of budget (25 % of memory) with 8 CPUs -> 4 threads.
    host = HostResources(cpus=8.0, memory_bytes=4 * 4 * 19 * MIB)
    assert tune(host, argon2_memory_kib=ARGON2_19_MIB_KIB).hash_threads == 4
    host = HostResources(cpus=8.0, memory_bytes=4 * 4 * 19 * MIB - 1)
    assert tune(host, argon2_memory_kib=ARGON2_19_MIB_KIB).hash_threads == 3


def test_this_2_cpu_unlimited_host_reads_and_tunes_to_10_and_2(roots: tuple[Path, Path]) -> None:
    tuned = tune(_read(roots, cpus=2), argon2_memory_kib=ARGON2_19_MIB_KIB)
    assert (tuned.io_worker_concurrency, tuned.cpu_worker_concurrency) == (10, 2)


def test_tune_is_pure_and_results_are_frozen() -> None:
    host = HostResources(cpus=2.0, memory_bytes=24 * GIB)
    first = tune(host, argon2_memory_kib=ARGON2_19_MIB_KIB)
    assert first == tune(host, argon2_memory_kib=ARGON2_19_MIB_KIB)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.api_workers = 3  # type: ignore[misc]


@pytest.mark.parametrize("argon2_memory_kib", [0, -1])
def test_tune_rejects_non_positive_argon2_memory(argon2_memory_kib: int) -> None:
    with pytest.raises(ValueError, match="argon2_memory_kib"):
        tune(HostResources(cpus=1.0, memory_bytes=GIB), argon2_memory_kib=argon2_memory_kib)


@pytest.mark.parametrize(
    ("cpus", "memory_bytes"),
    [(0.0, GIB), (-1.0, GIB), (float("nan"), GIB), (float("inf"), GIB), (1.0, 0), (1.0, -5)],
)
def test_host_resources_rejects_nonsense(cpus: float, memory_bytes: int) -> None:
    with pytest.raises(ValueError):
        HostResources(cpus=cpus, memory_bytes=memory_bytes)
