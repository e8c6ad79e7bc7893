"""SmtpSender against real aiosmtpd servers: plain, STARTTLS, implicit TLS, login, failures.

aiosmtplib runs on asyncio only, so these tests do too (the conftest's ``anyio_backend``).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from authnode.mail import MailDeliveryError, SmtpSender, recipient_hash, render
from tests.services import HOST, SmtpRecorder, free_port

pytestmark = pytest.mark.anyio

TOKEN = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5"
PASSWORD = "s3cr:et@pw"  # percent-encoded in URLs as s3cr%3Aet%40pw
URL_PASSWORD = "s3cr%3Aet%40pw"


def verify_message(to: str = "bob@example.com", key: str = "job-1") -> EmailMessage:
    return render("verify_email", to=to, mail_from="authnode <no-reply@example.com>",
                  public_url="https://auth.example.com", token=TOKEN,
                  requested_at=datetime.datetime(2026, 12, 3, 20, 5, tzinfo=datetime.UTC),
                  valid_for_s=86400, message_id_key=key)


LINK = f"https://auth.example.com/verify-email?token={TOKEN}"


# --------------------------------------------------------------------------- the recorder


async def test_delivers_a_rendered_message(smtp: SmtpRecorder,
                                           caplog: pytest.LogCaptureFixture) -> None:
    message = verify_message()
    sender = SmtpSender(smtp.url, timeout_s=5)
    with caplog.at_level(logging.INFO, logger="authnode.mail"):
        await sender.send(message)
    await sender.aclose()

    [received] = await smtp.wait_for_async(1, timeout=5)
    assert received.rcpt_tos == ("bob@example.com",)
    assert received.mail_from == "no-reply@example.com"
    assert received.to == "bob@example.com"
    assert received.subject == "Verify your email address"
    assert received.message["Message-ID"] == message["Message-ID"]
    assert received.html is not None and received.text != received.html
    assert received.links() == [LINK]
    assert "Hello," in received.text
    # The log names the kind and a hash of the recipient, never the link or address.
    assert "mail sent: kind=verify_email" in caplog.text
    assert recipient_hash("bob@example.com") in caplog.text
    assert TOKEN not in caplog.text and "bob@example.com" not in caplog.text


async def test_the_same_job_sent_twice_has_the_same_message_id(smtp: SmtpRecorder) -> None:
    sender = SmtpSender(smtp.url, timeout_s=5)
    await sender.send(verify_message(key="job-7"))
    await sender.send(verify_message(key="job-7"))
    await sender.send(verify_message(key="job-8"))
    first, second, third = await smtp.wait_for_async(3, timeout=5)
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert third.message["Message-ID"] != first.message["Message-ID"]


async def test_unicode_recipient_and_name(smtp: SmtpRecorder) -> None:
    message = render("password_changed", to="zoë@example.com", mail_from="no-reply@example.com",
                     public_url="https://auth.example.com", name="Zoë 山田",
                     message_id_key="job-u")
    await SmtpSender(smtp.url, timeout_s=5).send(message)
    [received] = await smtp.wait_for_async(1, timeout=5)
    assert received.rcpt_tos == ("zoë@example.com",)
    assert received.text.startswith("Hi Zoë 山田,")


@pytest.mark.parametrize(
    ("reply", "permanent", "code"),
    [("451 4.3.0 Try again later", False, 451),
     (f"554 5.7.1 Rejected: {TOKEN} for <bob@example.com>", True, 554)],
)
async def test_server_refusal_raises_a_safe_delivery_error(
    smtp: SmtpRecorder, caplog: pytest.LogCaptureFixture,
    reply: str, permanent: bool, code: int,
) -> None:
    smtp.failure = reply
    sender = SmtpSender(smtp.url, timeout_s=5)
    with caplog.at_level(logging.INFO, logger="authnode.mail"), \
            pytest.raises(MailDeliveryError) as caught:
        await sender.send(verify_message())
    error = caught.value
    assert error.permanent is permanent
    assert error.smtp_code == code
    assert str(error).startswith(f"mail delivery via {smtp.url} failed: ")
    assert f"message refused: {code}" in str(error)
    assert error.__cause__ is None and error.__suppress_context__
    for secret in (TOKEN, "bob@example.com"):
        assert secret not in str(error)
        assert secret not in caplog.text
    assert "mail not sent: kind=verify_email" in caplog.text
    assert smtp.messages() == []


async def test_closed_port_fails_quickly() -> None:
    port = free_port()  # free: nothing listens there
    sender = SmtpSender(f"smtp://user:{URL_PASSWORD}@{HOST}:{port}", timeout_s=10,
                        allow_insecure_auth=True)
    started = time.monotonic()
    with pytest.raises(MailDeliveryError) as caught:
        await sender.send(verify_message())
    assert time.monotonic() - started < 2
    assert caught.value.permanent is False
    assert "could not connect" in str(caught.value)
    for secret in (TOKEN, "bob@example.com", PASSWORD, URL_PASSWORD):
        assert secret not in str(caught.value)


async def test_stopped_recorder_fails_then_recovers(smtp: SmtpRecorder) -> None:
    sender = SmtpSender(smtp.url, timeout_s=5)
    smtp.stop()
    try:
        with pytest.raises(MailDeliveryError):
            await sender.send(verify_message())
    finally:
        smtp.start()
    await sender.send(verify_message())
    assert len(await smtp.wait_for_async(1, timeout=5)) == 1


async def test_silent_server_times_out() -> None:
    # A listener that accepts connections (the kernel does) but never sends a greeting.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((HOST, 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        sender = SmtpSender(f"smtp://{HOST}:{port}", timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(MailDeliveryError, match="timed out") as caught:
            await sender.send(verify_message())
        assert time.monotonic() - started < 2
        assert caught.value.permanent is False


# --------------------------------------------------------------------------- TLS and login


@dataclass
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authnode test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("smtp-tls")
    files = TlsFiles(folder / "cert.pem", folder / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


@dataclass
class Received:
    tls: bool
    login: str | None
    rcpt_tos: list[str]


@dataclass
class Handler:
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        login = session.auth_data.login.decode() if session.authenticated else None
        # Not session.ssl: aiosmtpd sets that only after STARTTLS, not for implicit TLS.
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.received.append(Received(tls=tls, login=login,
                                      rcpt_tos=list(envelope.rcpt_tos)))
        return "250 OK"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                  auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"mailer"
          and auth_data.password == PASSWORD.encode())
    # handled=False: let aiosmtpd send the 235/535 reply itself.
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@pytest.fixture
def handler() -> Handler:
    return Handler()


def running(handler: Handler, **kwargs: Any) -> Iterator[str]:
    port = free_port()
    controller = Controller(handler, hostname=HOST, port=port, ready_timeout=10.0, **kwargs)
    controller.start()
    try:
        yield f"{HOST}:{port}"
    finally:
        controller.stop()


@pytest.fixture
def starttls_server(handler: Handler, tls_files: TlsFiles) -> Iterator[str]:
    """HOST:PORT of a server that offers STARTTLS and login (login only after STARTTLS)."""
    yield from running(handler, tls_context=tls_files.server_context(),
                       authenticator=authenticator)


@pytest.fixture
def smtps_server(handler: Handler, tls_files: TlsFiles) -> Iterator[str]:
    """HOST:PORT of a server speaking TLS from the first byte, with login."""
    # auth_require_tls=False: aiosmtpd only counts STARTTLS as TLS; this is TLS throughout.
    yield from running(handler, ssl_context=tls_files.server_context(),
                       authenticator=authenticator, auth_require_tls=False)


async def test_plain_url_does_not_upgrade_even_when_offered(
    starttls_server: str, handler: Handler,
) -> None:
    await SmtpSender(f"smtp://{starttls_server}", timeout_s=5).send(verify_message())
    assert handler.received == [Received(tls=False, login=None, rcpt_tos=["bob@example.com"])]


async def test_starttls_with_login(starttls_server: str, handler: Handler,
                                   tls_files: TlsFiles) -> None:
    sender = SmtpSender(f"smtp://mailer:{URL_PASSWORD}@{starttls_server}?starttls=true",
                        timeout_s=5, tls_context=tls_files.client_context())
    await sender.send(verify_message())
    assert handler.received == [Received(tls=True, login="mailer",
                                         rcpt_tos=["bob@example.com"])]


async def test_starttls_checks_the_certificate(starttls_server: str, handler: Handler) -> None:
    # The default context does not trust the self-signed test certificate.
    sender = SmtpSender(f"smtp://{starttls_server}?starttls=true", timeout_s=5)
    with pytest.raises(MailDeliveryError, match="TLS failed") as caught:
        await sender.send(verify_message())
    assert caught.value.permanent is False
    assert handler.received == []


async def test_starttls_asked_but_not_offered(smtp: SmtpRecorder) -> None:
    sender = SmtpSender(f"{smtp.url}?starttls=true", timeout_s=5)
    with pytest.raises(MailDeliveryError, match="does not support") as caught:
        await sender.send(verify_message())
    assert caught.value.permanent is True
    assert smtp.messages() == []


async def test_wrong_password_is_a_permanent_login_failure(
    starttls_server: str, handler: Handler, tls_files: TlsFiles,
) -> None:
    sender = SmtpSender(f"smtp://mailer:wrongpw@{starttls_server}?starttls=true",
                        timeout_s=5, tls_context=tls_files.client_context())
    with pytest.raises(MailDeliveryError, match="login refused: 535") as caught:
        await sender.send(verify_message())
    assert caught.value.permanent is True
    assert "wrongpw" not in str(caught.value)
    assert handler.received == []


async def test_implicit_tls_with_login(smtps_server: str, handler: Handler,
                                       tls_files: TlsFiles) -> None:
    sender = SmtpSender(f"smtps://mailer:{URL_PASSWORD}@{smtps_server}", timeout_s=5,
                        tls_context=tls_files.client_context())
    await sender.send(verify_message())
    assert handler.received == [Received(tls=True, login="mailer",
                                         rcpt_tos=["bob@example.com"])]
