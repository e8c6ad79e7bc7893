"""Delivering rendered messages, behind the one :class:`MailSender` protocol.

* :class:`SmtpSender` speaks SMTP with aiosmtplib (asyncio only). A worker keeps its
  connections open between messages: a connection that sent a message goes back to an
  idle list and the next message takes it after an ``RSET`` (which also proves it still
  works). A connection is replaced when the ``RSET`` fails or is refused (the server
  dropped it, timed it out, or wants no more), when it has been idle for
  ``max_idle_s``, and after ``max_messages_per_connection`` messages (QUIT, then a fresh
  one), so a long-running worker never depends on one connection for long. Any failure
  during a message closes its connection; the job's retry opens a new one. Reusing a
  connection changes nothing about duplicates: a message is recorded as sent the moment
  the server accepts it, as before, and a failed ``RSET`` happens before anything of the
  next message was sent.

Every failure to deliver becomes :class:`MailDeliveryError`, whose text never contains the
message, its links, the recipient address or the SMTP password. Logs name the kind, a hash
of the recipient and the Message-ID, nothing else.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosmtplib

from authnode.mail.messages import KIND_HEADER

__all__ = [
    "MailDeliveryError",
    "MailSender",
    "OnAccepted",
    "SmtpSender",
    "SmtpTarget",
    "parse_smtp_url",
    "recipient_hash",
    "sender_from_url",
]

log = logging.getLogger("authnode.mail")

# A connection carries at most this many messages, then a fresh one is opened: no
# server-side per-connection limit is reached, and no connection lives for ever.
MAX_MESSAGES_PER_CONNECTION = 100
# Idle longer than this, a connection is closed rather than tried: servers drop idle
# clients (RFC 5321 asks them to wait 5 minutes; many wait less).
MAX_IDLE_S = 30.0
# Idle connections kept per sender (a worker runs WORKER_CONCURRENCY sends at once).
MAX_IDLE_CONNECTIONS = 16


OnAccepted = Callable[[], Awaitable[None]]


@runtime_checkable
class MailSender(Protocol):
    async def send(self, message: EmailMessage, on_accepted: OnAccepted | None = None) -> None:
        """Deliver ``message`` to its To address or raise :class:`MailDeliveryError`.

        ``on_accepted`` is awaited the moment the server has accepted the message, before
        anything else (closing the connection, logging): a caller recording the send there
        leaves the shortest possible window in which a crash loses the record of a message
        that went out. Its exceptions propagate unchanged.
        """
        ...

    async def aclose(self) -> None:
        """Release what the sender holds; idempotent."""
        ...


class MailDeliveryError(Exception):
    """The message was not delivered; ``str()`` is safe to log.

    ``permanent`` is True when sending the same message again cannot succeed (the server
    answered 5xx, or the message has no usable recipient); False for connection errors,
    timeouts and 4xx answers, which are worth retrying later. ``smtp_code`` is the
    server's reply code when there was one.
    """

    def __init__(self, message: str, *, permanent: bool = False,
                 smtp_code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.smtp_code = smtp_code


def recipient_hash(address: str) -> str:
    """A short stable hash of an address for logs (never log the address itself)."""
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()[:16]


def _describe(message: EmailMessage) -> tuple[str, str, str]:
    """(kind, hashed recipient, Message-ID) for log lines."""
    kind = str(message.get(KIND_HEADER, "unknown"))
    to = message.get("To")
    addresses = getattr(to, "addresses", ())
    recipient = ",".join(recipient_hash(a.addr_spec) for a in addresses) or "none"
    return kind, recipient, str(message.get("Message-ID", "none"))


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect, from ``smtp://`` or ``smtps://`` URL."""

    host: str
    port: int
    use_tls: bool  # implicit TLS from the first byte (smtps://)
    start_tls: bool  # upgrade a plain connection with STARTTLS (?starttls=true)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def sends_credentials_in_clear(self) -> bool:
        """A user or password would cross a connection that never becomes TLS."""
        has_credentials = self.username is not None or self.password is not None
        return has_credentials and not (self.use_tls or self.start_tls)

    def __str__(self) -> str:
        scheme = "smtps" if self.use_tls else "smtp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_smtp_url(smtp_url: str) -> SmtpTarget:
    """Parse ``smtp[s]://[user:password@]host[:port][?starttls=true]``.

    Default ports are 25 (smtp) and 465 (smtps). STARTTLS is used only when asked for,
    never opportunistically. User and password are percent-decoded. Raises ValueError
    whose text never contains the password.
    """
    parts = urlsplit(smtp_url.strip())
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("SMTP_URL: expected smtp://HOST[:PORT] or smtps://HOST[:PORT]")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("SMTP_URL: the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError("SMTP_URL: no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("SMTP_URL: expected no path or fragment")
    start_tls = False
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key != "starttls":
            raise ValueError(f"SMTP_URL: unknown option {key!r}; the only one is starttls")
        if value.lower() not in _TRUE | _FALSE:
            raise ValueError("SMTP_URL: starttls must be true or false")
        start_tls = value.lower() in _TRUE
    use_tls = parts.scheme == "smtps"
    if use_tls and start_tls:
        raise ValueError("SMTP_URL: smtps:// is already TLS; drop ?starttls=true")
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if use_tls else 25),
        use_tls=use_tls,
        start_tls=start_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


