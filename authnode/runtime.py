"""One process: the API, the workers, or both, under one anyio task group.

The first SIGTERM or SIGINT starts a graceful stop in two steps:

1. drain: ``/readyz`` answers 503 at once, so load balancers stop sending new connections,
   while the API keeps accepting and serving (every response says ``Connection: close``)
   for ``DRAIN_DELAY_S`` — long enough for them to notice;
2. stop: the listener closes, in-flight requests and running jobs get up to
   ``SHUTDOWN_TIMEOUT_MS`` to finish, then the process exits 0.

A second signal during the drain skips what is left of it; a signal after that exits at
once. The runtime is asyncio (uvloop when installed),
because redis-py, pymongo's async client, procrastinate and psycopg run only there; our
own concurrency is written with anyio.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Literal

import anyio
from anyio.abc import TaskStatus
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from procrastinate.worker import Worker

from authnode.api.app import create_app
from authnode.api.draining import CloseConnectionsWhenNeeded, linger_idle_connections
from authnode.api.metrics import metrics_app
from authnode.budget import log_at_startup as log_connection_budget
from authnode.jobs.app import EMAIL_QUEUE, MAINTENANCE_QUEUE
from authnode.jobs.tasks import CONTEXT_KEY, requeue_stalled
from authnode.observability.logs import configure_logging
from authnode.observability.metrics import Metrics
from authnode.observability.systemd import keep_watchdog_fed, notify, watchdog_interval_s
from authnode.probes import run_probes
from authnode.settings import Settings
from authnode.stack import Stack, open_stack
from authnode.webhooks.delivery import WEBHOOK_QUEUE

Role = Literal["api", "worker", "all"]
log = logging.getLogger("authnode.runtime")

READY_POLL_S = 0.5
# A worker that stopped on an error (PostgreSQL gone) is started again after this much,
# doubling up to the maximum while it keeps failing.
WORKER_RESTART_MIN_S = 0.5
WORKER_RESTART_MAX_S = 5.0


def listening_socket(bind: str, backlog: int = 1024, *,
                     reuse_port: bool = True) -> socket.socket:
    """Bind with SO_REUSEPORT so several processes (``--workers``, a rolling restart) can
    share one port; the kernel spreads new connections over them. ``reuse_port=False``
    for a port that must belong to one process (a metrics port without a shared metrics
    folder: a second process on it should fail to start, not silently split the scrapes)."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, int(port)))
    sock.listen(backlog)
    return sock


def hypercorn_config(settings: Settings, fd: int) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"fd://{fd}"]
    config.graceful_timeout = settings.shutdown_timeout_ms / 1000
    config.keep_alive_timeout = settings.keep_alive_timeout_s
    config.read_timeout = max(1, int(settings.body_timeout_s))
    config.backlog = 1024
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def _serve_api(stack: Stack, sock: socket.socket, draining: anyio.Event,
                     stop: anyio.Event, metrics: Metrics, serving: anyio.Event) -> None:
    app = create_app(stack.accounts, stack.keyring, stack.probes(), metrics=metrics,
                     webhooks=stack.webhooks, oidc=stack.oidc,
                     online=stack.online,
                     draining=draining.is_set, serving=serving.is_set)
    config = hypercorn_config(stack.settings, sock.detach())
    # Stop without failing requests in flight or on keep-alive connections (see draining).
    linger_idle_connections()
    # From the drain on, clients holding keep-alive connections reconnect, through a load
    # balancer that by then sends them elsewhere.
    await hypercorn_serve(CloseConnectionsWhenNeeded(app, draining.is_set), config,
                          shutdown_trigger=stop.wait, mode="asgi")


async def _serve_metrics(stack: Stack, sock: socket.socket, stop: anyio.Event,
                         metrics: Metrics) -> None:
    """``METRICS_BIND``: a second, tiny Hypercorn server in this event loop, the only
    place ``/metrics`` is served (never the API port, which the public reaches). It shares
    the process's life (bound before READY, closed on stop) and needs no thread."""
    config = hypercorn_config(stack.settings, sock.detach())
    await hypercorn_serve(metrics_app(metrics), config, shutdown_trigger=stop.wait)


