"""The Redis figures ``authnode capacity`` uses, measured against a real Redis and a real
``authnode serve --role api``: the bytes of a cached profile (``MEMORY USAGE``, the key
that grows with the number of active users) and the Redis commands a login, a refresh and
a profile read cost (``INFO stats`` before and after a batch of each). The shipped figures
(authnode/capacity_costs.json) must stay within reach of what is measured here.

Single-node Redis only: a key's size and the commands per request do not depend on the
mode (in a cluster the same commands are spread over the nodes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from authnode.shared import redis_keys
from tests.acceptance.test_accounts_support import PASSWORD, register_verified, running
from tests.faults.conftest import EnvFactory, single_env  # noqa: F401  (fixture)
from tests.faults.load import show
from tests.services import SmtpRecorder

pytestmark = pytest.mark.alone

SHIPPED = Path(__file__).resolve().parents[2] / "authnode" / "capacity_costs.json"
BATCH = 30
# Background commands (the online-users flush, about one pipeline a second) blur a batch
# a little; a changed code path moves the figure by whole commands per request.
TOLERANCE = (0.6, 1.6)


def _commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def _per_request(client: redis.Redis, action: Callable[[], None]) -> float:
    before = _commands(client)
    for _ in range(BATCH):
        action()
    return (_commands(client) - before - 1) / BATCH  # minus the INFO itself


@pytest.mark.slow
def test_measured_redis_costs_match_the_shipped_figures(
        single_env: EnvFactory, smtp: SmtpRecorder,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    env = single_env()
    store = redis.Redis.from_url(env.variables["REDIS_URL"])
    with running(env, "api") as api:
        with running(env, "worker"):
            email, user = register_verified(api.client, smtp, prefix="capacity")
        client: httpx.Client = api.client
        tokens = client.post("/v1/auth/login",
                             json={"email": email, "password": PASSWORD}).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert client.get("/v1/users/me", headers=headers).status_code == 200
        profile_bytes = store.memory_usage(redis_keys.profile(user["id"]))
        assert profile_bytes, "the profile was not cached in Redis"

        def login() -> None:
            response = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert response.status_code == 200, response.text

        refresh_token = [tokens["refresh_token"]]

        def refresh() -> None:
            response = client.post("/v1/auth/refresh",
                                   json={"refresh_token": refresh_token[0]})
            assert response.status_code == 200, response.text
            refresh_token[0] = response.json()["refresh_token"]

        def profile_read() -> None:
            assert client.get("/v1/users/me", headers=headers).status_code == 200

        measured = {"login": _per_request(store, login),
                    "refresh": _per_request(store, refresh),
                    "profile_read": _per_request(store, profile_read)}
    store.close()
    shipped = json.loads(SHIPPED.read_text())
    show(capsys, "Redis costs of authnode's operations (measured / shipped)", {
        "bytes per cached profile": f"{profile_bytes} / {shipped['redis_bytes_per_profile']}",
        **{f"commands per {op}": f"{round(n, 2)} / {shipped['redis_commands'][op]}"
           for op, n in measured.items()},
    })
    low, high = TOLERANCE
    assert low <= profile_bytes / shipped["redis_bytes_per_profile"] <= high
    for op, n in measured.items():
        expected = shipped["redis_commands"][op]
        if expected == 0:
            assert n < 0.5, (op, n)  # a refresh touches MongoDB only
        else:
            assert low <= n / expected <= high, (op, n)
