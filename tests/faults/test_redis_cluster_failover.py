"""Fault 1: the Redis Cluster primary that holds the keys in use dies (``SHUTDOWN NOSAVE``).

The user is chosen so that its ``{u:<id>}`` keys (revocation marks, read by every
authenticated request, and the profile cache) and the login rate-limit key of 127.0.0.1
(read by every login) live on one primary; that primary is shut down under a steady load.
With ``cluster-node-timeout`` 1000 ms its replica is promoted in a few seconds. Meanwhile a
request may get 503 ``unavailable`` or succeed, never a 500, never a hang beyond the client
timeout; once the replica is promoted every request succeeds again within 5 s, without a
restart of authnode. The killed node is restarted afterwards and rejoins as a replica.
"""

from __future__ import annotations

import time

import anyio
import pytest
import redis

from authnode.shared import redis_keys
from tests.acceptance.test_accounts_support import PASSWORD, register_verified
from tests.faults.conftest import EnvFactory
from tests.faults.load import CLIENT_TIMEOUT_S, Load, show
from tests.services import RedisCluster, RedisServer, SmtpRecorder, wait_until

pytestmark = pytest.mark.alone

RECOVERY_S = 5.0
PROMOTION_TIMEOUT_S = 20.0
MAX_USERS_TRIED = 15
LOAD_BEFORE_S = 2.0


def _owner(cluster: RedisCluster, key: str) -> RedisServer:
    return cluster.primary_for_key(key)


def _promoted(cluster: RedisCluster, key: str, dead: RedisServer) -> bool:
    """A surviving primary serves the key's slot and the cluster says ok again."""
    if _owner(cluster, key) is dead:
        return False
    return all(info.get("cluster_state") == "ok" for info in cluster.cluster_status().values())


def _shutdown_nosave(node: RedisServer) -> None:
    try:
        node.execute("SHUTDOWN", "NOSAVE", timeout=2.0)
    except (redis.ConnectionError, redis.TimeoutError):
        pass  # the connection closes as the server exits
    assert node.proc is not None
    node.proc.wait(10)
    node.stop()  # forget the exited process


@pytest.mark.slow
@pytest.mark.anyio
async def test_primary_killed_under_load(cluster_env: EnvFactory, redis_cluster: RedisCluster,
                                         smtp: SmtpRecorder,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    env = cluster_env()
    login_key = redis_keys.rate_limit("login_ip", "127.0.0.1")
    target = _owner(redis_cluster, login_key)
    process = env.start("all")
    killed: RedisServer | None = None
    try:
        email, tried = "", 0
        while tried < MAX_USERS_TRIED:
            tried += 1
            email, user = register_verified(process.client, smtp, prefix="failover")
            if _owner(redis_cluster, redis_keys.revoked_before(user["id"])) is target:
                break
        else:
            pytest.fail(f"no user's {{u:id}} tag landed on {target} in {MAX_USERS_TRIED} tries")
        assert (_owner(redis_cluster, redis_keys.profile(user["id"])) is target)

        load = Load([process.url], email, PASSWORD, clients=4, duration_s=60,
                    max_requests=20_000)
        promotion_s = 0.0
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(load.run)
            await anyio.sleep(LOAD_BEFORE_S)
            killed_at = time.monotonic()
            killed = target
            await anyio.to_thread.run_sync(_shutdown_nosave, target)
            await anyio.to_thread.run_sync(lambda: wait_until(
                lambda: _promoted(redis_cluster, login_key, target), PROMOTION_TIMEOUT_S,
                "a replica to be promoted"))
            promoted_at = time.monotonic()
            promotion_s = promoted_at - killed_at
            await anyio.sleep(RECOVERY_S + 3.0)
            load.stop()

        result = load.result
        # A request in flight at the kill may fail (503); every one over before it succeeded.
        before = result.ended_before(killed_at)
        late_failures = [o for o in result.between(promoted_at + RECOVERY_S) if not o.ok]
        window = result.degradation()
        show(capsys, "Redis Cluster primary killed under load", {
            "users registered to find one on the target primary": tried,
            "requests (total)": len(result.outcomes),
            "seconds from SHUTDOWN to promotion": round(promotion_s, 2),
            "failed requests": len(result.failed),
            "failed as 503 unavailable": sum(o.unavailable for o in result.failed),
            "seconds of degradation (first failure to last)":
                round(window[1] - window[0], 2) if window else 0.0,
            "last failure, seconds after promotion":
                round(window[1] - promoted_at, 2) if window else None,
            "statuses": result.statuses(),
            "slowest request (s)": round(result.slowest_s, 2),
        })
        assert before and all(o.ok for o in before), [str(o) for o in before if not o.ok][:10]
        assert not result.unexpected, [str(o) for o in result.unexpected[:20]]
        assert result.slowest_s < CLIENT_TIMEOUT_S
        assert not late_failures, [str(o) for o in late_failures[:20]]
        assert len(result.between(promoted_at + RECOVERY_S)) > 20
        assert process.proc.poll() is None, "authnode exited"
    finally:
        code = process.stop()
        if killed is not None:
            killed.start()
            redis_cluster.wait_healthy(30, full=True)
    assert code == 0, process.logs()[-4000:]
