"""Derive tuned defaults (pool sizes, concurrency, worker counts) from host resources.

The module is split in two:

* :func:`read_host_resources` is the *only* function that performs I/O. It reads
  ``/proc`` and ``/sys/fs/cgroup`` (both injectable, so tests can point it at a
  temporary directory of fake files) and returns a :class:`HostResources`.
* :func:`tune` is pure: it maps a :class:`HostResources` plus the configured
  Argon2 memory cost to a :class:`Tuned`. Same input, same output, no I/O.

Rounding rules (applied consistently by :func:`tune`):

* Process and thread counts use the number of *whole* CPUs,
  ``max(1, floor(cpus))``. A 1.5-CPU cgroup quota therefore gets 1 API worker and
  1 hash thread: running two CPU-bound threads/processes on 1.5 CPUs only adds
  throttling and context switches.
* Concurrency for I/O-bound queues scales with the *fractional* CPU count,
  ``max(1, int(cpus * 5))`` (truncation, not rounding): 2 CPUs -> 10,
  1.5 CPUs -> 7. Truncating keeps the value from overshooting the quota.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

__all__ = ["HostResources", "Tuned", "read_host_resources", "tune"]

# --------------------------------------------------------------------------- #
# Tuning constants (units in the names).
# --------------------------------------------------------------------------- #

#: I/O-bound queue tasks (e.g. sending email) per CPU.
IO_CONCURRENCY_PER_CPU = 5
#: MongoDB ``maxPoolSize`` per process: connections per whole CPU, floor and cap.
#: 100 is PyMongo's own default ``maxPoolSize``; we never go above it.
DB_POOL_PER_CPU = 10
DB_POOL_MIN_SIZE = 10
DB_POOL_MAX_SIZE = 100
#: Redis connections per whole CPU and per-process cap. The cap matters because
#: the pool is *per process* and the number of API processes also scales with
#: CPUs; Redis' default ``maxclients`` is 10000.
REDIS_CONNECTIONS_PER_CPU = 25
REDIS_MAX_CONNECTIONS_CAP = 200
#: Procrastinate/psycopg pool: floor and per-process cap. PostgreSQL's default
#: ``max_connections`` is 100, shared by every process on every host.
POSTGRES_POOL_MIN_SIZE = 4
POSTGRES_POOL_MAX_SIZE = 20
#: Share of usable memory that concurrent Argon2 hashes may occupy (1/4 = 25 %).
HASH_MEMORY_FRACTION_DENOMINATOR = 4

#: Used only when neither cgroup limits, /proc/meminfo nor sysconf give a value.
FALLBACK_MEMORY_BYTES = 1024**3
#: cgroup v1 reports "no memory limit" as a huge number (PAGE_COUNTER_MAX * page
#: size, e.g. 9223372036854771712). Anything at or above 2**62 means unlimited.
CGROUP_V1_UNLIMITED_THRESHOLD_BYTES = 2**62
_Number = TypeVar("_Number", int, float)

#: Guards ``int(cpus * 5)`` against float noise such as 2.9999999999999996.
_FLOAT_EPSILON = 1e-9


# --------------------------------------------------------------------------- #
# Data types
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class HostResources:
    """Resources actually usable by this process.

    ``cpus`` may be fractional (a cgroup quota of 150000/100000 is 1.5 CPUs).
    """

    cpus: float
    memory_bytes: int

    def __post_init__(self) -> None:
        if not math.isfinite(self.cpus) or self.cpus <= 0:
            raise ValueError(f"cpus must be a positive finite number, got {self.cpus!r}")
        if self.memory_bytes <= 0:
            raise ValueError(f"memory_bytes must be positive, got {self.memory_bytes!r}")


@dataclass(frozen=True)
class Tuned:
    """Tuned defaults derived from :class:`HostResources` by :func:`tune`.

    Pool sizes are *per process*.
    """

    io_worker_concurrency: int
    """Concurrent jobs of the I/O-bound (email) queue: ``max(1, int(cpus * 5))``."""
    cpu_worker_concurrency: int
    """Concurrent jobs of the CPU-bound (maintenance) queue: whole CPUs (>= 1)."""
    db_pool_size: int
    """MongoDB ``maxPoolSize``: ``whole_cpus * 10`` clamped to [10, 100]."""
    db_min_pool_size: int
    """MongoDB ``minPoolSize``: ``whole_cpus``, never above ``db_pool_size``."""
    hash_threads: int
    """Password-hashing threads: whole CPUs, capped by the 25 % memory budget, >= 1."""
    redis_max_connections: int
    """Redis pool size: ``whole_cpus * 25`` capped at 200 (so at least 25)."""
    api_workers: int
    """Default number of API processes (``--workers``): whole CPUs."""
    postgres_pool_size: int
    """Procrastinate/psycopg pool max size: ``cpu + io // 2`` clamped to [4, 20]."""


