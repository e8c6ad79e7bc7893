"""The procrastinate application: PostgreSQL connector, queues and task registration.

Two queues with their own concurrency, as the seed sizes them: ``email`` is I/O-bound
(CPUs x 5 by default, ``WORKER_CONCURRENCY``) and ``maintenance`` is CPU-bound or
database-heavy (CPUs x 1, ``WORKER_CPU_CONCURRENCY``).
"""

from __future__ import annotations

import procrastinate

from authnode.settings import Settings

EMAIL_QUEUE = "email"
MAINTENANCE_QUEUE = "maintenance"
SEND_EMAIL_TASK = "authnode.send_email"


def create_job_app(settings: Settings) -> procrastinate.App:
    from authnode.jobs.tasks import register_tasks

    connector = procrastinate.PsycopgConnector(
        conninfo=settings.postgres_url,
        min_size=1,
        max_size=settings.postgres_pool_size,
        timeout=5,
        kwargs={"connect_timeout": 3},
        # After an outage the pool retries a lost connection with a doubling delay (1, 2,
        # 4, 8 s...), so PostgreSQL could be back for seconds before the pool tried again.
        # Giving up a retry after 2 s lets the next request that needs a connection try
        # at once instead (the pool grows on demand), so service returns within about a
        # second of PostgreSQL (README: "/readyz 200 within 5 s of its return").
        reconnect_timeout=2.0,
    )
    app = procrastinate.App(connector=connector)
    register_tasks(app, settings)
    return app
