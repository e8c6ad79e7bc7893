"""``/v1/stats/online``: how many distinct users are active, across every instance.

Authenticated, not public: the number is operational data about the service (how busy
it is, how many people use it) that anonymous visitors have no need for. Any signed-in
user may read it; being an authenticated request, it marks its caller active too.
"""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response

from authnode.api import schemas
from authnode.api.access import USER, requires
from authnode.shared.online import OnlineUsers


def stats_blueprint(online: OnlineUsers) -> Blueprint:
    bp = Blueprint("stats", __name__)

    @bp.get("/v1/stats/online")
    @requires(USER)
    @document_response(schemas.Online, 200)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 503)
    async def online_users() -> dict[str, int]:
        """Distinct users with an authenticated request in the last ``window_seconds``.

        Counted across all instances with sharded HyperLogLogs: an estimate whose standard
        error is at most 0.81 % (small counts are exact in practice). Activity is bucketed
        by minute, so the effective window is between ``window_seconds`` and
        ``window_seconds`` + 60 s; a request shows up in the count about one second after
        it was made, and the same count is reused for up to one second. 503 when Redis
        does not answer.
        """
        return {"online": await online.count(), "window_seconds": online.window_s}

    return bp
