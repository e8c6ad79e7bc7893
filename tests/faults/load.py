"""A steady, bounded load of logins, refreshes and profile reads, and what it saw.

Each simulated client has its own ``httpx.AsyncClient`` (so its own keep-alive
connections) and loops: log in, then read ``/v1/users/me`` and rotate its refresh token,
logging in again every few operations, until the load is stopped, its time is up or it has
made its share of requests. Every request becomes an :class:`Outcome` with its status (or
the transport error) and its start and end on the ``time.monotonic()`` clock, so a test can
line them up with the moment it broke something.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest

CLIENT_TIMEOUT_S = 10.0
UNAVAILABLE = 503


@dataclass(frozen=True)
class Outcome:
    client: int
    op: str
    started: float
    ended: float
    status: int | None  # None: no HTTP answer (connection error, timeout)
    detail: str  # the error code of a JSON error body, or the transport error's type
    message: str = ""  # the error message of a JSON error body
    request_id: str = ""  # the X-Request-ID sent, which the server logs with the request
    cause: str = ""  # a transport error's root cause, e.g. "ConnectionResetError"

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400

    @property
    def unavailable(self) -> bool:
        """A clear, retryable refusal: 503 with code ``unavailable``."""
        return self.status == UNAVAILABLE and self.detail == "unavailable"

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def __str__(self) -> str:
        return f"{self.op} -> {self.status} {self.detail} {self.message!r} ({self.seconds:.2f}s)"


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)

    def between(self, start: float, end: float = float("inf")) -> list[Outcome]:
        """Outcomes of requests that started in [start, end)."""
        return [o for o in self.outcomes if start <= o.started < end]

    def ended_before(self, end: float) -> list[Outcome]:
        """Outcomes of requests that were over before ``end`` (none was in flight then)."""
        return [o for o in self.outcomes if o.ended < end]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def unexpected(self) -> list[Outcome]:
        """Neither a success nor a clear 503 ``unavailable``: 500s, other errors, hangs."""
        return [o for o in self.outcomes if not (o.ok or o.unavailable)]

    @property
    def slowest_s(self) -> float:
        return max((o.seconds for o in self.outcomes), default=0.0)

    def statuses(self) -> dict[str, int]:
        return dict(Counter(f"{o.status or o.detail}" for o in self.outcomes))

    def degradation(self) -> tuple[float, float] | None:
        """(first failed request's start, last failed request's end), or None."""
        failed = self.failed
        if not failed:
            return None
        return min(o.started for o in failed), max(o.ended for o in failed)


def root_cause(error: BaseException) -> str:
    """The type name at the bottom of an exception's ``__cause__`` / ``__context__`` chain
    (httpx wraps httpcore's error, which wraps the OSError)."""
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        nested = error.__cause__ or error.__context__
        if nested is None:
            break
        error = nested
    return type(error).__name__


def error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an error response; ("", "") for a success."""
    if response.status_code < 400:
        return "", ""
    try:
        body: Any = response.json()
        return str(body["error"]["code"]), str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"non-json:{response.text[:60]!r}", ""


class Load:
    """``async with anyio.create_task_group() as tg: tg.start_soon(load.run)``; later
    ``load.stop()``. ``urls`` are spread over the clients (client i uses urls[i % n])."""

    def __init__(self, urls: Sequence[str], email: str, password: str, *, clients: int = 4,
                 duration_s: float = 60.0, max_requests: int = 20_000,
                 pause_s: float = 0.005, relogin_every: int = 12,
                 timeout_s: float = CLIENT_TIMEOUT_S, fresh_connections: int = 0) -> None:
        self.urls = list(urls)
        self.email = email
        self.password = password
        self.clients = clients
        self.duration_s = duration_s
        self.max_requests = max_requests
        self.pause_s = pause_s
        self.relogin_every = relogin_every
        self.timeout_s = timeout_s
        # The last ``fresh_connections`` clients open a new connection for every request.
        self.fresh_connections = fresh_connections
        self.result = LoadResult()
        self._stop = anyio.Event()
        self._deadline = 0.0

    def stop(self) -> None:
        self._stop.set()

    def _more(self) -> bool:
        return (not self._stop.is_set() and time.monotonic() < self._deadline
                and len(self.result.outcomes) < self.max_requests)

    async def run(self) -> None:
        self._deadline = time.monotonic() + self.duration_s
        async with anyio.create_task_group() as tasks:
            for index in range(self.clients):
                tasks.start_soon(self._client, index)

    async def wait_for_requests(self, count: int, timeout_s: float = 30.0) -> None:
        with anyio.fail_after(timeout_s):
            while len(self.result.outcomes) < count:
                await anyio.sleep(0.05)

    async def _call(self, client: httpx.AsyncClient, index: int, op: str, method: str,
                    path: str, **kwargs: Any) -> httpx.Response | None:
        request_id = f"load-{index}-{secrets.token_hex(6)}"
        headers = {**kwargs.pop("headers", {}), "X-Request-ID": request_id}
        started = time.monotonic()
        try:
            response = await client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            self.result.outcomes.append(Outcome(index, op, started, time.monotonic(), None,
                                                type(error).__name__, request_id=request_id,
                                                cause=root_cause(error)))
            return None
        self.result.outcomes.append(Outcome(index, op, started, time.monotonic(),
                                            response.status_code, *error_of(response),
                                            request_id=request_id))
        return response

    async def _client(self, index: int) -> None:
        fresh = index >= self.clients - self.fresh_connections
        limits = (httpx.Limits(max_keepalive_connections=0) if fresh
                  else httpx.Limits(max_keepalive_connections=1, max_connections=1))
        async with httpx.AsyncClient(base_url=self.urls[index % len(self.urls)],
                                     timeout=self.timeout_s, limits=limits) as client:
            access: str | None = None
            refresh: str | None = None
            step = 0
            while self._more():
                step += 1
                if access is None or refresh is None or step % self.relogin_every == 0:
                    response = await self._call(client, index, "login", "POST",
                                                "/v1/auth/login",
                                                json={"email": self.email,
                                                      "password": self.password})
                    if response is not None and response.status_code == 200:
                        access = response.json()["access_token"]
                        refresh = response.json()["refresh_token"]
                elif step % 3 == 0:
                    response = await self._call(client, index, "refresh", "POST",
                                                "/v1/auth/refresh",
                                                json={"refresh_token": refresh})
                    if response is not None and response.status_code == 200:
                        access = response.json()["access_token"]
                        refresh = response.json()["refresh_token"]
                    elif response is not None and response.status_code == 401:
                        access = refresh = None
                else:
                    response = await self._call(client, index, "me", "GET", "/v1/users/me",
                                                headers={"Authorization": f"Bearer {access}"})
                    if response is not None and response.status_code == 401:
                        access = refresh = None
                await anyio.sleep(self.pause_s)


def show(capsys: pytest.CaptureFixture[str], title: str, figures: dict[str, Any]) -> None:
    """Print a scenario's figures so they show in a normal (captured) pytest run."""
    width = max(len(name) for name in figures)
    lines = [f"\n[faults] {title}"]
    lines += [f"[faults]   {name:<{width}}  {value}" for name, value in figures.items()]
    with capsys.disabled():
        print("\n".join(lines), flush=True)
