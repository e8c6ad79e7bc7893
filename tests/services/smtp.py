"""An SMTP server (aiosmtpd, in a background thread) that records every message it accepts."""

from __future__ import annotations

import email.policy
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller

from ._util import HOST, free_port, wait_until, wait_until_async

_URL_RE = re.compile(r"https?://[^\s<>\"')\]]+")


@dataclass(frozen=True)
class RecordedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    received_at: float = field(default_factory=time.time)
    connection: int = 0  # which connection carried it: 1 for the first EHLO, and so on

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def to(self) -> str:
        """The To: header (the envelope recipients are `rcpt_tos`)."""
        return str(self.message.get("To", ""))

    def _part(self, subtype: str) -> str | None:
        part = self.message.get_body(preferencelist=(subtype,))
        if part is None:
            return None
        content = part.get_content()
        return content if isinstance(content, str) else None

    @property
    def text(self) -> str:
        """The text/plain body (the HTML body when there is no plain one)."""
        return self._part("plain") or self._part("html") or ""

    @property
    def html(self) -> str | None:
        return self._part("html")

    def links(self) -> list[str]:
        """Every http(s) URL in the plain body, then the HTML body, in order, deduplicated."""
        found: list[str] = []
        for body in (self._part("plain"), self._part("html")):
            for url in _URL_RE.findall(body or ""):
                url = url.replace("&amp;", "&")
                if url not in found:
                    found.append(url)
        return found

    def is_for(self, address: str) -> bool:
        address = address.lower()
        return any(rcpt.lower() == address for rcpt in self.rcpt_tos)


MessagePredicate = Callable[[RecordedMessage], bool]


class _Handler:
    def __init__(self, recorder: SmtpRecorder) -> None:
        self.recorder = recorder

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname  # with this hook, aiosmtpd leaves it to the handler
        session.authnode_connection = self.recorder._connected()
        return responses

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        """``250 OK``, unless the recorder is told to refuse RSET or to drop the
        connection on it (as a server that timed the client out would have)."""
        reply, drop = self.recorder._rset_behaviour()
        if drop:
            server.transport.close()
        return reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        failure = self.recorder._failure_for_this_message()
        if failure is not None:
            return failure
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        # SMTP line endings are CRLF; parse with plain newlines so bodies compare naturally.
        parsed = BytesParser(policy=email.policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
        assert isinstance(parsed, EmailMessage)
        self.recorder._record(
            RecordedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                message=parsed,
                raw=raw,
                connection=getattr(session, "authnode_connection", 0),
            )
        )
        return "250 Message accepted for delivery"


class SmtpRecorder:
    """Records messages; thread-safe. `url` is "smtp://127.0.0.1:PORT" (no TLS, no auth).

    `on_message` is called (in the server thread) for every recorded message.
    `failure` set to an SMTP reply such as "451 4.3.0 try later" makes DATA fail with it;
    `refuse_next(n)` makes only the next n DATA commands fail (`refused_at` has their times).
    stop()/start() keep the port, so an outage can be simulated.
    """

    def __init__(
        self,
        port: int | None = None,
        on_message: Callable[[RecordedMessage], None] | None = None,
        host: str = HOST,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port()
        self.on_message = on_message
        self.failure: str | None = None
        self.refused_at: list[float] = []  # time.time() of each refusal by refuse_next
        self._refusals_left = 0
        self._refusal_reply = ""
        self._messages: list[RecordedMessage] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self.connections = 0  # EHLOs seen
        self.rsets = 0
        self._rset_reply = "250 OK"
        self._rset_drops = 0

    def __repr__(self) -> str:
        return f"<SmtpRecorder {self.url} messages={len(self)}>"

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def is_running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        if self._controller is not None:
            return
        controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ready_timeout=10.0,
            enable_SMTPUTF8=True,
        )
        controller.start()  # returns once the server accepts connections
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse_next(self, count: int, reply: str = "451 4.3.0 Try again later") -> None:
        """Answer the next ``count`` DATA commands with ``reply`` (a transient failure by
        default), then accept messages again."""
        with self._lock:
            self._refusals_left = count
            self._refusal_reply = reply
            self.refused_at.clear()

    def on_rset(self, reply: str = "250 OK", *, drop_next: int = 0) -> None:
        """Answer RSET with ``reply`` from now on; close the connection instead on the
        next ``drop_next`` RSETs."""
        with self._lock:
            self._rset_reply = reply
            self._rset_drops = drop_next

    def _connected(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections

    def _rset_behaviour(self) -> tuple[str, bool]:
        with self._lock:
            self.rsets += 1
            if self._rset_drops > 0:
                self._rset_drops -= 1
                return "421 4.4.2 Closing", True
            return self._rset_reply, False

    def _failure_for_this_message(self) -> str | None:
        if self.failure is not None:
            return self.failure
        with self._lock:
            if self._refusals_left <= 0:
                return None
            self._refusals_left -= 1
            self.refused_at.append(time.time())
            return self._refusal_reply

    def _record(self, message: RecordedMessage) -> None:
        with self._lock:
            self._messages.append(message)
        if self.on_message is not None:
            self.on_message(message)

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    def messages(self, to: str | None = None) -> list[RecordedMessage]:
        """A snapshot of recorded messages, optionally only those with envelope recipient `to`."""
        with self._lock:
            snapshot = list(self._messages)
        if to is None:
            return snapshot
        return [m for m in snapshot if m.is_for(to)]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def _matcher(
        self, expected: int | MessagePredicate, to: str | None
    ) -> tuple[Callable[[], list[RecordedMessage]], Callable[[], str]]:
        def matches() -> list[RecordedMessage]:
            current = self.messages(to)
            if isinstance(expected, int):
                return current if len(current) >= expected else []
            return [m for m in current if expected(m)]

        def describe() -> str:
            what = f"{expected} message(s)" if isinstance(expected, int) else "a matching message"
            where = f" to {to}" if to else ""
            got = [(m.rcpt_tos, m.subject) for m in self.messages()]
            return f"{what}{where} on {self.url}; received so far: {got}"

        return matches, describe

    def wait_for(
        self,
        expected: int | MessagePredicate = 1,
        timeout: float = 10.0,
        to: str | None = None,
    ) -> list[RecordedMessage]:
        """Block until at least `expected` messages (or any message matching the predicate)
        arrived, optionally only counting those for `to`; return them (all of them, or the
        matching ones). Raises WaitTimeout (a TimeoutError) listing what did arrive.

        Do not call this from a coroutine running in the same event loop as the code that
        sends the mail: use `wait_for_async` there.
        """
        matches, describe = self._matcher(expected, to)
        return wait_until(matches, timeout, describe)

    async def wait_for_async(
        self,
        expected: int | MessagePredicate = 1,
        timeout: float = 10.0,
        to: str | None = None,
    ) -> list[RecordedMessage]:
        """`wait_for` for async tests: sleeps with anyio between polls."""
        matches, describe = self._matcher(expected, to)
        return await wait_until_async(matches, timeout, describe)
