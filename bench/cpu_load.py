"""A control for the /healthz scenario: the CPU load of hashing, without authnode.

``python -m bench.cpu_load THREADS SECONDS`` runs THREADS threads verifying an argon2id
hash at the configured parameters (from the environment's Settings) for SECONDS, in a
process of its own. The /healthz probe measured meanwhile shows what the same amount of
hashing does to the API's latency when it cannot possibly hold the API's event loop (or
its GIL): only the cost of sharing the CPUs.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import argon2

from authnode.settings import load_settings
from authnode.tuning import read_host_resources

PASSWORD = "correct horse battery staple"


def main() -> None:
    threads, seconds = int(sys.argv[1]), float(sys.argv[2])
    settings = load_settings(os.environ, host=read_host_resources())
    hasher = argon2.PasswordHasher(
        time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism, type=argon2.Type.ID)
    encoded = hasher.hash(PASSWORD)
    deadline = time.monotonic() + seconds
    counts = [0] * threads

    def spin(index: int) -> None:
        while time.monotonic() < deadline:
            hasher.verify(encoded, PASSWORD)
            counts[index] += 1

    workers = [threading.Thread(target=spin, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(sum(counts) / seconds)


if __name__ == "__main__":
    main()
