"""Rendering of the four emails: links, both parts, escaping, headers that cannot be injected."""

from __future__ import annotations

import email.policy
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authnode.mail import EmailKind, message_id, render
from authnode.settings import load_settings
from authnode.tuning import HostResources

TOKEN = "tok_ABCdef-123_xyz+/="  # characters that must be quoted
QUOTED = "tok_ABCdef-123_xyz%2B%2F%3D"
BASE = {
    "to": "bob@example.com",
    "mail_from": "authnode <no-reply@example.com>",
    "public_url": "https://auth.example.com/",
    "message_id_key": "job-42",
}


REQUESTED_AT = datetime(2026, 12, 3, 20, 5, 41, tzinfo=UTC)


def make(kind: str, **overrides: Any) -> EmailMessage:
    has_link = EmailKind(kind).has_token
    args: dict[str, Any] = {**BASE, "token": TOKEN if has_link else None,
                            "valid_for_s": 3600 if has_link else None}
    if kind == "verify_email":
        args["requested_at"] = REQUESTED_AT
    args.update(overrides)
    return render(kind, **args)


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None and part.get_content_type() == "text/plain"
    content = part.get_content()
    assert isinstance(content, str)
    return content


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None and part.get_content_type() == "text/html"
    content = part.get_content()
    assert isinstance(content, str)
    return content


def wire(message: EmailMessage) -> EmailMessage:
    """The message as a receiving server parses it after SMTP flattening."""
    raw = message.as_bytes(policy=email.policy.SMTP)
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


# --------------------------------------------------------------------------- links


@pytest.mark.parametrize(
    ("kind", "path", "subject"),
    [
        ("verify_email", "/verify-email", "Verify your email address"),
        ("password_reset", "/reset-password", "Reset your password"),
    ],
)
def test_token_kinds_carry_the_quoted_link_in_both_parts(kind: str, path: str,
                                                         subject: str) -> None:
    message = wire(make(kind))
    link = f"https://auth.example.com{path}?token={QUOTED}"
    assert message["Subject"] == subject
    assert message.get_content_type() == "multipart/alternative"
    text, html = text_of(message), html_of(message)
    assert link in text.splitlines()  # alone on its line, so it stays clickable
    assert f'<a href="{link}"' in html  # as a link...
    assert f">{link}</a>" in html  # ...and readable as text
    assert TOKEN not in text and TOKEN not in html  # only ever the quoted form


def test_public_url_with_a_path_prefix_and_no_trailing_slash() -> None:
    message = make("verify_email", public_url="https://example.com/auth")
    assert f"https://example.com/auth/verify-email?token={QUOTED}" in text_of(message)


def test_html_link_is_attribute_escaped() -> None:
    # quote() already removes quotes and ampersands; the escaping is a second line.
    message = make("password_reset", token='a"b&c<d>')
    html = html_of(message)
    assert "?token=a%22b%26c%3Cd%3E" in html
    assert 'a"b' not in html and "b&c" not in html and "c<d>" not in html


@pytest.mark.parametrize(
    ("kind", "valid_for_s", "expected"),
    [
        ("verify_email", 86400, "24 hours"),
        ("password_reset", 3600, "1 hour"),
        ("password_reset", 900, "15 minutes"),
        ("verify_email", 7 * 86400, "7 days"),
        ("verify_email", 90, "90 seconds"),
    ],
)
def test_validity_is_stated(kind: str, valid_for_s: int | None, expected: str) -> None:
    message = make(kind, valid_for_s=valid_for_s)
    assert f"valid for {expected}" in text_of(message)
    assert f"valid for {expected}" in html_of(message)


def test_a_link_email_states_its_lifetime_or_is_refused() -> None:
    with pytest.raises(ValueError, match="valid_for_s"):
        make("password_reset", valid_for_s=None)


def test_link_lifetimes_come_from_the_settings() -> None:
    settings = load_settings({"VERIFY_EMAIL_TOKEN_TTL": "1234", "EMAIL_TOKEN_TTL": "567"},
                             host=HostResources(cpus=2, memory_bytes=8 << 30))
    assert EmailKind.VERIFY_EMAIL.link_ttl_s(settings) == 1234
    assert EmailKind.PASSWORD_RESET.link_ttl_s(settings) == 567
    with pytest.raises(ValueError):
        EmailKind.PASSWORD_CHANGED.link_ttl_s(settings)


# --------------------------------------------------------------------------- notices


