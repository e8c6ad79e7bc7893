"""``/healthz`` (the process answers; no I/O) and ``/readyz`` (every dependency answers)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from quart import Blueprint
from quart_schema import document_response

from authnode.api import schemas
from authnode.api.access import public
from authnode.probes import Probe, run_probes


def health_blueprint(probes: Mapping[str, Probe],
                     draining: Callable[[], bool] = lambda: False,
                     serving: Callable[[], bool] = lambda: True) -> Blueprint:
    """``draining()`` true: the process is stopping (see :mod:`authnode.runtime`);
    ``/readyz`` answers 503 at once so load balancers take it out of rotation.
    ``serving()`` false: the process has not declared itself ready yet; ``/readyz`` says
    503 ``starting`` until it has, so that nobody sends traffic (or a stop signal that
    expects a drain) to a process that would stop at once, having nothing to drain."""
    bp = Blueprint("health", __name__)

    @bp.get("/healthz")
    @public
    @document_response(schemas.Alive, 200)
    async def healthz() -> dict[str, str]:
        """The process is alive. Touches nothing else."""
        return {"status": "ok"}

    @bp.get("/readyz")
    @public
    @document_response(schemas.Readiness, 200)
    @document_response(schemas.Readiness, 503)
    async def readyz() -> tuple[dict[str, object], int]:
        """Every dependency answers (200), or which one does not (503); 503 with status
        ``starting`` until the process is ready, ``draining`` once it is stopping."""
        if draining():
            return {"status": "draining", "checks": {}}, 503
        checks = await run_probes(probes)
        down = [name for name, check in checks.items() if check["status"] != "up"]
        if down:
            return {"status": "unavailable: " + ", ".join(down), "checks": checks}, 503
        if not serving():
            return {"status": "starting", "checks": checks}, 503
        return {"status": "ready", "checks": checks}, 200

    return bp