# Runs of characters that could be a token or a piece of a link, and addresses.
_TOKENISH = re.compile(r"[A-Za-z0-9_\-.~%+/=]{20,}")
_ADDRESSISH = re.compile(r"\S+@\S+")


def _scrub(text: str) -> str:
    """A server reply cut down to something safe to log."""
    text = " ".join(text.split())
    text = _ADDRESSISH.sub("[address]", text)
    text = _TOKENISH.sub("[redacted]", text)
    return text[:200]


def _failure(target: SmtpTarget, error: BaseException, timeout_s: float) -> MailDeliveryError:
    where = f"mail delivery via {target} failed"
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in error.recipients]
        code = codes[0] if codes else None
        return MailDeliveryError(
            f"{where}: recipient refused ({', '.join(map(str, codes))})",
            permanent=bool(codes) and all(c >= 500 for c in codes), smtp_code=code,
        )
    if isinstance(error, aiosmtplib.SMTPResponseException):
        reason = {
            aiosmtplib.SMTPAuthenticationError: "login refused",
            aiosmtplib.SMTPSenderRefused: "sender refused",
            aiosmtplib.SMTPRecipientRefused: "recipient refused",
            aiosmtplib.SMTPDataError: "message refused",
        }.get(type(error), "server error")
        return MailDeliveryError(
            f"{where}: {reason}: {error.code} {_scrub(error.message)}".rstrip(),
            permanent=error.code >= 500, smtp_code=error.code,
        )
    if isinstance(error, TimeoutError):  # incl. aiosmtplib.SMTPTimeoutError
        return MailDeliveryError(f"{where}: timed out (timeout {timeout_s:g}s)")
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return MailDeliveryError(f"{where}: TLS failed ({type(error).__name__})")
    if isinstance(error, OSError):  # incl. SMTPConnectError, SMTPServerDisconnected
        return MailDeliveryError(f"{where}: could not connect or the connection broke "
                                 f"({type(error).__name__})")
    if isinstance(error, aiosmtplib.SMTPException):
        # aiosmtplib's own words: the server lacks what the URL asks for (STARTTLS, AUTH,
        # a login method, SMTPUTF8). A configuration problem; retrying will not help.
        return MailDeliveryError(
            f"{where}: the server does not support what is needed: {_scrub(error.message)}",
            permanent=True,
        )
    # ValueError from aiosmtplib: an address it will not put on an SMTP command line.
    return MailDeliveryError(f"{where}: the message has no usable sender or recipient",
                             permanent=True)


@dataclass
class _Connection:
    client: aiosmtplib.SMTP
    sent: int = 0
    idle_since: float = 0.0


