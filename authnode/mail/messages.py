"""The four emails authnode sends, rendered to :class:`email.message.EmailMessage`.

:func:`render` is pure: the same arguments give the same message apart from ``Date``.
Every message has a text/plain and a text/html alternative, a ``Message-ID`` derived only
from ``message_id_key`` (so a job that is retried sends the same Message-ID and receiving
servers can drop the duplicate), and headers built only from trusted values: the To header
is the bare address, and the user's display name never appears in any header (names are
user input and may contain CR/LF); it appears only in the body, cleaned of control
characters and HTML-escaped in the HTML part, and never in a verification email (the
address is not confirmed yet, so the name may be a stranger's words).

Do not use the token as ``message_id_key`` (use the job or token id): the Message-ID is
also logged.
"""

from __future__ import annotations

import functools
import hashlib
import html
import textwrap
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy, default
from email.utils import formatdate
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from authnode.settings import Settings

__all__ = [
    "KIND_HEADER",
    "EmailKind",
    "message_id",
    "render",
]

# Custom header naming the kind, so a sender can log it without parsing the body.
KIND_HEADER = "X-Authnode-Kind"

NAME_MAX_CHARS = 64
_TEXT_WIDTH = 72
# Parsed header values kept for reuse: a message sets about 16, of which all but To, Date,
# Message-ID and the multipart boundary are the same in every message of a kind.
_PARSED_HEADERS_KEPT = 256


@functools.lru_cache(maxsize=_PARSED_HEADERS_KEPT)
def _parsed_header(name: str, value: str) -> tuple[str, str]:
    return default.header_store_parse(name, value)


class _ReusingPolicy(EmailPolicy):
    """``email.policy.default`` that parses each distinct header value once.

    Parsing headers (``email.headerregistry``) was most of the cost of :func:`render`
    (about 2 ms of an email job), and the same values -- From, Subject, the MIME parts'
    Content-Type and Content-Transfer-Encoding -- recur in every message. Parsed headers
    are immutable ``str`` objects, so messages can share them; the output is unchanged."""

    def header_store_parse(self, name: str, value: object) -> tuple[str, str]:
        if type(value) is str:
            return _parsed_header(name, value)
        stored: tuple[str, str] = super().header_store_parse(name, value)
        return stored


_POLICY = _ReusingPolicy()


class EmailKind(StrEnum):
    """Every email authnode sends; the value names it in jobs, logs and headers."""

    VERIFY_EMAIL = "verify_email"
    PASSWORD_RESET = "password_reset"  # noqa: S105 (a kind name, not a password)
    ALREADY_REGISTERED = "already_registered"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105
    SECOND_FACTOR_ADDED = "second_factor_added"
    SECOND_FACTOR_REMOVED = "second_factor_removed"
    RECOVERY_CODE_USED = "recovery_code_used"
    LINK_IDENTITY = "link_identity"  # confirm linking a provider's sign-in (authnode/oidc)

    @property
    def has_token(self) -> bool:
        """Whether the email carries a link with a single-use token."""
        return self in (EmailKind.VERIFY_EMAIL, EmailKind.PASSWORD_RESET,
                        EmailKind.LINK_IDENTITY)

    def link_ttl_s(self, settings: Settings) -> int:
        """How long this kind's link works: the one place each lifetime is read."""
        if self is EmailKind.VERIFY_EMAIL:
            return settings.verify_email_token_ttl_s
        if self in (EmailKind.PASSWORD_RESET, EmailKind.LINK_IDENTITY):
            return settings.email_token_ttl_s
        raise ValueError(f"a {self.value} email carries no link")


_LINK_PATHS: dict[EmailKind, str] = {
    EmailKind.VERIFY_EMAIL: "/verify-email",
    EmailKind.PASSWORD_RESET: "/reset-password",
    EmailKind.LINK_IDENTITY: "/link-account",
}


