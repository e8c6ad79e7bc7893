"""Webhooks through the admin API against the real binary (both Redis modes): a receiver
registered over HTTP gets the events of the account flows, signed so that the stock
Standard Webhooks verifier accepts them; deliveries are listed; SSRF targets are refused
unless WEBHOOK_ALLOW_PRIVATE=true (set here, as the issue says the tests do)."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest
from standardwebhooks.webhooks import Webhook

from tests.acceptance.test_accounts_support import (
    NEW_PASSWORD,
    PASSWORD,
    assert_error,
    bearer,
    describe,
    login,
    register_verified,
    running,
)
from tests.acceptance.test_admin_api import create_key
from tests.harness import AuthnodeEnv
from tests.services import SmtpRecorder
from tests.webhook_receiver import Receiver, running_receiver

pytestmark = pytest.mark.anyio
EVENTS = ["user.created", "user.verified", "user.password_changed", "session.revoked",
          "user.deleted"]
SETTLE_S = 30.0


async def _received(receiver: Receiver, types: set[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + SETTLE_S
    while True:
        payloads = [json.loads(r.body) for r in receiver.received]
        if types <= {p["type"] for p in payloads}:
            return payloads
        if time.monotonic() > deadline:
            raise AssertionError(f"waited for {types}; received {[p['type'] for p in payloads]}")
        await anyio.sleep(0.1)


async def test_a_registered_receiver_gets_signed_account_events(
        authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    env = authnode_env.with_overrides(WEBHOOK_ALLOW_PRIVATE="true")
    key = create_key(env, "integrations", "webhooks:write", "users:write")["key"]
    async with running_receiver() as receiver:
        with running(env, "all") as process:
            client = process.client
            created = client.post("/v1/admin/webhooks", headers=bearer(key), json={
                "url": receiver.url, "events": EVENTS, "description": "CRM sync"})
            assert created.status_code == 201, describe(created)
            endpoint = created.json()
            assert endpoint["secret"].startswith("whsec_")
            listed = client.get("/v1/admin/webhooks", headers=bearer(key)).json()
            assert [w["id"] for w in listed["webhooks"]] == [endpoint["id"]]
            assert "secret" not in listed["webhooks"][0]

            email, user = await anyio.to_thread.run_sync(
                lambda: register_verified(client, smtp, prefix="hooked"))
            payloads = await _received(receiver, {"user.created", "user.verified"})
            tokens = login(client, email)
            changed = client.post("/v1/auth/password/change",
                                  headers=bearer(tokens["access_token"]),
                                  json={"current_password": PASSWORD,
                                        "new_password": NEW_PASSWORD})
            assert changed.status_code == 204, describe(changed)
            payloads = await _received(receiver, {"user.password_changed"})
            gone = client.delete(f"/v1/admin/users/{user['id']}", headers=bearer(key))
            assert gone.status_code == 204, describe(gone)
            payloads = await _received(receiver, {"user.deleted", "session.revoked"})

            verifier = Webhook(endpoint["secret"])
            for request in receiver.received:
                verified = verifier.verify(request.body, {
                    "webhook-id": request.headers["webhook-id"],
                    "webhook-timestamp": request.headers["webhook-timestamp"],
                    "webhook-signature": request.headers["webhook-signature"]})
                assert verified["data"]["user_id"] == user["id"]
            ours = [p for p in payloads if p["data"]["user_id"] == user["id"]]
            ordered = [p["type"] for p in sorted(ours, key=lambda p: p["id"])]
            assert ordered.index("user.created") < ordered.index("user.password_changed") \
                < ordered.index("user.deleted"), ordered

            deliveries = client.get(f"/v1/admin/webhooks/{endpoint['id']}/deliveries",
                                    headers=bearer(key))
            assert deliveries.status_code == 200, describe(deliveries)
            done = deliveries.json()["deliveries"]
            assert {d["event_type"] for d in done} >= {"user.created", "user.deleted"}
            assert all(d["status"] == "succeeded" and d["attempts"][-1]["status_code"] == 200
                       for d in done)

            deleted = client.delete(f"/v1/admin/webhooks/{endpoint['id']}",
                                    headers=bearer(key))
            assert deleted.status_code == 204, describe(deleted)
            assert client.get("/v1/admin/webhooks", headers=bearer(key)).json() == {
                "webhooks": []}


def test_private_targets_and_bad_requests_are_refused(authnode_env: AuthnodeEnv,
                                                      smtp: SmtpRecorder) -> None:
    key = create_key(authnode_env, "integrations", "webhooks:write")["key"]
    reader = create_key(authnode_env, "reader", "users:read")["key"]
    with running(authnode_env, "all") as process:
        client = process.client
        for url in ("http://127.0.0.1:9/hook", "http://localhost/hook",
                    "http://169.254.169.254/latest/meta-data", "http://[::1]/x",
                    "http://10.0.0.5/x", "ftp://example.com/x", "http://user:pw@example.com/"):
            refused = client.post("/v1/admin/webhooks", headers=bearer(key),
                                  json={"url": url, "events": ["user.created"]})
            assert refused.status_code == 422, (url, describe(refused))
            assert refused.json()["error"]["code"] == "invalid_request"
        assert_error(client.post("/v1/admin/webhooks", headers=bearer(key),
                                 json={"url": "http://93.184.215.14/x",
                                       "events": ["user.exploded"]}),
                     422, "invalid_request")
        assert_error(client.post("/v1/admin/webhooks", headers=bearer(reader),
                                 json={"url": "http://93.184.215.14/x",
                                       "events": ["user.created"]}),
                     403, "insufficient_scope")
        email, _ = register_verified(client, smtp)
        tokens = login(client, email)
        assert_error(client.get("/v1/admin/webhooks", headers=bearer(tokens["access_token"])),
                     401, "invalid_token")
