"""``GET /metrics``: Prometheus exposition, served only on ``METRICS_BIND`` (``--metrics-bind``),
never on the public API port."""

from __future__ import annotations

import anyio.to_thread
from quart import Blueprint, Quart, Response, request
from quart_schema import hide

from authnode.api.access import public
from authnode.observability.metrics import Metrics


def metrics_blueprint(metrics: Metrics) -> Blueprint:
    bp = Blueprint("metrics", __name__)

    @bp.get("/metrics")
    @public
    @hide
    async def exposition() -> Response:
        # In multiprocess mode this reads one file per process: keep it off the loop.
        body, content_type = await anyio.to_thread.run_sync(
            metrics.exposition, request.headers.get("Accept", ""))
        return Response(body, status=200, content_type=content_type,
                        headers={"Cache-Control": "no-store"})

    return bp


def metrics_app(metrics: Metrics) -> Quart:
    """The metrics server: ``/metrics`` and nothing else (404 otherwise)."""
    app = Quart("authnode-metrics")
    app.register_blueprint(metrics_blueprint(metrics))
    return app