def message_id(key: str) -> str:
    """``<first 32 hex digits of sha256(key)@authnode>``: the same key, the same id."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@authnode>"


@dataclass(frozen=True)
class _Content:
    subject: str
    before: tuple[str, ...]  # paragraphs before the link
    action: str | None = None  # label of the link button
    after: tuple[str, ...] = ()  # paragraphs after the link


def _content(kind: EmailKind, valid_for: str, requested_at: str) -> _Content:
    if kind is EmailKind.VERIFY_EMAIL:
        return _Content(
            subject="Verify your email address",
            before=(f"An account with this email address was requested on {requested_at}.",
                    "If that was you, confirm that this is your email address by opening "
                    "the link below and pressing \u201cConfirm my email address\u201d.",),
            action="Verify email address",
            after=(f"The link is valid for {valid_for} and can be used once.",
                   "If it was not you, ignore this email: no account is created unless "
                   "the address is confirmed."),
        )
    if kind is EmailKind.PASSWORD_RESET:
        return _Content(
            subject="Reset your password",
            before=("We received a request to reset the password of your account. To "
                    "choose a new password, open the link below.",),
            action="Choose a new password",
            after=(f"The link is valid for {valid_for} and can be used once.",
                   "If you did not ask for this, you can ignore this email: your password "
                   "has not been changed."),
        )
    if kind is EmailKind.LINK_IDENTITY:
        return _Content(
            subject="Confirm a new way to sign in",
            before=("Someone, probably you, signed in with a sign-in provider (such as "
                    "Google or your company's) using this email address, and asked to add "
                    "it as a way to sign in to your account.",
                    "If that was you, open the link below and confirm."),
            action="Add this way to sign in",
            after=(f"The link is valid for {valid_for} and can be used once.",
                   "If it was not you, ignore this email: nothing is added unless you "
                   "confirm."),
        )
    if kind is EmailKind.ALREADY_REGISTERED:
        return _Content(
            subject="You already have an account",
            before=("Someone, probably you, tried to create a new account with this "
                    "email address, but an account with this address already exists.",
                    "If that was you, log in with your existing password. If you have "
                    "forgotten it, use \u201cForgot password\u201d in the app to choose a "
                    "new one.",
                    "If it was not you, you can ignore this email: nothing has changed."),
        )
    if kind is EmailKind.SECOND_FACTOR_ADDED:
        return _Content(
            subject="A second factor was added to your account",
            before=("An authenticator app or a passkey was just added to your account as a "
                    "second factor.",
                    "If you did this, there is nothing else to do.",
                    "If you did not, someone else can sign in to your account: change your "
                    "password right away and contact support."),
        )
    if kind is EmailKind.SECOND_FACTOR_REMOVED:
        return _Content(
            subject="A second factor was removed from your account",
            before=("An authenticator app or a passkey was just removed from your account.",
                    "If you did this (or asked support to), there is nothing else to do.",
                    "If you did not, change your password right away and contact support."),
        )
    if kind is EmailKind.RECOVERY_CODE_USED:
        return _Content(
            subject="A recovery code was used",
            before=("One of your recovery codes was just used to sign in or to confirm a "
                    "change. Each code works once.",
                    "If this was not you, someone has your password and a recovery code: "
                    "change your password and create new recovery codes right away."),
        )
    return _Content(
        subject="Your password was changed",
        before=("The password of your account was just changed.",
                "If you made this change, there is nothing else to do.",
                "If you did not, someone else may know your password: use \u201cForgot "
                "password\u201d in the app right away to choose a new one."),
    )


def render(
    kind: EmailKind | str,
    *,
    to: str,
    mail_from: str,
    public_url: str,
    token: str | None = None,
    name: str | None = None,
    valid_for_s: int | None = None,
    requested_at: datetime | None = None,
    message_id_key: str,
) -> EmailMessage:
    """Build the ``kind`` email to ``to``.

    ``token`` is required for ``verify_email`` and ``password_reset`` and refused for the
    two notices. ``valid_for_s`` (required with a token) is the link's lifetime as stated in the
    text, :meth:`EmailKind.link_ttl_s`. ``requested_at`` (``verify_email`` only, required there)
    is when the account was asked for, stated in UTC. ``name`` is refused for
    ``verify_email``. Raises ``ValueError`` for an unknown kind, an address that is not a
    single bare address (CR/LF, spaces, commas, angle brackets...), or a missing or
    unexpected token, name or time; such a message can never be sent, so do not retry it.
    """
    kind = EmailKind(kind)
    to_address = _recipient(to)
    _check_header_value("mail_from", mail_from)
    origin = _origin(public_url)

    link: str | None = None
    valid_for = ""
    if kind.has_token:
        if not token:
            raise ValueError(f"a {kind.value} email needs a token")
        link = f"{origin}{_LINK_PATHS[kind]}?token={quote(token, safe='')}"
        if valid_for_s is None:
            raise ValueError(f"a {kind.value} email needs valid_for_s")
        valid_for = _duration(valid_for_s)
    elif token is not None:
        raise ValueError(f"a {kind.value} email carries no token")

    when = ""
    if kind is EmailKind.VERIFY_EMAIL:
        if requested_at is None:
            raise ValueError("a verify_email email needs requested_at")
        if name is not None:
            raise ValueError("a verify_email email carries no name (the address is not "
                             "confirmed)")
        when = _utc_time(requested_at)
    elif requested_at is not None:
        raise ValueError(f"a {kind.value} email carries no requested_at")

    content = _content(kind, valid_for, when)
    greeting_name = _clean_name(name)

    message = EmailMessage(policy=_POLICY)
    message["From"] = mail_from
    message["To"] = to_address
    message["Subject"] = content.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(message_id_key)
    message["Auto-Submitted"] = "auto-generated"
    message[KIND_HEADER] = kind.value
    message.set_content(_text_body(content, greeting_name, link))
    message.add_alternative(_html_body(content, greeting_name, link), subtype="html")
    return message


# --------------------------------------------------------------------------- checks


_FORBIDDEN_IN_ADDRESS = set(' \t<>,;:()[]\\"')


def _recipient(to: str) -> Address:
    """The bare address ``local@domain``, or ValueError; never echoes the value back."""
    _check_header_value("to", to)
    local, at, domain = to.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or "@" in local
        or any(ch in _FORBIDDEN_IN_ADDRESS or not ch.isprintable() for ch in to)
    ):
        raise ValueError("to: expected one bare address, local@domain")
    try:
        return Address(username=local, domain=domain)
    except ValueError:
        raise ValueError("to: expected one bare address, local@domain"
                         ) from None


def _check_header_value(what: str, value: str) -> None:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"{what}: must not contain CR, LF or NUL characters")


def _origin(public_url: str) -> str:
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or (
        parts.fragment
    ):
        raise ValueError("public_url: expected an http(s) URL without query or fragment")
    if any(not ch.isprintable() or ch.isspace() for ch in public_url):
        raise ValueError("public_url: must not contain spaces or control characters")
    return public_url.rstrip("/")


def _clean_name(name: str | None) -> str | None:
    """The display name fit for one line of body text, or None if nothing is left.

    Control and format characters (CR, LF, tabs, bidi overrides, zero-width joiners...)
    become spaces, runs of spaces collapse, and the result is cut to NAME_MAX_CHARS, so a
    name cannot lay out fake paragraphs or links of its own.
    """
    if name is None:
        return None
    cleaned = "".join(
        " " if unicodedata.category(ch)[0] in ("C", "Z") else ch for ch in name
    )
    cleaned = " ".join(cleaned.split())[:NAME_MAX_CHARS].strip()
    return cleaned or None


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def _utc_time(moment: datetime) -> str:
    """``3 December 2026 at 20:05 UTC`` (English whatever the process's locale)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return (f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year} at "
            f"{moment:%H:%M} UTC")


