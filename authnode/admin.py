"""Operator commands' logic (the CLI only parses and prints)."""

from __future__ import annotations

from authnode.settings import Settings


async def migrate(settings: Settings) -> list[str]:
    from authnode.clients.mongo import create_mongo
    from authnode.jobs.app import create_job_app
    from authnode.stack import ensure_indexes

    lines = []
    mongo = create_mongo(settings)
    try:
        await ensure_indexes(mongo)
        lines.append("mongodb: indexes ensured")
    finally:
        await mongo.close()
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
    from authnode.api.health import run_probes
    from authnode.clients.mongo import create_mongo
    from authnode.clients.redis import create_redis
    from authnode.jobs.app import create_job_app

    mongo = create_mongo(settings)
    redis = create_redis(settings)
    jobs = create_job_app(settings)

    async def mongodb() -> object:
        return await mongo.primary.command("ping")

    async def redis_ping() -> object:
        return await redis.ping()

    async def postgresql() -> object:
        await jobs.open_async()
        return await jobs.connector.execute_query_one_async("SELECT 1 AS ok")

    try:
        return await run_probes({"mongodb": mongodb, "redis": redis_ping,
                                 "postgresql": postgresql})
    finally:
        await mongo.close()
        await redis.aclose()
        try:
            await jobs.close_async()
        except Exception:  # noqa: S110 - it may never have opened
            pass
