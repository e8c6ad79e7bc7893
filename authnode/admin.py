"""Operator commands' logic (the CLI only parses and prints).

Commands that act on accounts or keys take an opened :class:`~authnode.stack.Stack`, and
the job commands the opened job app, as the service holds them: the CLI opens them for one
command, and an admin API calls the same functions with its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from authnode.settings import Settings

if TYPE_CHECKING:
    import procrastinate

    from authnode.stack import Stack


async def migrate(settings: Settings) -> list[str]:
    from datetime import UTC, datetime

    from authnode.clients.mongo import create_mongo
    from authnode.jobs.app import create_job_app
    from authnode.repositories.users import UserRepository
    from authnode.stack import ensure_indexes

    lines = []
    mongo = create_mongo(settings)
    try:
        await ensure_indexes(mongo)
        lines.append("mongodb: indexes ensured")
        # Accounts made before addresses had lookup documents keep their ids.
        users = UserRepository(mongo)
        await users.load_id_key()
        created = await users.backfill_lookups(datetime.now(UTC))
        lines.append(f"mongodb: address lookups created for {created} existing accounts")
    finally:
        await mongo.close()
    if restamped := await restamp_signing_keys(settings):
        lines.append(restamped)
    jobs = create_job_app(settings)
    await jobs.open_async()
    try:
        row = await jobs.connector.execute_query_one_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present")
        if row["present"]:
            lines.append("postgresql: job-queue schema already present")
        else:
            await jobs.schema_manager.apply_schema_async()
            lines.append("postgresql: job-queue schema applied")
    finally:
        await jobs.close_async()
    return lines


async def check_dependencies(settings: Settings) -> dict[str, dict[str, str]]:
    """Ping each dependency once with a plain connection (no pools that retry in the
    background), so a failure is reported with its real cause."""
    import psycopg

    from authnode.clients.mongo import create_mongo
    from authnode.clients.redis import create_redis
    from authnode.probes import dependency_probes, run_probes

    mongo = create_mongo(settings)
    redis = create_redis(settings)

    async def postgresql() -> object:
        async with await psycopg.AsyncConnection.connect(settings.postgres_url,
                                                         connect_timeout=2) as connection:
            return await connection.execute("SELECT 1")

    try:
        return await run_probes(dependency_probes(mongo.primary, redis, postgresql))
    finally:
        await mongo.close()
        await redis.aclose()


# --------------------------------------------------------------------------- users


async def user_action(stack: Stack, email: str, action: str) -> dict[str, Any]:
    """show / disable / enable / unlock / mfa-reset / delete one account, found by email:
    the same functions as the admin API's (:mod:`authnode.operators.users`)."""
    from authnode.accounts import moderation
    from authnode.operators import users

    accounts = stack.accounts
    user = await moderation.find_by_email(accounts, email)
    if action == "disable":
        return await users.set_disabled(accounts, user.id, True)
    if action == "enable":
        return await users.set_disabled(accounts, user.id, False)
    if action == "unlock":
        return await users.unlock(accounts, user.id)
    if action == "mfa-reset":
        return await users.reset_second_factors(accounts, user.id)
    if action == "delete":
        shown = await users.describe(accounts, user)
        await users.delete(accounts, user.id)
        return {**shown, "live_sessions": 0, "deleted": True}
    return await users.describe(accounts, user)


async def create_admin_key(stack: Stack, name: str, scopes: list[str]) -> dict[str, Any]:
    from authnode.operators import keys

    key, secret_key = await keys.create(stack.accounts.admin_keys, name=name, scopes=scopes,
                                        now=stack.accounts.now())
    stack.accounts.audit.record("admin_key.created", user_id=None,
                                outcome=f"{key.id} {key.name}")
    return {**keys.describe(key), "key": secret_key}


async def list_admin_keys(stack: Stack) -> list[dict[str, Any]]:
    from authnode.operators import keys

    return [keys.describe(key) for key in await stack.accounts.admin_keys.all()]