@pytest.mark.parametrize(
    ("kind", "subject", "phrase"),
    [
        ("already_registered", "You already have an account", "Forgot password"),
        ("password_changed", "Your password was changed", "Forgot password"),
    ],
)
def test_notices_have_no_token_and_no_link(kind: str, subject: str, phrase: str) -> None:
    message = wire(make(kind))
    assert message["Subject"] == subject
    text, html = text_of(message), html_of(message)
    assert phrase in " ".join(text.split()) and phrase in html
    for body in (text, html):
        assert "token" not in body
        assert "http" not in body
        assert "<a " not in body


@pytest.mark.parametrize("kind", ["already_registered", "password_changed"])
def test_notices_refuse_a_token(kind: str) -> None:
    with pytest.raises(ValueError, match="carries no token"):
        make(kind, token=TOKEN)


@pytest.mark.parametrize("kind", ["verify_email", "password_reset"])
@pytest.mark.parametrize("token", [None, ""])
def test_token_kinds_need_a_token(kind: str, token: str | None) -> None:
    with pytest.raises(ValueError, match="needs a token"):
        make(kind, token=token)


def test_kind_accepts_enum_and_string_and_refuses_unknown() -> None:
    assert make(EmailKind.VERIFY_EMAIL)["X-Authnode-Kind"] == "verify_email"
    with pytest.raises(ValueError):
        make("welcome")


# --------------------------------------------------------------------------- headers


def test_headers() -> None:
    message = wire(make("password_reset", name="Bob"))
    assert message["To"] == "bob@example.com"
    assert message["From"] == "authnode <no-reply@example.com>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Authnode-Kind"] == "password_reset"
    assert message["Date"] is not None
    assert "Bob" not in "".join(f"{k}: {v}\n" for k, v in message.items())


def test_message_id_is_deterministic_per_key() -> None:
    digest = hashlib.sha256(b"job-42").hexdigest()[:32]
    first = make("verify_email")
    again = make("verify_email", token="another-token")
    other = make("verify_email", message_id_key="job-43")
    assert first["Message-ID"] == again["Message-ID"] == f"<{digest}@authnode>"
    assert message_id("job-42") == f"<{digest}@authnode>"
    assert other["Message-ID"] != first["Message-ID"]
    assert wire(first)["Message-ID"] == first["Message-ID"]


@pytest.mark.parametrize(
    "name",
    [
        "Mallory\r\nBcc: victim@example.org",
        "Mallory\nSubject: pwned",
        "Mallory\r\n\r\n<b>fake body</b>",
        "=?utf-8?q?Mallory=0D=0ABcc=3A_victim=40example=2Eorg?=",
    ],
)
def test_name_with_cr_lf_cannot_inject_a_header(name: str) -> None:
    message = wire(make("password_reset", name=name))
    assert message["Bcc"] is None
    assert message["Subject"] == "Reset your password"
    assert message["To"] == "bob@example.com"
    assert len(message.get_all("To") or []) == 1
    raw = make("password_reset", name=name).as_bytes(policy=email.policy.SMTP)
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert b"Mallory" not in headers
    # In the body the name is one line: CR/LF became spaces.
    lines = text_of(message).splitlines()
    assert lines[0].startswith("Hi ") and "Mallory" in lines[0]
    assert lines[1] == ""


def test_name_is_html_escaped_in_html_and_plain_in_text() -> None:
    name = '<script>alert("x")</script> & Co'
    message = make("password_reset", name=name)
    html = html_of(message)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in html
    assert text_of(message).startswith(f"Hi {name},")


def test_name_is_cleaned_of_invisible_characters_and_cut() -> None:
    message = make("password_reset", name="\u202eevil\u200b\tname  " + "x" * 200)
    greeting = text_of(message).splitlines()[0]
    assert "\u202e" not in greeting and "\u200b" not in greeting
    assert greeting.startswith("Hi evil name ")
    assert len(greeting) <= len("Hi ,") + 64


@pytest.mark.parametrize("name", [None, "", "   ", "\r\n"])
def test_no_name_gives_a_neutral_greeting(name: str | None) -> None:
    assert text_of(make("password_changed", name=name)).startswith("Hello,")


def test_unicode_name_survives_the_wire() -> None:
    message = wire(make("password_changed", name="Zoë Ñúñez 山田"))
    assert text_of(message).startswith("Hi Zoë Ñúñez 山田,")
    assert "Hi Zoë Ñúñez 山田," in html_of(message)


