"""Real redis-server processes: a single node and a 6-node cluster (3 primaries, 3 replicas)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._util import (
    HOST,
    ServiceError,
    find_executable,
    free_port_with_offset,
    spawn,
    stop_process,
    tail,
    wait_until,
)


def redis_server_bin() -> str:
    return find_executable("redis-server", "/usr/bin/redis-server", env_var="REDIS_SERVER_BIN")


def redis_cli_bin() -> str:
    return find_executable("redis-cli", "/usr/bin/redis-cli", env_var="REDIS_CLI_BIN")


class RedisServer:
    """One redis-server on 127.0.0.1:`port`, data and log in `dir`.

    No persistence (`--save ''`, no AOF): a restart comes back empty (cluster nodes keep
    their identity through `nodes.conf` in `dir`). Restartable on the same port.
    """

    def __init__(
        self,
        port: int,
        dir: Path | str,
        extra_args: Sequence[str] = (),
        name: str = "redis",
        host: str = HOST,
    ) -> None:
        self.port = port
        self.host = host
        self.dir = Path(dir)
        self.name = name
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "redis.log"

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<RedisServer {self.name} {self.address} {state}>"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command_line(self) -> list[str]:
        return [
            redis_server_bin(),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--logfile", "",
            "--enable-debug-command", "local",
            *self.extra_args,
        ]  # fmt: skip

    def spawn(self, detach: bool = False) -> None:
        """Start the process without waiting for it (see `wait_ready`)."""
        if self.is_running:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(self.command_line(), self.log_path, cwd=self.dir, detach=detach)

    def wait_ready(self, timeout: float = 10.0) -> None:
        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited early:\n{tail(self.log_path)}")
            return bool(self.execute("PING", timeout=0.5))

        wait_until(ready, timeout, f"{self.name} on {self.address} to answer PING")

    def start(self, timeout: float = 10.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SHUTDOWN NOSAVE NOW (no wait for replicas), falling back to SIGTERM/SIGKILL."""
        if not self.is_running:
            self.proc = None
            return
        try:
            self.execute("SHUTDOWN", "NOSAVE", "NOW", timeout=2.0)
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # the expected outcome: the server closes the connection as it exits
        except redis.ResponseError:
            pass  # e.g. busy script: fall through to signals
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.proc, signal.SIGTERM, timeout)
        self.proc = None

    def kill(self) -> None:
        """Crash it (SIGKILL), for fault tests."""
        stop_process(self.proc, signal.SIGKILL)
        self.proc = None

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections hang instead of being refused."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)

    def client(self, **kwargs: Any) -> redis.Redis:
        """A synchronous client (decode_responses=True); close it when done."""
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_timeout", 5.0)
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    def execute(self, *args: Any, timeout: float = 5.0) -> Any:
        """Run one command on a short-lived connection and return the decoded reply."""
        with redis.Redis(
            host=self.host,
            port=self.port,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        ) as client:
            return client.execute_command(*args)

    def info(self, section: str | None = None) -> dict[str, Any]:
        return dict(self.execute("INFO", section) if section else self.execute("INFO"))

    def flushall(self) -> None:
        self.execute("FLUSHALL")


CLUSTER_ARGS = (
    "--cluster-enabled", "yes",
    "--cluster-config-file", "nodes.conf",
    "--cluster-node-timeout", "1000",
    "--cluster-require-full-coverage", "yes",
    # Replicas sync at once (the default waits 5 s for more replicas to join a diskless
    # transfer), and the primaries ping them every second so their replication offset moves
    # off 0 (Redis 7 leaves replicas with offset 0 out of CLUSTER SLOTS).
    "--repl-diskless-sync-delay", "0",
    "--repl-ping-replica-period", "1",
)  # fmt: skip

CLUSTER_SLOTS = 16384


