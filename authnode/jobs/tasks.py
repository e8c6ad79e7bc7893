"""Task definitions. Thin: each looks up the worker's dependencies and calls the domain.

Dependencies reach tasks through procrastinate's ``additional_context`` (set when the
worker starts), so nothing here is a module-level global.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import procrastinate
from procrastinate import JobContext

from authnode.accounts.emails import Mailer, deliver
from authnode.accounts.models import utc
from authnode.accounts.outbox import EmailKind
from authnode.jobs.app import EMAIL_QUEUE, MAINTENANCE_QUEUE, SEND_EMAIL_TASK
from authnode.jobs.worker_context import WorkerContext
from authnode.settings import Settings
from authnode.webhooks import delivery as webhooks

log = logging.getLogger("authnode.jobs")

CONTEXT_KEY = "authnode"


def _worker_context(context: JobContext) -> WorkerContext:
    found: WorkerContext = context.additional_context[CONTEXT_KEY]
    return found


def register_tasks(app: procrastinate.App, settings: Settings) -> None:
    # EMAIL_MAX_ATTEMPTS counts sends; procrastinate's max_attempts counts the retries
    # after the first run (and 0 would mean "retry forever").
    retries = settings.email_max_attempts - 1
    retry: procrastinate.RetryStrategy | bool = (
        procrastinate.RetryStrategy(max_attempts=retries, exponential_wait=2) if retries
        else False)

    @app.task(name=SEND_EMAIL_TASK, queue=EMAIL_QUEUE, pass_context=True, retry=retry)
    async def send_email(context: JobContext, kind: Any, email: str,
                         user_id: str | None = None,
                         registration_id: str | None = None) -> None:
        worker = _worker_context(context)
        job = context.job
        started = time.perf_counter()
        # If deliver raises, procrastinate retries the job while retries remain
        # (RetryStrategy: while job.attempts < max_attempts).
        outcome = "retried" if job.attempts < retries else "failed"
        try:
            outcome = await deliver(worker.mailer, kind=EmailKind(kind), email=email,
                                    user_id=user_id,
                                    registration_id=registration_id,
                                    idempotency_key=f"job:{job.id}",
                                    first_attempt=job.attempts == 0)
        finally:
            worker.observe_job(SEND_EMAIL_TASK, outcome, time.perf_counter() - started)
            log.info("job", extra={"task": SEND_EMAIL_TASK, "job_id": job.id,
                                   "attempt": job.attempts + 1, "kind": kind,
                                   "outcome": outcome,
                                   "duration_ms": round((time.perf_counter() - started)
                                                        * 1000, 2)})

    @app.task(name=webhooks.DELIVER_WEBHOOK_TASK, queue=webhooks.WEBHOOK_QUEUE,
              pass_context=True, retry=webhooks.retry_strategy())
    async def deliver_webhook(context: JobContext, endpoint_id: str, webhook_id: str,
                              event: dict[str, Any]) -> None:
        """One attempt to POST one event to one endpoint (see authnode.webhooks.delivery)."""
        worker = _worker_context(context)
        if worker.webhooks is None:
            raise RuntimeError("this worker has no webhook deliverer")
        job = context.job
        # The last run procrastinate allows: a failure now fails the job for good.
        final = job.attempts >= webhooks.RETRIES
        started = time.perf_counter()
        outcome = "failed" if final else "retried"
        try:
            outcome = await worker.webhooks.attempt(endpoint_id, webhook_id, event, final=final)
        finally:
            worker.observe_job(webhooks.DELIVER_WEBHOOK_TASK, outcome,
                               time.perf_counter() - started)

    @app.periodic(cron="*/10 * * * *", periodic_id="purge")
    @app.task(name="authnode.purge_expired", queue=MAINTENANCE_QUEUE, pass_context=True)
    async def purge_expired(context: JobContext, timestamp: int) -> None:
        """Delete expired sessions, spent email tokens, expired registrations and old
        idempotency keys (FerretDB
        has no TTL monitor, and correctness never waits for this: every read checks)."""
        worker = _worker_context(context)
        now = utc(time.time())
        sessions = await worker.sessions.purge(now, now - timedelta(days=1))
        tokens = await worker.mailer.email_tokens.purge(now)
        registrations = await worker.mailer.registrations.purge(now)
        sent = await worker.mailer.sent_emails.purge(now - timedelta(days=7))
        kept_since = now - timedelta(days=worker.settings.audit_retention_days)
        events = await worker.audit.purge(kept_since)
        if worker.webhooks is not None:
            events += await worker.webhooks.purge(kept_since)
        log.info("purged", extra={"task": "authnode.purge_expired",
                                  "outcome": f"sessions={sessions} tokens={tokens} "
                                             f"registrations={registrations} sent={sent} "
                                             f"audit_events+deliveries={events}"})

    @app.periodic(cron="*/5 * * * *", periodic_id="rotate_keys")
    @app.task(name="authnode.rotate_signing_key", queue=MAINTENANCE_QUEUE, pass_context=True)
    async def rotate_signing_key(context: JobContext, timestamp: int) -> None:
        """Rotate when due, and purge keys that can no longer verify anything."""
        worker = _worker_context(context)
        rotated = await worker.keyring.rotate_if_due()
        if rotated:
            log.info("signing key rotated", extra={"task": "authnode.rotate_signing_key",
                                                   "outcome": "rotated"})
        purged = await worker.keyring.purge()
        if purged:
            log.info("signing keys purged", extra={"task": "authnode.rotate_signing_key",
                                                   "outcome": f"purged={len(purged)}"})


async def requeue_stalled(app: procrastinate.App, after_s: int) -> int:
    stalled = list(await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=after_s))
    for job in stalled:
        await app.job_manager.retry_job(job)
        log.warning("stalled job requeued", extra={"task": job.task_name, "job_id": job.id})
    return len(stalled)


__all__ = ["CONTEXT_KEY", "Mailer", "register_tasks", "requeue_stalled"]