async def _run_workers(stack: Stack, stop: anyio.Event) -> None:
    settings = stack.settings
    common = {
        "install_signal_handlers": False,
        "shutdown_graceful_timeout": settings.shutdown_timeout_ms / 1000,
        "additional_context": {CONTEXT_KEY: stack.worker},
        "update_heartbeat_interval": max(1.0, settings.stalled_job_after_s / 3),
        "stalled_worker_timeout": settings.stalled_job_after_s,
        "fetch_job_polling_interval": 2.0,
    }
    workers = [
        Worker(app=stack.jobs, queues=[EMAIL_QUEUE], concurrency=settings.worker_concurrency,
               name="email", **common),  # type: ignore[arg-type]
        Worker(app=stack.jobs, queues=[MAINTENANCE_QUEUE],
               concurrency=settings.worker_cpu_concurrency, name="maintenance",
               **common),  # type: ignore[arg-type]
        # Webhook receivers get a worker of their own: slow ones never hold up emails.
        Worker(app=stack.jobs, queues=[WEBHOOK_QUEUE], concurrency=settings.worker_concurrency,
               name="webhooks", **common),  # type: ignore[arg-type]
    ]
    async with anyio.create_task_group() as tasks:
        for worker in workers:
            tasks.start_soon(_keep_running, worker, stop)
        stalled_check = anyio.CancelScope()
        if not settings.disable_stalled_job_check:
            tasks.start_soon(_requeue_stalled_forever, stack, stalled_check)
        await stop.wait()
        stalled_check.cancel()
        for worker in workers:
            worker.stop()  # type: ignore[no-untyped-call]  # drains its jobs, run() returns


async def _keep_running(worker: Worker, stop: anyio.Event) -> None:
    """``worker.run()`` until the process stops. procrastinate's worker does not outlive
    its database: when PostgreSQL goes away its LISTEN task fails, it stops itself and
    then raises (it cannot unregister), which used to end the whole process. Run it again
    instead, with backoff; its jobs left ``doing`` are requeued by the stalled-job check."""
    delay_s = WORKER_RESTART_MIN_S
    while not stop.is_set():
        started = anyio.current_time()
        try:
            await worker.run()  # type: ignore[no-untyped-call]
        except Exception as error:
            log.warning("worker stopped on an error; restarting it",
                        extra={"queue": ",".join(worker.queues or ()),
                               "outcome": type(error).__name__})
        else:
            if stop.is_set():
                return
            log.warning("worker stopped by itself; restarting it",
                        extra={"queue": ",".join(worker.queues or ())})
        if anyio.current_time() - started > 10 * WORKER_RESTART_MAX_S:
            delay_s = WORKER_RESTART_MIN_S  # it had been running fine: a new incident
        with anyio.move_on_after(delay_s):
            await stop.wait()
        delay_s = min(2 * delay_s, WORKER_RESTART_MAX_S)


async def _requeue_stalled_forever(stack: Stack, scope: anyio.CancelScope) -> None:
    """Jobs of a worker that died mid-job (no heartbeat) go back to the queue."""
    interval_s = max(1.0, stack.settings.stalled_job_after_s / 3)
    with scope:
        while True:
            try:
                await requeue_stalled(stack.jobs, stack.settings.stalled_job_after_s)
            except Exception:
                log.warning("stalled-job check failed; will retry", exc_info=True)
            await anyio.sleep(interval_s)


async def _wait_until_ready(stack: Stack, *, task_status: TaskStatus[None]) -> None:
    probes = stack.probes()
    while True:
        checks = await run_probes(probes)
        if all(check["status"] == "up" for check in checks.values()):
            break
        down = ", ".join(name for name, check in checks.items() if check["status"] != "up")
        log.warning("waiting for dependencies", extra={"dependency": down})
        await anyio.sleep(READY_POLL_S)
    task_status.started()