def _parse_info(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    return out


class RedisCluster:
    """A Redis Cluster of `size` nodes with `replicas` replicas per primary.

    Node ports are chosen below 32768 with port+10000 (the cluster bus) also free.
    """

    def __init__(
        self, dir: Path | str, size: int = 6, replicas: int = 1, host: str = HOST
    ) -> None:
        """`host`: the address the nodes bind to and announce to clients (another one than
        127.0.0.1 lets clients in other network namespaces follow the cluster's redirects)."""
        self.dir = Path(dir)
        announce = ("--cluster-announce-ip", host) if host != HOST else ()
        self.replicas = replicas
        self.nodes: list[RedisServer] = []
        for index in range(size):
            port = free_port_with_offset(10000)
            self.nodes.append(
                RedisServer(
                    port,
                    self.dir / f"node-{port}",
                    extra_args=(*CLUSTER_ARGS, *announce),
                    name=f"redis-cluster-node-{index}",
                    host=host,
                )
            )

    def __repr__(self) -> str:
        return f"<RedisCluster {self.url}>"

    @property
    def url(self) -> str:
        """Startup nodes, comma-separated: "redis://127.0.0.1:P1,redis://127.0.0.1:P2,..."."""
        return ",".join(f"redis://{node.address}" for node in self.nodes)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(node.host, node.port) for node in self.nodes]

    def node_by_port(self, port: int) -> RedisServer:
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(f"no cluster node on port {port}")

    def running_nodes(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.is_running]

    def _any_node(self) -> RedisServer:
        for node in self.running_nodes():
            try:
                node.execute("PING", timeout=1.0)
            except redis.RedisError:
                continue
            return node
        raise ServiceError("no cluster node is reachable")

    def start(self, timeout: float = 30.0) -> None:
        """Start every node; on the first start also create the cluster. Waits until healthy."""
        deadline = time.monotonic() + timeout
        fresh = not any((node.dir / "nodes.conf").exists() for node in self.nodes)
        for node in self.nodes:
            node.spawn()
        for node in self.nodes:
            node.wait_ready(max(0.1, deadline - time.monotonic()))
        if fresh:
            self._create(max(1.0, deadline - time.monotonic()))
        self.wait_healthy(max(0.1, deadline - time.monotonic()), full=True)

    def _create(self, timeout: float) -> None:
        args = [
            redis_cli_bin(),
            "--cluster", "create",
            *(node.address for node in self.nodes),
            "--cluster-replicas", str(self.replicas),
            "--cluster-yes",
        ]  # fmt: skip
        try:
            result = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            message = f"redis-cli --cluster create timed out after {timeout:.0f}s"
            raise ServiceError(message) from exc
        if result.returncode != 0:
            out = (result.stdout + result.stderr).decode(errors="replace")
            raise ServiceError(f"redis-cli --cluster create failed:\n{out}")

    def cluster_status(self) -> dict[int, dict[str, str]]:
        """CLUSTER INFO of every running node, by port."""
        return {
            node.port: _parse_info(node.execute("CLUSTER", "INFO", timeout=1.0))
            for node in self.running_nodes()
        }

    def is_healthy(self, full: bool = False) -> bool:
        """cluster_state:ok with all slots covered on every running node, and every running
        replica linked to its primary.

        `full=True` also requires every node to be running and known to every node, and each
        primary to list its replicas in CLUSTER SLOTS (what a fresh cluster looks like).
        """
        running = self.running_nodes()
        if full and len(running) != len(self.nodes):
            return False
        for node in running:
            info = _parse_info(node.execute("CLUSTER", "INFO", timeout=1.0))
            if info.get("cluster_state") != "ok":
                return False
            if int(info.get("cluster_slots_assigned", 0)) != CLUSTER_SLOTS:
                return False
            if int(info.get("cluster_slots_ok", 0)) != CLUSTER_SLOTS:
                return False
            if full and int(info.get("cluster_known_nodes", 0)) != len(self.nodes):
                return False
            replication = node.info("replication")
            if replication.get("role") == "slave" and replication.get("master_link_status") != (
                "up"
            ):
                return False
        if full:
            for _, _, _, replica_ports in self.slots():
                if len(replica_ports) < self.replicas:
                    return False
        return True

    def wait_healthy(self, timeout: float = 15.0, full: bool = False) -> None:
        """Wait for `is_healthy(full)`, e.g. after a failover or a node restart."""

        def describe() -> str:
            try:
                status = self.cluster_status()
            except redis.RedisError as exc:
                status = {0: {"error": repr(exc)}}
            summary = {
                port: {k: v for k, v in info.items() if k.startswith("cluster_s")}
                for port, info in status.items()
            }
            return f"redis cluster to become healthy (full={full}); status: {summary}"

        wait_until(lambda: self.is_healthy(full), timeout, describe)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def slots(self) -> list[tuple[int, int, int, list[int]]]:
        """(first_slot, last_slot, primary_port, replica_ports) from CLUSTER SLOTS."""
        out = []
        for entry in self._any_node().execute("CLUSTER", "SLOTS"):
            first, last, primary, *replicas = entry
            out.append((int(first), int(last), int(primary[1]), [int(r[1]) for r in replicas]))
        return out

    def keyslot(self, key: str) -> int:
        return int(self._any_node().execute("CLUSTER", "KEYSLOT", key))

    def primary_for_key(self, key: str) -> RedisServer:
        """The primary node currently owning `key`'s hash slot."""
        slot = self.keyslot(key)
        for first, last, primary_port, _ in self.slots():
            if first <= slot <= last:
                return self.node_by_port(primary_port)
        raise ServiceError(f"slot {slot} of {key!r} is not served by any node")

    def replicas_for_key(self, key: str) -> list[RedisServer]:
        slot = self.keyslot(key)
        for first, last, _, replica_ports in self.slots():
            if first <= slot <= last:
                return [self.node_by_port(port) for port in replica_ports]
        raise ServiceError(f"slot {slot} of {key!r} is not served by any node")

    def primaries(self) -> list[RedisServer]:
        ports = sorted({primary for _, _, primary, _ in self.slots()})
        return [self.node_by_port(port) for port in ports]

    def flushall(self) -> None:
        """FLUSHALL on every primary (replicas follow)."""
        for node in self.primaries():
            node.flushall()


