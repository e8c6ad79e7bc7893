"""The connection budget: what one instance opens at most, against what the servers allow.

One *instance* is one host's share of the deployment: ``API_WORKERS`` API processes plus
one worker process (what the systemd units start). Each process holds one set of pools:

* MongoDB, per server: ``DB_POOL_SIZE`` plus ``MONGO_MONITOR_CONNECTIONS`` that pymongo
  opens beside the pool to watch the server (one monitor, one round-trip-time probe).
* Redis, per node (one server, or each cluster primary): ``REDIS_MAX_CONNECTIONS``; the
  cluster client keeps one pool of that size per node.
* PostgreSQL: ``POSTGRES_POOL_SIZE``, plus, in a process that runs jobs, one
  ``LISTEN`` connection per procrastinate worker outside the pool (the runtime runs
  ``WORKERS_PER_WORKER_PROCESS`` of them: the email, maintenance and webhooks queues).

The servers' side: MongoDB ``serverStatus().connections.available`` (FerretDB does not
report it: "not reported"), PostgreSQL ``max_connections`` minus the superuser-reserved
ones minus the client connections open now, Redis ``maxclients`` minus
``connected_clients`` (in a cluster, the tightest primary). Counts of connections in use
include the one this check opens.

Pure computation (:func:`instance_demand`, :func:`assess`, :func:`render`) is separate from
the I/O (:func:`probe_servers`), which bounds each server's query by ``PROBE_TIMEOUT_S``
so ``authnode config show`` never hangs on a server that is down.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from authnode.settings import Settings

log = logging.getLogger("authnode.budget")

SERVERS = ("mongodb", "redis", "postgresql")
MONGO_MONITOR_CONNECTIONS = 2
WORKERS_PER_WORKER_PROCESS = 3  # authnode.runtime._run_workers: email, maintenance, webhooks
LISTEN_CONNECTIONS_PER_WORKER = 1
PROBE_TIMEOUT_S = 2.0
QUICK_CONNECT_TIMEOUT_S = 1.0


# --------------------------------------------------------------------------- pure


@dataclass(frozen=True)
class Processes:
    """The processes of one instance: all hold pools; ``with_workers`` also run jobs."""

    total: int
    with_workers: int

    def describe(self) -> str:
        api = self.total - self.with_workers
        parts = []
        if api:
            parts.append(f"{api} API process{'es' if api != 1 else ''}")
        if self.with_workers:
            parts.append(f"{self.with_workers} worker process"
                         f"{'es' if self.with_workers != 1 else ''}")
        return " + ".join(parts) or "no processes"


def instance_processes(settings: Settings, api_processes: int | None = None) -> Processes:
    """``API_WORKERS`` API processes and one worker process. ``api_processes`` overrides
    the count (a child of ``serve --workers N`` has ``API_WORKERS=1`` in its settings)."""
    api = settings.api_workers if api_processes is None else api_processes
    return Processes(total=api + 1, with_workers=1)


@dataclass(frozen=True)
class Demand:
    server: str
    connections: int  # at most, per server (MongoDB, PostgreSQL) or per node (Redis)
    formula: str


def instance_demand(settings: Settings, processes: Processes) -> dict[str, Demand]:
    n = processes.total
    mongo_each = settings.db_pool_size + MONGO_MONITOR_CONNECTIONS
    listen = WORKERS_PER_WORKER_PROCESS * LISTEN_CONNECTIONS_PER_WORKER
    pg = n * settings.postgres_pool_size + processes.with_workers * listen
    redis_scope = "node" if settings.redis_mode == "cluster" else "server"
    return {
        "mongodb": Demand("mongodb", n * mongo_each,
                          f"{n} x (DB_POOL_SIZE {settings.db_pool_size} + "
                          f"{MONGO_MONITOR_CONNECTIONS} monitoring) per server"),
        "redis": Demand("redis", n * settings.redis_max_connections,
                        f"{n} x REDIS_MAX_CONNECTIONS {settings.redis_max_connections} "
                        f"per {redis_scope}"),
        "postgresql": Demand("postgresql", pg,
                             f"{n} x POSTGRES_POOL_SIZE {settings.postgres_pool_size} + "
                             f"{processes.with_workers} x {listen} LISTEN"),
    }


@dataclass(frozen=True)
class Capacity:
    """What a server has left. ``free`` None: unreachable, or the server does not say."""

    reachable: bool
    free: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class Assessment:
    demand: Demand
    capacity: Capacity | None  # None: not asked
    share_percent: float | None  # of the free connections; inf when none are free
    over: bool


def assess(demands: Mapping[str, Demand], capacities: Mapping[str, Capacity],
           warn_percent: int) -> list[Assessment]:
    out = []
    for server in SERVERS:
        demand = demands[server]
        capacity = capacities.get(server)
        share: float | None = None
        if capacity is not None and capacity.free is not None:
            share = (100.0 * demand.connections / capacity.free if capacity.free > 0
                     else math.inf)
        out.append(Assessment(demand, capacity, share,
                              over=share is not None and share > warn_percent))
    return out


def _server_side(item: Assessment) -> str:
    capacity = item.capacity
    if capacity is None:
        return "server not asked"
    if not capacity.reachable:
        return f"server unreachable ({capacity.detail})" if capacity.detail else \
            "server unreachable"
    if capacity.free is None:
        return f"server: {capacity.detail or 'free connections not reported'}"
    share = "all" if item.share_percent == math.inf else f"{item.share_percent:.0f}%"
    return f"server: {capacity.free} free ({capacity.detail}); this instance: {share} of them"


def render(processes: Processes, items: list[Assessment], warn_percent: int) -> list[str]:
    """Lines for ``authnode config show`` and ``authnode check``."""
    lines = [f"connection budget (one instance: {processes.describe()})"]
    for item in items:
        flag = f"  WARNING: over {warn_percent}%" if item.over else ""
        lines.append(f"  {item.demand.server:<11} at most {item.demand.connections} "
                     f"({item.demand.formula}); {_server_side(item)}{flag}")
    return lines


def warning_text(item: Assessment, warn_percent: int) -> str:
    assert item.capacity is not None and item.capacity.free is not None
    share = "more than all" if item.share_percent == math.inf else \
        f"{item.share_percent:.0f}%"
    return (f"connection budget: one instance may open {item.demand.connections} "
            f"{item.demand.server} connections ({item.demand.formula}), {share} of the "
            f"{item.capacity.free} the server has free (warning above "
            f"CONNECTION_SHARE_WARN_PERCENT={warn_percent}%); lower the pool sizes or raise "
            "the server's limit")


# --------------------------------------------------------------------------- I/O


Probe = Callable[[Settings], Awaitable[Capacity]]


async def probe_servers(settings: Settings,
                        timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Capacity]:
    """Ask every server at once; each answer is bounded by ``timeout_s``. Never raises."""
    # Imported before any clock starts: a cold import can take longer than the timeout.
    import psycopg  # noqa: F401
    import pymongo  # noqa: F401
    import redis.asyncio  # noqa: F401

    probes: dict[str, Probe] = {"mongodb": _mongodb, "redis": _redis,
                                "postgresql": _postgresql}
    results: dict[str, Capacity] = {}

    async def run(name: str, probe: Probe) -> None:
        try:
            with anyio.fail_after(timeout_s):
                results[name] = await probe(settings)
        except TimeoutError:
            results[name] = Capacity(reachable=False, detail=f"no answer in {timeout_s:g}s")
        except Exception as error:
            results[name] = Capacity(reachable=False, detail=type(error).__name__)

    async with anyio.create_task_group() as tasks:
        for name, probe in probes.items():
            tasks.start_soon(run, name, probe)
    return {name: results[name] for name in SERVERS}


async def _quick_connect(host: str, port: int) -> None:
    """Fail fast on a refused port: pymongo would retry until its selection timeout."""
    with anyio.fail_after(QUICK_CONNECT_TIMEOUT_S):
        stream = await anyio.connect_tcp(host, port)
    await stream.aclose()


async def _mongodb(settings: Settings) -> Capacity:
    from pymongo import AsyncMongoClient
    from pymongo.uri_parser import parse_uri

    if settings.mongodb_uri.startswith("mongodb://"):
        host, port = parse_uri(settings.mongodb_uri)["nodelist"][0]
        await _quick_connect(host, port)
    timeout_ms = int(PROBE_TIMEOUT_S * 1000)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_uri, serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms, socketTimeoutMS=timeout_ms, maxPoolSize=1,
        appname="authnode-budget")
    try:
        status = await client.admin.command("serverStatus")
    finally:
        await client.close()
    return mongo_capacity(status)


def mongo_capacity(status: Mapping[str, Any]) -> Capacity:
    connections = status.get("connections")
    if not isinstance(connections, Mapping) or "available" not in connections:
        return Capacity(reachable=True, detail="free connections not reported")
    available = int(connections["available"])
    current = connections.get("current")
    detail = f"serverStatus: {current} current" if current is not None else "serverStatus"
    return Capacity(reachable=True, free=available, detail=detail)


async def _redis(settings: Settings) -> Capacity:
    from urllib.parse import urlsplit

    from redis.asyncio import Redis
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from authnode.clients.redis import startup_nodes

    first = urlsplit(settings.redis_url.split(",")[0])
    common: dict[str, Any] = {"username": first.username, "password": first.password,
                              "ssl": first.scheme == "rediss",
                              "socket_timeout": PROBE_TIMEOUT_S,
                              "socket_connect_timeout": QUICK_CONNECT_TIMEOUT_S,
                              "retry": Retry(NoBackoff(), 0)}  # one try: fail fast
    if settings.redis_mode != "cluster":
        host, port = startup_nodes(settings.redis_url)[0]
        return await _redis_node(Redis(host=host, port=port, **common), f"{host}:{port}")
    cluster = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in
                                          startup_nodes(settings.redis_url)], **common)
    try:
        await cluster.initialize()
        primaries = [(node.host, int(node.port)) for node in cluster.get_primaries()]
    finally:
        await cluster.aclose()
    nodes = [await _redis_node(Redis(host=h, port=p, **common), f"{h}:{p}")
             for h, p in primaries]
    return redis_tightest(nodes)


async def _redis_node(client: Any, name: str) -> Capacity:
    from redis.exceptions import ResponseError

    try:
        connected = int((await client.info("clients"))["connected_clients"])
        try:
            reply = await client.config_get("maxclients")
        except ResponseError:  # CONFIG renamed or disabled (managed Redis)
            return Capacity(reachable=True, detail=f"{name}: maxclients not reported")
    finally:
        await client.aclose()
    maxclients = int(reply.get(b"maxclients", reply.get("maxclients", 0)))
    return Capacity(reachable=True, free=maxclients - connected,
                    detail=f"{name}: maxclients {maxclients}, {connected} connected")


def redis_tightest(nodes: list[Capacity]) -> Capacity:
    """A cluster is as tight as its fullest primary."""
    known = [node for node in nodes if node.free is not None]
    if not known:
        return nodes[0] if nodes else Capacity(reachable=True, detail="no primaries")
    tightest = min(known, key=lambda node: node.free or 0)
    return Capacity(reachable=True, free=tightest.free,
                    detail=f"tightest of {len(nodes)} primaries, {tightest.detail}")


async def _postgresql(settings: Settings) -> Capacity:
    import psycopg

    async with await psycopg.AsyncConnection.connect(
            settings.postgres_url, connect_timeout=max(1, int(PROBE_TIMEOUT_S)),
            autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT current_setting('max_connections')::int,"
            " current_setting('superuser_reserved_connections')::int,"
            " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')")
        row = await cursor.fetchone()
    assert row is not None
    return postgres_capacity(int(row[0]), int(row[1]), int(row[2]))


def postgres_capacity(max_connections: int, reserved: int, in_use: int) -> Capacity:
    return Capacity(reachable=True, free=max_connections - reserved - in_use,
                    detail=f"max_connections {max_connections} - {reserved} reserved - "
                           f"{in_use} in use")


# --------------------------------------------------------------------------- callers


async def report(settings: Settings, *, api_processes: int | None = None,
                 timeout_s: float = PROBE_TIMEOUT_S) -> tuple[list[str], list[str]]:
    """(lines to print, warnings) for this instance against the live servers."""
    processes = instance_processes(settings, api_processes)
    capacities = await probe_servers(settings, timeout_s)
    items = assess(instance_demand(settings, processes), capacities,
                   settings.connection_share_warn_percent)
    warn = settings.connection_share_warn_percent
    return (render(processes, items, warn),
            [warning_text(item, warn) for item in items if item.over])


async def log_at_startup(settings: Settings, environ: Mapping[str, str]) -> None:
    """One INFO line with the budget, and a WARNING per server this instance would crowd.

    A child of ``serve --workers N`` has ``API_WORKERS=1`` in its settings; the supervisor
    tells it N in ``AUTHNODE_API_PROCESSES``, and only its first child logs."""
    if environ.get("AUTHNODE_PROCESS_INDEX", "0") != "0":
        return
    given = environ.get("AUTHNODE_API_PROCESSES", "")
    api_processes = int(given) if given.isdigit() else None
    try:
        lines, warnings = await report(settings, api_processes=api_processes)
    except Exception:  # the budget is advice; it never stops a start
        log.warning("connection budget could not be computed", exc_info=True)
        return
    log.info("; ".join(line.strip() for line in lines))
    for text in warnings:
        log.warning(text)