@pytest.mark.parametrize(
    "to",
    [
        "bob@example.com\r\nBcc: victim@example.org",
        "bob@example.com\n",
        "bob@example.com, victim@example.org",
        "Bob <bob@example.com>",
        "bob example@example.com",
        "bob@",
        "@example.com",
        "bob",
        "",
        "bob@exa\x00mple.com",
    ],
)
def test_to_must_be_one_bare_address(to: str) -> None:
    with pytest.raises(ValueError, match=r"^to: ") as caught:
        make("verify_email", to=to)
    if to:
        assert to not in str(caught.value)  # the address is not echoed into logs


def test_non_ascii_address_is_accepted() -> None:
    assert str(make("verify_email", to="zoë@exämple.com")["To"]) == "zoë@exämple.com"


def test_mail_from_with_cr_lf_is_refused() -> None:
    with pytest.raises(ValueError, match="mail_from"):
        make("verify_email", mail_from="a@b.c\r\nBcc: x@y.z")


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://x", "https://x/?a=1",
                                 "https://x/#f", "https://x /"])
def test_public_url_must_be_plain_http(url: str) -> None:
    with pytest.raises(ValueError, match="public_url"):
        make("verify_email", public_url=url)


# --------------------------------------------------------------------------- html


@pytest.mark.parametrize("kind", [k.value for k in EmailKind])
def test_html_is_small_accessible_and_self_contained(kind: str) -> None:
    html = html_of(make(kind))
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in html
    assert '<meta charset="utf-8">' in html
    assert "<title>" in html
    for external in ("<img", "<script", "<link", "src=", "url(", "@import"):
        assert external not in html
    assert len(html.encode()) < 4096


# --------------------------------------------------------------------------- property


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=120))
def test_any_name_leaves_the_headers_alone(name: str) -> None:
    reference = wire(make("password_reset", name=None))
    message = wire(make("password_reset", name=name))
    skip = {"Date", "Content-Type"}  # Date moves with time; the boundary is random
    assert [(k, v) for k, v in message.items() if k not in skip] == [
        (k, v) for k, v in reference.items() if k not in skip
    ]
    assert f"https://auth.example.com/reset-password?token={QUOTED}" in text_of(message)


# --------------------------------------------------------------------------- verification


def test_verification_says_when_it_was_asked_for_and_to_ignore_it_otherwise() -> None:
    # 21:05 in UTC+01:00 is 20:05 UTC: the time is stated in UTC whatever the input zone.
    message = wire(make("verify_email", requested_at=datetime(
        2026, 12, 3, 21, 5, tzinfo=timezone(timedelta(hours=1)))))
    for body in (" ".join(text_of(message).split()), html_of(message)):
        assert "requested on 3 December 2026 at 20:05 UTC" in body
        assert "If it was not you, ignore this email" in body


def test_verification_never_carries_a_name() -> None:
    with pytest.raises(ValueError, match="carries no name"):
        make("verify_email", name="Mallory from IT: call +1 555 0100")
    assert text_of(make("verify_email")).startswith("Hello,")


def test_verification_needs_its_time_and_other_kinds_refuse_one() -> None:
    with pytest.raises(ValueError, match="needs requested_at"):
        make("verify_email", requested_at=None)
    with pytest.raises(ValueError, match="carries no requested_at"):
        make("password_reset", requested_at=REQUESTED_AT)


@pytest.mark.parametrize("kind", [kind.value for kind in EmailKind])
def test_reused_parsed_headers_change_nothing_in_the_message(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """render() parses each distinct header value once (messages._ReusingPolicy); the
    bytes are those of email.policy.default, apart from Date and the random boundary."""
    import re

    from authnode.mail import messages

    name = None if kind == "verify_email" else "Ada\r\nBcc: x@evil.test"

    def normalized(message: EmailMessage) -> bytes:
        return re.sub(rb"Date: [^\n]*|=+[0-9]+==+|boundary=\"[^\"]+\"", b"",
                      message.as_bytes())

    reused = [make(kind, name=name, to=f"user{i}@example.com", message_id_key=f"job-{i}")
              for i in range(2)]
    assert reused[0]["Subject"] is reused[1]["Subject"]  # one parsed header, shared
    assert reused[0]["To"] != reused[1]["To"]
    monkeypatch.setattr(messages, "_POLICY", email.policy.default)
    plain = [make(kind, name=name, to=f"user{i}@example.com", message_id_key=f"job-{i}")
             for i in range(2)]
    assert [normalized(m) for m in reused] == [normalized(m) for m in plain]