async def _in_scope(scope: anyio.CancelScope, function: Callable[..., Awaitable[None]],
                    *args: object) -> None:
    with scope:
        await function(*args)


async def _watch_signals(draining: anyio.Event, stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if stop.is_set():
                log.warning("second signal: exiting at once")
                os._exit(1)
            if draining.is_set():
                log.info("second signal: skipping the rest of the drain delay")
                stop.set()
                continue
            log.info("stopping", extra={"outcome": signal.Signals(signum).name})
            notify("STOPPING=1")
            draining.set()


async def _drain_then_stop(delay_s: float, serving: anyio.Event, draining: anyio.Event,
                           stop: anyio.Event) -> None:
    """Once draining, keep serving for ``delay_s`` (or until a second signal), then stop.
    A process not yet ready has no traffic to hand over: it stops at once."""
    await draining.wait()
    if delay_s > 0 and serving.is_set() and not stop.is_set():
        log.info("draining", extra={"duration_ms": int(delay_s * 1000)})
        with anyio.move_on_after(delay_s):
            await stop.wait()
    stop.set()


async def run(settings: Settings, role: Role, *, bind: str,
              metrics_bind: str | None = None) -> int:
    configure_logging(settings.log_level, settings.instance_id)
    draining = anyio.Event()  # /readyz says 503; the listener is still open
    stop = anyio.Event()  # the listener closes; requests and jobs finish
    serving = anyio.Event()
    sock = listening_socket(bind) if role in ("api", "all") else None
    metrics = Metrics()  # the process's one; open_stack builds the components' hooks from it
    # Processes that share a metrics folder (``--workers N``, the systemd API template) all
    # report the same sums, so they may share the metrics port as they share the API port:
    # whichever answers a scrape gives the total. Alone, the port is this process's.
    metrics_sock = (listening_socket(metrics_bind,
                                     reuse_port=metrics.multiprocess_dir is not None)
                    if metrics_bind else None)
    async with anyio.create_task_group() as outer:
        outer.start_soon(_watch_signals, draining, stop)
        # Without a listener there is nothing for a load balancer to drain.
        outer.start_soon(_drain_then_stop, settings.drain_delay_s if sock else 0.0, serving,
                         draining, stop)
        async with (open_stack(settings, metrics=metrics) as stack,
                    anyio.create_task_group() as tasks):
            if role != "api":  # the processes that run jobs report the queue
                metrics.watch_job_queue(stack.jobs.connector,
                                        [EMAIL_QUEUE, MAINTENANCE_QUEUE, WEBHOOK_QUEUE])
            sampling = anyio.CancelScope()
            tasks.start_soon(_in_scope, sampling, metrics.sample_forever)
            if sock is not None:
                tasks.start_soon(_serve_api, stack, sock, draining, stop, metrics, serving)
            if metrics_sock is not None:
                tasks.start_soon(_serve_metrics, stack, metrics_sock, stop, metrics)
            if role in ("worker", "all"):
                tasks.start_soon(_run_workers, stack, stop)
            await tasks.start(_wait_until_ready, stack)
            serving.set()
            notify("READY=1")
            log.info("ready", extra={"role": role, "bind": bind if sock else None})
            tasks.start_soon(log_connection_budget, settings, os.environ)
            watchdog = anyio.CancelScope()
            if (interval_s := watchdog_interval_s()) is not None:
                tasks.start_soon(_in_scope, watchdog, keep_watchdog_fed, interval_s)
            await stop.wait()
            watchdog.cancel()
            sampling.cancel()
        outer.cancel_scope.cancel()
    metrics.close()
    log.info("stopped", extra={"role": role})
    return 0


def run_sync(settings: Settings, role: Role, *, bind: str,
             metrics_bind: str | None = None) -> int:
    backend_options = {}
    try:
        import uvloop  # noqa: F401

        backend_options["use_uvloop"] = True
    except ImportError:
        pass
    code: int = anyio.run(partial(run, settings, role, bind=bind, metrics_bind=metrics_bind),
                          backend="asyncio",
                          backend_options=backend_options)
    sys.stdout.flush()
    return code
