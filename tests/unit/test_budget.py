"""The connection budget's arithmetic and wording: no servers."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator

import anyio
import pytest

from authnode.budget import (
    Capacity,
    Processes,
    assess,
    instance_demand,
    instance_processes,
    log_at_startup,
    mongo_capacity,
    postgres_capacity,
    probe_servers,
    redis_tightest,
    render,
    warning_text,
)
from authnode.settings import Settings, load_settings
from authnode.tuning import HostResources


def _settings(**env: str) -> Settings:
    return load_settings({"DB_POOL_SIZE": "10", "REDIS_MAX_CONNECTIONS": "20",
                          "POSTGRES_POOL_SIZE": "5", "API_WORKERS": "4", **env},
                         host=HostResources(cpus=4, memory_bytes=8 << 30))


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connections to it are refused, reliably."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def _unreachable(port: int) -> Settings:
    return _settings(MONGODB_URI=f"mongodb://127.0.0.1:{port}/x",
                     REDIS_URL=f"redis://127.0.0.1:{port}/0",
                     POSTGRES_URL=f"postgresql://u@127.0.0.1:{port}/x")


def test_an_instance_is_the_api_processes_and_one_worker() -> None:
    settings = _settings()
    assert instance_processes(settings) == Processes(total=5, with_workers=1)
    # A child of `serve --workers 4` has API_WORKERS=1; the supervisor tells it 4.
    assert instance_processes(_settings(API_WORKERS="1"), api_processes=4) == \
        Processes(total=5, with_workers=1)
    assert Processes(5, 1).describe() == "4 API processes + 1 worker process"
    assert Processes(1, 1).describe() == "1 worker process"


def test_demand_counts_pools_monitors_and_listen_connections() -> None:
    demand = instance_demand(_settings(), Processes(total=5, with_workers=1))
    assert demand["mongodb"].connections == 5 * (10 + 2)
    assert demand["redis"].connections == 5 * 20
    assert demand["postgresql"].connections == 5 * 5 + 3  # three workers LISTEN in one process
    assert "per server" in demand["redis"].formula
    cluster = instance_demand(_settings(REDIS_MODE="cluster",
                                        REDIS_URL="redis://a:1,redis://b:2"),
                              Processes(total=5, with_workers=1))
    assert "per node" in cluster["redis"].formula


def test_shares_and_warnings() -> None:
    settings = _settings(CONNECTION_SHARE_WARN_PERCENT="25")
    processes = instance_processes(settings)
    demand = instance_demand(settings, processes)  # mongodb 60, redis 100, postgresql 28
    capacities = {
        "mongodb": Capacity(reachable=True, free=1000, detail="serverStatus"),  # 6 %
        "redis": Capacity(reachable=True, free=0, detail="full"),  # none left
        "postgresql": postgres_capacity(100, 3, 27),  # 28 of 70 free: 40 %
    }
    items = {item.demand.server: item for item in assess(demand, capacities, 25)}
    assert items["mongodb"].share_percent == pytest.approx(6.0)
    assert not items["mongodb"].over
    assert items["redis"].share_percent == math.inf and items["redis"].over
    assert items["postgresql"].share_percent == pytest.approx(40.0)
    assert items["postgresql"].over
    text = warning_text(items["postgresql"], 25)
    assert "28 postgresql connections" in text and "40%" in text
    assert "CONNECTION_SHARE_WARN_PERCENT=25%" in text
    assert "more than all" in warning_text(items["redis"], 25)


def test_render_says_what_is_unknown() -> None:
    settings = _settings()
    processes = instance_processes(settings)
    capacities = {
        "mongodb": mongo_capacity({"ok": 1}),  # FerretDB: no connections section
        "redis": Capacity(reachable=False, detail="ConnectionError"),
    }
    lines = render(processes, assess(instance_demand(settings, processes), capacities, 25), 25)
    assert lines[0] == "connection budget (one instance: 4 API processes + 1 worker process)"
    assert "mongodb     at most 60" in lines[1] and "not reported" in lines[1]
    assert "server unreachable (ConnectionError)" in lines[2]
    assert "server not asked" in lines[3]
    assert not any("WARNING" in line for line in lines)


def test_server_side_parsing() -> None:
    assert mongo_capacity({"connections": {"current": 5, "available": 815}}) == \
        Capacity(reachable=True, free=815, detail="serverStatus: 5 current")
    assert postgres_capacity(200, 3, 10).free == 187
    nodes = [Capacity(True, 9000, "a"), Capacity(True, 8000, "b"), Capacity(True, None, "c")]
    tightest = redis_tightest(nodes)
    assert tightest.free == 8000 and "of 3 primaries, b" in tightest.detail


@pytest.mark.anyio
async def test_unreachable_servers_answer_fast(closed_port: int) -> None:
    """Refused connections: each probe fails at once (no retries, no long selection
    timeout), well inside the bound, which here is far above the deadline."""
    settings = _unreachable(closed_port)
    with anyio.fail_after(1.9):
        found = await probe_servers(settings, timeout_s=5)
    assert {name: capacity.reachable for name, capacity in found.items()} == \
        {"mongodb": False, "redis": False, "postgresql": False}


@pytest.mark.anyio
async def test_only_the_first_api_child_logs(caplog: pytest.LogCaptureFixture,
                                             closed_port: int) -> None:
    settings = _unreachable(closed_port)
    caplog.set_level("INFO", logger="authnode.budget")
    await log_at_startup(settings, {"AUTHNODE_PROCESS_INDEX": "1"})
    assert not caplog.records
    await log_at_startup(settings, {"AUTHNODE_PROCESS_INDEX": "0",
                                    "AUTHNODE_API_PROCESSES": "8"})
    assert "8 API processes + 1 worker process" in caplog.records[0].getMessage()