async def revoke_admin_key(stack: Stack, key_id: str) -> dict[str, Any]:
    from authnode.errors import NotFound

    if not await stack.accounts.admin_keys.revoke(key_id, stack.accounts.now()):
        raise NotFound(f"No live admin key {key_id}.")
    stack.accounts.audit.record("admin_key.revoked", user_id=None, outcome=key_id)
    return {"id": key_id, "revoked": True}


# --------------------------------------------------------------------------- jobs


def describe_job(job: Any) -> dict[str, Any]:
    return {"id": job.id, "task": job.task_name, "queue": job.queue,
            "status": job.status, "attempts": job.attempts,
            "scheduled_at": job.scheduled_at.isoformat() if job.scheduled_at else None}


async def list_jobs(jobs: procrastinate.App, status: str | None) -> list[dict[str, Any]]:
    found = await jobs.job_manager.list_jobs_async(status=status)
    return [describe_job(job) for job in found]


async def retry_jobs(jobs: procrastinate.App, job_ids: list[int],
                     progress: Callable[[int], None]) -> list[dict[str, Any]]:
    """Queue a failed job again, as a new job with the same task and arguments (a failed
    job's row is final in procrastinate; the new job gets a new idempotency key, which is
    right: the failed one never sent its email)."""
    results = []
    for job_id in job_ids:
        found = list(await jobs.job_manager.list_jobs_async(id=job_id))
        if not found:
            results.append({"id": job_id, "outcome": "not found"})
        elif found[0].status != "failed":
            results.append({"id": job_id, "outcome": f"not failed ({found[0].status})"})
        else:
            job = found[0]
            new_id = await jobs.configure_task(job.task_name, queue=job.queue).defer_async(
                **job.task_kwargs)
            results.append({"id": job_id, "outcome": "requeued", "new_id": new_id})
        progress(1)
    return results


async def failed_job_ids(jobs: procrastinate.App) -> list[int]:
    return [job["id"] for job in await list_jobs(jobs, "failed")]


# --------------------------------------------------------------------------- keys


async def rotate_key(stack: Stack) -> dict[str, Any]:
    key = await stack.keyring.rotate()
    return {"kid": key.kid, "created_at": key.created_at.isoformat(),
            "published": [jwk["kid"] for jwk in stack.keyring.jwks()["keys"]]}


async def retire_key(stack: Stack, kid: str) -> dict[str, Any]:
    """Stop trusting ``kid`` on every instance (within the key ring's refresh interval)."""
    from authnode.tokens.keyring import KEY_REFRESH_S

    current = await stack.keyring.retire(kid)
    return {"retired": kid, "kid": current.kid,
            "published": [jwk["kid"] for jwk in stack.keyring.jwks()["keys"]],
            "everywhere_within_s": KEY_REFRESH_S}


async def list_keys(stack: Stack) -> list[dict[str, Any]]:
    rows = await stack.keyring.describe()
    return [{name: value.isoformat() if hasattr(value, "isoformat") else value
             for name, value in row.items()} for row in rows]


async def restamp_signing_keys(settings: Settings) -> str | None:
    """Bring stored signing keys under SECRET_KEY (for ``authnode migrate``); a line to
    show when it changed or refused anything."""
    from authnode.clients.mongo import create_mongo
    from authnode.repositories.signing_keys import SigningKeyRepository
    from authnode.tokens.keyring import restamp_keys

    if settings.secret_key is None:
        return "signing keys: SECRET_KEY not set; MACs not checked"
    mongo = create_mongo(settings)
    try:
        updated, refused = await restamp_keys(SigningKeyRepository(mongo.primary),
                                              settings.secret_key,
                                              settings.secret_key_previous)
    finally:
        await mongo.close()
    if not updated and not refused:
        return None
    line = f"signing keys: {updated} sealed and MACed under SECRET_KEY"
    if refused:
        line += (f"; {len(refused)} refused (no valid MAC under SECRET_KEY or "
                 f"SECRET_KEY_PREVIOUS): {', '.join(refused)}")
    return line
