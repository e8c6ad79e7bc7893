"""Email: rendering (:mod:`.messages`) and delivery (:mod:`.senders`)."""

from authnode.mail.messages import (
    KIND_HEADER,
    EmailKind,
    message_id,
    render,
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
    "KIND_HEADER",
    "EmailKind",
    "MailDeliveryError",
    "MailSender",
    "OnAccepted",
    "SmtpSender",
    "SmtpTarget",
    "message_id",
    "parse_smtp_url",
    "recipient_hash",
    "render",
    "sender_from_url",
]
