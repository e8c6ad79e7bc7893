"""Our Standard Webhooks signatures, checked by the reference verifier (``standardwebhooks``)."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from authnode.webhooks import signing
from authnode.webhooks.events import Event, WebhookEvent

BODY = Event.new(WebhookEvent.USER_CREATED, "u1", email_verified=False).body()


def test_a_new_secret_has_the_standard_shape() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert signing.new_secret() != secret


def test_the_stock_verifier_accepts_our_signature() -> None:
    secret = signing.new_secret()
    now = int(time.time())
    headers = signing.headers(secret, "evt_1", now, BODY)
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers)["data"]["user_id"] == "u1"
    # ...and signs exactly what we sign.
    from datetime import UTC, datetime
    assert Webhook(secret).sign("evt_1", datetime.fromtimestamp(now, UTC), BODY) == \
        headers["webhook-signature"]


@pytest.mark.parametrize("change", ["body", "timestamp", "id", "secret", "old"])
def test_the_stock_verifier_refuses_a_changed_message(change: str) -> None:
    secret = signing.new_secret()
    now = int(time.time())
    headers = signing.headers(secret, "evt_1", now - (600 if change == "old" else 0), BODY)
    body = BODY
    if change == "body":
        body = BODY.replace(b'"u1"', b'"u2"')
    elif change == "timestamp":
        headers["webhook-timestamp"] = str(now + 1)
    elif change == "id":
        headers["webhook-id"] = "evt_2"
    elif change == "secret":
        secret = signing.new_secret()
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


@pytest.mark.parametrize("bad", ["whsec_", "whsec_!!!", "nope_" + "A" * 44,
                                 "whsec_" + base64.b64encode(b"short").decode()])
def test_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        signing.secret_key(bad)
