"""``/readyz`` is 200 only for a process that declared itself ready and is not stopping."""

from __future__ import annotations

import pytest
from quart import Quart

from authnode.api.health import health_blueprint


async def _up() -> object:
    return True


async def _down() -> object:
    raise ConnectionError("refused")


def _app(*, serving: bool, draining: bool = False, redis_up: bool = True) -> Quart:
    app = Quart(__name__)
    probes = {"mongodb": _up, "redis": _up if redis_up else _down}
    app.register_blueprint(health_blueprint(probes, lambda: draining, lambda: serving))
    return app


@pytest.mark.anyio
async def test_a_process_not_yet_ready_says_starting() -> None:
    """The dependencies answer, but the runtime has not declared the process ready: a load
    balancer (or a stop signal expecting a drain) must not treat it as serving yet."""
    response = await _app(serving=False).test_client().get("/readyz")
    assert response.status_code == 503
    body = await response.get_json()
    assert body["status"] == "starting"
    assert body["checks"] == {"mongodb": {"status": "up"}, "redis": {"status": "up"}}


@pytest.mark.anyio
async def test_a_missing_dependency_is_named_while_starting() -> None:
    response = await _app(serving=False, redis_up=False).test_client().get("/readyz")
    assert response.status_code == 503
    assert (await response.get_json())["status"] == "unavailable: redis"


@pytest.mark.anyio
@pytest.mark.parametrize("draining, status, code", [(False, "ready", 200),
                                                    (True, "draining", 503)])
async def test_ready_then_draining(draining: bool, status: str, code: int) -> None:
    response = await _app(serving=True, draining=draining).test_client().get("/readyz")
    assert response.status_code == code
    assert (await response.get_json())["status"] == status