class SmtpSender:
    """Sends messages over SMTP connections it reuses (see the module docstring).

    ``timeout_s`` bounds each network step (connect, each command); the whole send is
    bounded by three times that. asyncio only (aiosmtplib). ``tls_context`` replaces the
    default verifying context, e.g. to trust a private CA. Credentials over a connection
    without TLS are refused unless ``allow_insecure_auth`` (SMTP_ALLOW_INSECURE_AUTH).
    ``max_messages_per_connection`` 1 opens a connection per message.
    """

    def __init__(self, smtp_url: str, *, timeout_s: float = 10,
                 tls_context: ssl.SSLContext | None = None,
                 allow_insecure_auth: bool = False,
                 max_messages_per_connection: int = MAX_MESSAGES_PER_CONNECTION,
                 max_idle_s: float = MAX_IDLE_S,
                 max_idle_connections: int = MAX_IDLE_CONNECTIONS) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if max_messages_per_connection < 1 or max_idle_connections < 0:
            raise ValueError("expected at least one message per connection")
        self.target = parse_smtp_url(smtp_url)
        if self.target.sends_credentials_in_clear and not allow_insecure_auth:
            raise ValueError("SMTP_URL: credentials over a connection without TLS; use "
                             "smtps:// or ?starttls=true, or SMTP_ALLOW_INSECURE_AUTH=true")
        self.timeout_s = float(timeout_s)
        self.max_messages_per_connection = max_messages_per_connection
        self.max_idle_s = max_idle_s
        self.max_idle_connections = max_idle_connections
        self._tls_context = tls_context
        self._local_hostname: str | None = None
        self._idle: list[_Connection] = []  # the most recently used last
        self._closed = False

    def __repr__(self) -> str:
        return f"SmtpSender({str(self.target)!r})"

    async def send(self, message: EmailMessage, on_accepted: OnAccepted | None = None) -> None:
        kind, recipient, mid = _describe(message)
        target = self.target
        connection: _Connection | None = None
        # aiosmtplib.send() would also QUIT before returning; the client is driven by hand
        # so that ``on_accepted`` runs right after the DATA reply.
        try:
            async with asyncio.timeout(self.timeout_s * 3):
                connection = await self._reused() or await self._connect()
                await connection.client.send_message(message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as error:
            if connection is not None:
                connection.client.close()
            failure = _failure(target, error, self.timeout_s)
            log.warning("mail not sent: kind=%s to=%s message_id=%s permanent=%s: %s",
                        kind, recipient, mid, failure.permanent, failure)
            # `from None`: the original exception can carry the recipient address.
            raise failure from None
        except BaseException:
            if connection is not None:  # cancelled mid-command: its state is unknown
                connection.client.close()
            raise
        connection.sent += 1
        try:
            if on_accepted is not None:
                await on_accepted()
        except Exception:
            await self._quit(connection.client)
            raise
        except BaseException:
            connection.client.close()
            raise
        await self._release(connection)
        log.info("mail sent: kind=%s to=%s message_id=%s via=%s", kind, recipient, mid, target)

    async def _reused(self) -> _Connection | None:
        """An idle connection that answered ``RSET``, or None. Those that do not answer,
        or idled too long, are closed."""
        while self._idle:
            connection = self._idle.pop()
            if (not connection.client.is_connected
                    or time.monotonic() - connection.idle_since > self.max_idle_s):
                connection.client.close()
                continue
            try:
                await connection.client.rset()
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                connection.client.close()
                log.info("smtp connection not reusable (%s); opening another",
                         type(error).__name__)
                continue
            except BaseException:
                connection.client.close()
                raise
            return connection
        return None

    async def _connect(self) -> _Connection:
        target = self.target
        client = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.use_tls,
            start_tls=target.start_tls,
            tls_context=self._tls_context,
            timeout=self.timeout_s,
            local_hostname=await self._ehlo_name(),
        )
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        return _Connection(client)

    async def _release(self, connection: _Connection) -> None:
        """Keep the connection for the next message, or QUIT it."""
        if (self._closed or connection.sent >= self.max_messages_per_connection
                or len(self._idle) >= self.max_idle_connections
                or not connection.client.is_connected):
            await self._quit(connection.client)
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    async def _ehlo_name(self) -> str:
        """This host's name for EHLO, looked up once: aiosmtplib would do it (reverse DNS,
        possibly slow) on every connection."""
        if self._local_hostname is None:
            try:
                async with asyncio.timeout(self.timeout_s):
                    fqdn = await asyncio.to_thread(socket.getfqdn)
            except TimeoutError:
                fqdn = ""
            usable = fqdn.isprintable() and not any(c.isspace() for c in fqdn)
            self._local_hostname = fqdn if fqdn and usable else "localhost"
        return self._local_hostname

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        """QUIT politely; the message is already accepted, so a failure here is moot."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            client.close()

    async def aclose(self) -> None:
        """QUIT the idle connections; later sends open none to keep. Idempotent."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._quit(connection.client)


def sender_from_url(smtp_url: str, *, timeout_s: float = 10,
                    allow_insecure_auth: bool = False) -> MailSender:
    """The sender for ``SMTP_URL`` (smtp:// or smtps://). There is deliberately no
    console sender: printing messages would put link tokens in the logs."""
    return SmtpSender(smtp_url, timeout_s=timeout_s, allow_insecure_auth=allow_insecure_auth)