# --------------------------------------------------------------------------- #
# Pure computation
# --------------------------------------------------------------------------- #


def _whole_cpus(cpus: float) -> int:
    """CPUs usable by whole threads/processes: ``max(1, floor(cpus))``."""
    return max(1, math.floor(cpus))


def _io_concurrency(cpus: float) -> int:
    """I/O queue concurrency: ``max(1, int(cpus * 5))`` (truncated, not rounded)."""
    return max(1, int(cpus * IO_CONCURRENCY_PER_CPU + _FLOAT_EPSILON))


def _hash_threads(whole_cpus: int, memory_bytes: int, argon2_memory_kib: int) -> int:
    """One hashing thread per whole CPU, limited so that concurrent Argon2 hashes use
    at most 25 % of memory (``threads * argon2_memory_kib * 1024 <= memory / 4``).
    Always at least 1: hashing must work even if one hash exceeds the budget.
    """
    budget_bytes = memory_bytes // HASH_MEMORY_FRACTION_DENOMINATOR
    per_hash_bytes = argon2_memory_kib * 1024
    memory_cap = budget_bytes // per_hash_bytes
    return max(1, min(whole_cpus, memory_cap))


def tune(host: HostResources, *, argon2_memory_kib: int) -> Tuned:
    """Compute tuned defaults for ``host``. Pure: no I/O, deterministic.

    ``argon2_memory_kib`` is the Argon2 ``memory_cost`` (KiB per hash), used to cap
    ``hash_threads``. See :class:`Tuned` for each formula.
    """
    if argon2_memory_kib < 1:
        raise ValueError(f"argon2_memory_kib must be >= 1, got {argon2_memory_kib!r}")

    whole = _whole_cpus(host.cpus)
    io_concurrency = _io_concurrency(host.cpus)
    cpu_concurrency = whole

    db_pool_size = min(DB_POOL_MAX_SIZE, max(DB_POOL_MIN_SIZE, whole * DB_POOL_PER_CPU))
    db_min_pool_size = min(db_pool_size, whole)

    # The procrastinate worker holds one connection for LISTEN/NOTIFY and needs
    # short-lived ones to fetch/finish jobs; job bodies rarely hold a connection
    # for their whole run, so half the I/O concurrency is enough on top of the
    # CPU queue.
    postgres_pool_size = min(
        POSTGRES_POOL_MAX_SIZE,
        max(POSTGRES_POOL_MIN_SIZE, cpu_concurrency + io_concurrency // 2),
    )

    return Tuned(
        io_worker_concurrency=io_concurrency,
        cpu_worker_concurrency=cpu_concurrency,
        db_pool_size=db_pool_size,
        db_min_pool_size=db_min_pool_size,
        hash_threads=_hash_threads(whole, host.memory_bytes, argon2_memory_kib),
        redis_max_connections=min(REDIS_MAX_CONNECTIONS_CAP, whole * REDIS_CONNECTIONS_PER_CPU),
        api_workers=whole,
        postgres_pool_size=postgres_pool_size,
    )


# --------------------------------------------------------------------------- #
# Parsers (pure: they take file contents, not paths)
# --------------------------------------------------------------------------- #


def _parse_cgroup_v2_cpu_max(text: str) -> float | None:
    """Parse cgroup v2 ``cpu.max`` ("$QUOTA $PERIOD"); ``None`` means no limit."""
    fields = text.split()
    if not fields or fields[0] == "max" or len(fields) != 2:
        return None
    try:
        quota_us, period_us = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us


def _parse_cgroup_v1_cpu_quota(quota_text: str, period_text: str) -> float | None:
    """Parse cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1 = no limit)."""
    try:
        quota_us, period_us = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us


def _parse_memory_limit(text: str) -> int | None:
    """Parse ``memory.max`` (v2, "max" = none) or ``memory.limit_in_bytes`` (v1)."""
    value = text.strip()
    if value == "max":
        return None
    try:
        limit_bytes = int(value)
    except ValueError:
        return None
    if limit_bytes <= 0 or limit_bytes >= CGROUP_V1_UNLIMITED_THRESHOLD_BYTES:
        return None
    return limit_bytes


def _parse_meminfo_total(text: str) -> int | None:
    """Return ``MemTotal`` from ``/proc/meminfo`` contents, in bytes."""
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key.strip() != "MemTotal":
            continue
        fields = rest.split()
        try:
            amount = int(fields[0])
        except (IndexError, ValueError):
            return None
        unit = fields[1].lower() if len(fields) > 1 else ""
        multiplier = 1024 if unit == "kb" else 1
        total_bytes = amount * multiplier
        return total_bytes if total_bytes > 0 else None
    return None


def _parse_cgroup_v2_path(text: str) -> PurePosixPath | None:
    """Return the unified (v2) cgroup path from ``/proc/self/cgroup`` ("0::/path")."""
    for line in text.splitlines():
        hierarchy_id, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy_id == "0" and controllers == "" and path.startswith("/"):
            return PurePosixPath(path)
    return None


def _min_or_none(values: Iterable[_Number | None]) -> _Number | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


# --------------------------------------------------------------------------- #
# I/O
# --------------------------------------------------------------------------- #


def _read_text(path: Path) -> str | None:
    """Read a small text file; ``None`` if it is missing or unreadable."""
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None


def _default_affinity() -> int:
    """CPUs this process may run on: ``sched_getaffinity`` or ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not available on macOS/Windows
        return os.cpu_count() or 1


def _physical_memory_bytes() -> int | None:
    """Physical memory via ``sysconf``; only used when ``/proc/meminfo`` is unusable."""
    try:
        total_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return total_bytes if total_bytes > 0 else None


def _cgroup_v2_dirs(proc_root: Path, cgroup_root: Path) -> list[Path]:
    """Directories whose v2 limits apply to us: our own cgroup and its ancestors.

    Limits of every ancestor apply, so callers take the minimum. When
    ``/proc/self/cgroup`` is unreadable (or we are in a cgroup namespace, where
    the path is "/"), only ``cgroup_root`` itself is checked.
    """
    text = _read_text(proc_root / "self" / "cgroup")
    own = _parse_cgroup_v2_path(text) if text is not None else None
    # Ignore "..": never walk outside cgroup_root.
    parts = [p for p in own.parts[1:] if p not in ("", ".", "..")] if own else []
    dirs = [cgroup_root]
    for i in range(1, len(parts) + 1):
        dirs.append(cgroup_root.joinpath(*parts[:i]))
    return dirs


def _read_cgroup_cpu_limit(proc_root: Path, cgroup_root: Path) -> float | None:
    limits: list[float | None] = []
    for directory in _cgroup_v2_dirs(proc_root, cgroup_root):
        text = _read_text(directory / "cpu.max")
        if text is not None:
            limits.append(_parse_cgroup_v2_cpu_max(text))
    # cgroup v1: only the mount root of the controller (what a container sees).
    for controller in ("cpu", "cpu,cpuacct"):
        quota = _read_text(cgroup_root / controller / "cpu.cfs_quota_us")
        period = _read_text(cgroup_root / controller / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            limits.append(_parse_cgroup_v1_cpu_quota(quota, period))
    return _min_or_none(limits)


def _read_cgroup_memory_limit(proc_root: Path, cgroup_root: Path) -> int | None:
    limits: list[int | None] = []
    for directory in _cgroup_v2_dirs(proc_root, cgroup_root):
        text = _read_text(directory / "memory.max")
        if text is not None:
            limits.append(_parse_memory_limit(text))
    # cgroup v1: only the mount root of the controller (what a container sees).
    text = _read_text(cgroup_root / "memory" / "memory.limit_in_bytes")
    if text is not None:
        limits.append(_parse_memory_limit(text))
    return _min_or_none(limits)


def read_host_resources(
    *,
    proc_root: Path = Path("/proc"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    affinity: Callable[[], int] | None = None,
) -> HostResources:
    """Read usable CPUs and memory. The only function in this module that does I/O.

    * CPUs = min(affinity CPU count, cgroup CPU quota). The affinity count comes
      from ``affinity()`` if given, else ``len(os.sched_getaffinity(0))`` or
      ``os.cpu_count()``. The quota is cgroup v2 ``cpu.max`` (our cgroup and its
      ancestors, ignoring "max") or cgroup v1 ``cpu.cfs_quota_us /
      cpu.cfs_period_us`` (ignoring -1).
    * Memory = min(``MemTotal`` from ``/proc/meminfo``, cgroup v2 ``memory.max``
      (ignoring "max"), cgroup v1 ``memory.limit_in_bytes`` (ignoring its huge
      "unlimited" value)). ``MemTotal`` rather than ``MemAvailable``: the result
      sizes long-lived pools, and page cache counted as "used" is reclaimable.
      If ``/proc/meminfo`` is unusable, ``sysconf`` physical memory is used,
      and 1 GiB as a last resort.

    Missing, unreadable or malformed files are ignored (treated as "no limit").
    """
    affinity_cpus = max(1, (affinity or _default_affinity)())
    quota_cpus = _read_cgroup_cpu_limit(proc_root, cgroup_root)
    cpus = float(affinity_cpus) if quota_cpus is None else min(float(affinity_cpus), quota_cpus)

    meminfo = _read_text(proc_root / "meminfo")
    total_bytes = _parse_meminfo_total(meminfo) if meminfo is not None else None
    if total_bytes is None:
        total_bytes = _physical_memory_bytes()
    limit_bytes = _read_cgroup_memory_limit(proc_root, cgroup_root)
    memory_bytes = _min_or_none([total_bytes, limit_bytes]) or FALLBACK_MEMORY_BYTES

    return HostResources(cpus=cpus, memory_bytes=memory_bytes)