def _duration(seconds: int) -> str:
    if seconds < 1:
        raise ValueError("valid_for_s: expected at least 1 second")
    if seconds % 86400 == 0 and seconds > 86400:
        return _plural(seconds // 86400, "day")
    if seconds % 3600 == 0:
        return _plural(seconds // 3600, "hour")
    if seconds % 60 == 0:
        return _plural(seconds // 60, "minute")
    return _plural(seconds, "second")


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


# --------------------------------------------------------------------------- bodies


def _greeting(name: str | None) -> str:
    return f"Hi {name}," if name else "Hello,"


_FOOTER = "This is an automated message; replies to it are not read."


def _text_body(content: _Content, name: str | None, link: str | None) -> str:
    blocks = [_greeting(name)]
    blocks += [textwrap.fill(p, _TEXT_WIDTH) for p in content.before]
    if link is not None:
        blocks.append(link)  # on its own line, never wrapped
    blocks += [textwrap.fill(p, _TEXT_WIDTH) for p in content.after]
    blocks.append(f"-- \n{_FOOTER}")
    return "\n\n".join(blocks) + "\n"


_BODY_STYLE = (
    "margin:0;padding:24px;background:#ffffff;color:#1a1a1a;"
    "font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;"
    "font-size:16px;line-height:1.5"
)
_BUTTON_STYLE = (
    "display:inline-block;padding:12px 20px;background:#1d4ed8;color:#ffffff;"
    "text-decoration:none;border-radius:6px;font-weight:600"
)
_LINK_STYLE = "color:#1d4ed8;word-break:break-all"
_FOOTER_STYLE = "margin-top:32px;font-size:13px;color:#555555"


def _html_body(content: _Content, name: str | None, link: str | None) -> str:
    esc = html.escape
    parts = [f"<p>{esc(_greeting(name))}</p>"]
    parts += [f"<p>{esc(p)}</p>" for p in content.before]
    if link is not None and content.action is not None:
        href = esc(link, quote=True)
        parts.append(f'<p><a href="{href}" style="{_BUTTON_STYLE}">{esc(content.action)}</a>'
                     "</p>")
        parts.append("<p>If the button does not work, copy this address into your "
                     f'browser:<br><a href="{href}" style="{_LINK_STYLE}">{esc(link)}</a></p>')
    parts += [f"<p>{esc(p)}</p>" for p in content.after]
    parts.append(f'<p style="{_FOOTER_STYLE}">{esc(_FOOTER)}</p>')
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(content.subject)}</title>\n</head>\n"
        f'<body style="{_BODY_STYLE}">\n'
        '<div role="article" aria-label="' + esc(content.subject, quote=True) + '" '
        'style="max-width:560px;margin:0 auto">\n'
        f"{body}\n</div>\n</body>\n</html>\n"
    )
