"""The floor for the email scenario: procrastinate draining jobs that do nothing.

``python -m bench.noop_jobs`` (with the bench's environment) runs one procrastinate
worker on ``POSTGRES_URL`` for the ``bench_noop`` queue, prints ``ready`` once its
connection pool is open, and stops on SIGTERM. It is built like authnode's email worker
(:func:`authnode.runtime._run_workers`): the same connector and pool size,
``WORKER_CONCURRENCY``, the same polling and heartbeat settings, asyncio on uvloop; only
the task differs (it returns at once).
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import procrastinate

from authnode.settings import Settings, load_settings
from authnode.tuning import read_host_resources

NOOP_QUEUE = "bench_noop"
NOOP_TASK = "bench.noop"


def create_noop_app(settings: Settings) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(
        conninfo=settings.postgres_url, min_size=1, max_size=settings.postgres_pool_size,
        timeout=5, kwargs={"connect_timeout": 3})
    app = procrastinate.App(connector=connector)

    @app.task(name=NOOP_TASK, queue=NOOP_QUEUE)
    async def noop(**_: Any) -> None:
        return None

    return app


async def drain(settings: Settings) -> None:
    app = create_noop_app(settings)
    async with app.open_async():
        print("ready", flush=True)
        await app.run_worker_async(
            queues=[NOOP_QUEUE], concurrency=settings.worker_concurrency, name="noop",
            shutdown_graceful_timeout=settings.shutdown_timeout_ms / 1000,
            update_heartbeat_interval=max(1.0, settings.stalled_job_after_s / 3),
            stalled_worker_timeout=settings.stalled_job_after_s,
            fetch_job_polling_interval=2.0)


def main() -> None:
    settings = load_settings(os.environ, host=read_host_resources())
    options = {}
    try:
        import uvloop  # noqa: F401

        options["use_uvloop"] = True
    except ImportError:
        pass
    anyio.run(drain, settings, backend="asyncio", backend_options=options)


if __name__ == "__main__":
    main()
