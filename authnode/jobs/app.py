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
    )
    app = procrastinate.App(connector=connector)
    register_tasks(app, settings)
    return app
