"""Senders without a network: URL parsing, the console sender, error mapping, the fake."""

from __future__ import annotations

import ssl
from email.message import EmailMessage

import aiosmtplib
import pytest

from authnode.mail import (
    MailDeliveryError,
    MailSender,
    SmtpSender,
    SmtpTarget,
    parse_smtp_url,
    render,
    sender_from_url,
)
from authnode.mail.senders import _failure

from .recording import RecordingSender

TOKEN = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5"


@pytest.fixture(params=["asyncio", "trio"], scope="module")
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """These senders are pure Python: they must work on both anyio backends."""
    backend: str = request.param
    return backend


def reset_message(to: str = "bob@example.com", key: str = "job-1") -> EmailMessage:
    return render("password_reset", to=to, mail_from="authnode <no-reply@example.com>",
                  public_url="https://auth.example.com", token=TOKEN, name="Bob",
                  valid_for_s=3600, message_id_key=key)


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpTarget("mail.example.com", 25, False, False)),
        ("smtp://127.0.0.1:2525", SmtpTarget("127.0.0.1", 2525, False, False)),
        ("smtp://h:587?starttls=true", SmtpTarget("h", 587, False, True)),
        ("smtp://h:587/?starttls=1", SmtpTarget("h", 587, False, True)),
        ("smtp://h?starttls=false", SmtpTarget("h", 25, False, False)),
        ("smtps://h", SmtpTarget("h", 465, True, False)),
        ("smtps://h:2465", SmtpTarget("h", 2465, True, False)),
        ("smtp://[::1]:25", SmtpTarget("::1", 25, False, False)),
        ("smtps://apikey:p%40ss%3Aw%2Fd@h:465",
         SmtpTarget("h", 465, True, False, "apikey", "p@ss:w/d")),
        ("smtp://user%40example.com:@h", SmtpTarget("h", 25, False, False, "user@example.com",
                                                    "")),
    ],
)
def test_parse_smtp_url(url: str, expected: SmtpTarget) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h", "expected smtp"),
        ("smtp://", "no host"),
        ("smtp://u:secretpw@h:99999", "port"),
        ("smtp://u:secretpw@h/path", "no path"),
        ("smtp://h?tls=true", "unknown option"),
        ("smtp://h?starttls=maybe", "true or false"),
        ("smtps://u:secretpw@h?starttls=true", "already TLS"),
    ],
)
def test_bad_smtp_urls_never_echo_the_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_smtp_url(url)
    assert "secretpw" not in str(caught.value)


def test_password_stays_out_of_repr_and_str() -> None:
    sender = SmtpSender("smtps://user:secretpw@mail.example.com")
    assert "secretpw" not in repr(sender)
    assert "secretpw" not in repr(sender.target)
    assert str(sender.target) == "smtps://mail.example.com:465"
    assert sender.target.password == "secretpw"


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SmtpSender("smtp://h", timeout_s=0)


def test_sender_from_url() -> None:
    smtp = sender_from_url("smtp://h:2525", timeout_s=3)
    assert isinstance(smtp, SmtpSender)
    assert smtp.timeout_s == 3
    assert isinstance(sender_from_url("smtps://h"), SmtpSender)
    with pytest.raises(ValueError):
        sender_from_url("mailto://h")


def test_every_sender_satisfies_the_protocol() -> None:
    for sender in (SmtpSender("smtp://h"), RecordingSender()):
        assert isinstance(sender, MailSender)


# --------------------------------------------------------------------------- senders


@pytest.mark.anyio
async def test_recording_sender_records_and_fails_on_demand() -> None:
    sender: MailSender = RecordingSender()
    assert isinstance(sender, RecordingSender)
    await sender.send(reset_message())
    await sender.send(reset_message(to="carol@example.com"))
    assert sender.kinds() == ["password_reset", "password_reset"]
    assert len(sender.to("BOB@example.com")) == 1
    sender.fail_with = MailDeliveryError("down")
    with pytest.raises(MailDeliveryError):
        await sender.send(reset_message())
    await sender.aclose()
    assert sender.closed
    assert len(sender.sent) == 2


# --------------------------------------------------------------------------- failures

TARGET = parse_smtp_url("smtp://mailer:secretpw@mail.example.com:25")


@pytest.mark.parametrize(
    ("error", "permanent", "code", "phrase"),
    [
        (aiosmtplib.SMTPDataError(550, f"5.7.1 rejected {TOKEN} for bob@example.com"),
         True, 550, "message refused: 550 5.7.1 rejected [redacted] for [address]"),
        (aiosmtplib.SMTPDataError(451, "4.3.0 try later"), False, 451, "451 4.3.0 try later"),
        (aiosmtplib.SMTPRecipientsRefused(
            [aiosmtplib.SMTPRecipientRefused(550, "no such user", "<bob@example.com>")]),
         True, 550, "recipient refused (550)"),
        (aiosmtplib.SMTPRecipientsRefused(
            [aiosmtplib.SMTPRecipientRefused(450, "greylisted", "<bob@example.com>")]),
         False, 450, "recipient refused (450)"),
        (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials"),
         True, 535, "login refused"),
        (aiosmtplib.SMTPConnectError("Error connecting to mail.example.com on port 25"),
         False, None, "could not connect"),
        (ConnectionRefusedError(111, "refused"), False, None, "could not connect"),
        (aiosmtplib.SMTPReadTimeoutError("timed out"), False, None, "timed out"),
        (TimeoutError(), False, None, "timed out"),
        (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"),
         True, None, "does not support what is needed: SMTPUTF8 is not supported"),
        (aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."),
         True, None, "does not support what is needed: SMTP STARTTLS extension"),
        (aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"),
         False, None, "connection broke (SMTPServerDisconnected)"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"),
         False, None, "TLS failed (SSLCertVerificationError)"),
        (ValueError("Address 'bob@example.com\\n' contains characters not permitted"),
         True, None, "no usable sender or recipient"),
    ],
)
def test_failures_map_to_safe_delivery_errors(error: BaseException, permanent: bool,
                                              code: int | None, phrase: str) -> None:
    failure = _failure(TARGET, error, 10)
    assert isinstance(failure, MailDeliveryError)
    text = str(failure)
    assert text.startswith("mail delivery via smtp://mail.example.com:25 failed: ")
    assert phrase in text
    assert failure.permanent is permanent
    assert failure.smtp_code == code
    for secret in (TOKEN, "bob@example.com", "secretpw"):
        assert secret not in text
