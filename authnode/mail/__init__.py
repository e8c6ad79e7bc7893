"""Email: rendering (:mod:`.messages`) and delivery (:mod:`.senders`)."""

from authnode.mail.messages import (
    DEFAULT_VALID_FOR_S,
    KIND_HEADER,
    MailKind,
    message_id,
    render,
    token_ttl_s,
)
from authnode.mail.senders import (
    MailDeliveryError,
    MailSender,
    OnAccepted,
    SmtpSender,
    SmtpTarget,
    parse_smtp_url,
    recipient_hash,
    sender_from_url,
)

__all__ = [
    "DEFAULT_VALID_FOR_S",
    "KIND_HEADER",
    "MailDeliveryError",
    "MailKind",
    "MailSender",
    "OnAccepted",
    "SmtpSender",
    "SmtpTarget",
    "message_id",
    "parse_smtp_url",
    "recipient_hash",
    "render",
    "sender_from_url",
    "token_ttl_s",
]