@dataclass(frozen=True)
class RedisTarget:
    """What `redis_target` yields: the mode, the URL the app's REDIS_URL takes, the handle."""

    mode: str  # "single" or "cluster"
    url: str
    server: RedisServer | RedisCluster | None = field(default=None, repr=False, compare=False)

    @property
    def is_cluster(self) -> bool:
        return self.mode == "cluster"

    @property
    def env(self) -> dict[str, str]:
        """The app's settings for this target: REDIS_URL and REDIS_MODE."""
        return {"REDIS_URL": self.url, "REDIS_MODE": self.mode}


def parse_startup_nodes(url: str) -> list[tuple[str, int]]:
    """Parse startup nodes: "redis://h1:p1,redis://h2:p2" (or "h1:p1,h2:p2") -> [(h1, p1), ...]."""
    nodes = []
    for part in url.split(","):
        part = part.strip()
        if not part:
            continue
        parsed = urlsplit(part if "://" in part else f"redis://{part}")
        nodes.append((parsed.hostname or HOST, parsed.port or 6379))
    return nodes


def async_client(target: RedisTarget | str, **kwargs: Any) -> Any:
    """A redis.asyncio client for a single-node URL or a cluster startup-nodes URL.

    Returns redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster; `await c.aclose()`.
    """
    from redis.asyncio import Redis as AsyncRedis
    from redis.asyncio.cluster import ClusterNode
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

    if isinstance(target, RedisTarget):
        url, cluster = target.url, target.is_cluster
    else:
        url, cluster = target, "," in target
    kwargs.setdefault("decode_responses", True)
    if cluster:
        nodes = [ClusterNode(host, port) for host, port in parse_startup_nodes(url)]
        return AsyncRedisCluster(startup_nodes=nodes, **kwargs)
    return AsyncRedis.from_url(url, **kwargs)
