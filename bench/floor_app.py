"""The floor for the HTTP scenarios: a bare Quart route on authnode's own Hypercorn set-up.

``python -m bench.floor_app --bind 127.0.0.1:PORT --body-bytes N`` serves ``GET /floor``,
a JSON object of exactly N bytes (the size of a ``/v1/users/me`` answer), encoded per
request as Quart encodes any dict. Everything below the route is authnode's: the socket
(:func:`authnode.runtime.listening_socket`), the Hypercorn configuration
(:func:`authnode.runtime.hypercorn_config` from the same environment's Settings), the
programmatic ``serve`` and the event loop (asyncio on uvloop). No access log, no
middleware, no schema: the price of Quart + Hypercorn alone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from functools import partial

import anyio
from hypercorn.asyncio import serve as hypercorn_serve
from quart import Quart

from authnode.runtime import hypercorn_config, listening_socket
from authnode.settings import load_settings
from authnode.tuning import read_host_resources

PATH = "/floor"


def floor_payload(body_bytes: int) -> dict[str, str]:
    """A dict whose compact JSON encoding is ``body_bytes`` long."""
    overhead = len(json.dumps({"pad": ""}, separators=(",", ":")))
    return {"pad": "x" * max(0, body_bytes - overhead)}


def create_floor_app(body_bytes: int) -> Quart:
    app = Quart("floor")
    payload = floor_payload(body_bytes)

    @app.get(PATH)
    async def floor() -> dict[str, str]:
        return payload

    return app


async def serve(bind: str, body_bytes: int) -> None:
    settings = load_settings(os.environ, host=read_host_resources())
    sock = listening_socket(bind)
    config = hypercorn_config(settings, sock.detach())
    stop = anyio.Event()

    async def watch_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                stop.set()
                return

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch_signals)
        await hypercorn_serve(create_floor_app(body_bytes), config, shutdown_trigger=stop.wait)
        tasks.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--body-bytes", type=int, required=True)
    args = parser.parse_args()
    options = {}
    try:
        import uvloop  # noqa: F401

        options["use_uvloop"] = True
    except ImportError:
        pass
    anyio.run(partial(serve, args.bind, args.body_bytes), backend="asyncio",
              backend_options=options)


if __name__ == "__main__":
    main()
