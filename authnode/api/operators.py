"""``/v1/admin/*``: the admin API (admin keys with scopes), and a user's own activity."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from quart import Blueprint, Response, g
from quart_schema import document_response, validate_querystring, validate_request

from authnode.accounts.context import Accounts
from authnode.api import schemas
from authnode.api.access import USER, admin_scope, requires
from authnode.api.documentation import no_content
from authnode.errors import Unavailable
from authnode.operators import audit
from authnode.operators import users as admin_users
from authnode.repositories.records import WebhookDelivery, WebhookEndpoint
from authnode.webhooks.delivery import Webhooks


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def _endpoint(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {"id": endpoint.id, "url": endpoint.url, "events": list(endpoint.events),
            "description": endpoint.description, "created_at": _iso(endpoint.created_at)}


def _delivery(delivery: WebhookDelivery) -> dict[str, Any]:
    return {"webhook_id": delivery.webhook_id, "event_type": delivery.event_type,
            "status": delivery.status, "created_at": _iso(delivery.created_at),
            "attempts": [{"at": _iso(a.at), "duration_ms": a.duration_ms,
                          "status_code": a.status_code, "error": a.error}
                         for a in delivery.attempts]}


def operators_blueprint(accounts: Accounts, webhooks: Webhooks | None = None) -> Blueprint:
    bp = Blueprint("operators", __name__)

    def hooks() -> Webhooks:
        if webhooks is None:
            raise Unavailable("webhooks", "Webhooks are not configured in this process.")
        return webhooks

    @bp.get("/v1/admin/users")
    @requires(admin_scope("users:read"))
    @validate_querystring(schemas.UserQuery)
    @document_response(schemas.AdminUsers, 200)
    @document_response(schemas.Error, 401)
    @document_response(schemas.Error, 403)
    @document_response(schemas.Error, 422)
    @document_response(schemas.Error, 429)
    async def list_users(query_args: schemas.UserQuery) -> dict[str, Any]:
        """Users in id order: by exact ``email``, ``email_prefix``, ``created_after``, or all.
        ``limit`` ≤ 200 (50); pass ``next_cursor`` back as ``cursor`` until it is null."""
        return await admin_users.find(
            accounts, email=query_args.email, email_prefix=query_args.email_prefix,
            created_after=query_args.created_after, limit=query_args.limit,
            cursor=query_args.cursor)

    @bp.get("/v1/admin/users/<user_id>")
    @requires(admin_scope("users:read"))
    @document_response(schemas.AdminUserDetail, 200)
    @document_response(schemas.Error, 404)
    async def show_user(user_id: str) -> dict[str, Any]:
        """Profile, state, second factors, live sessions and the last login of a user."""
        return await admin_users.detail(accounts, user_id)

    @bp.post("/v1/admin/users/<user_id>/disable")
    @requires(admin_scope("users:write"))
    @document_response(schemas.AdminUserDetail, 200)
    @document_response(schemas.Error, 404)
    async def disable_user(user_id: str) -> dict[str, Any]:
        """Refuse logins and end every session at once."""
        return await admin_users.set_disabled(accounts, user_id, True)

    @bp.post("/v1/admin/users/<user_id>/enable")
    @requires(admin_scope("users:write"))
    @document_response(schemas.AdminUserDetail, 200)
    @document_response(schemas.Error, 404)
    async def enable_user(user_id: str) -> dict[str, Any]:
        """Allow logins again."""
        return await admin_users.set_disabled(accounts, user_id, False)

    @bp.post("/v1/admin/users/<user_id>/unlock")
    @requires(admin_scope("users:write"))
    @document_response(schemas.AdminUserDetail, 200)
    @document_response(schemas.Error, 404)
    async def unlock_user(user_id: str) -> dict[str, Any]:
        """Clear the lockouts: failed passwords from every address, wrong codes."""
        return await admin_users.unlock(accounts, user_id)

    @bp.post("/v1/admin/users/<user_id>/sessions/revoke")
    @requires(admin_scope("sessions:write"))
    @validate_request(schemas.RevokeSessionsRequest)
    @document_response(schemas.AdminUserDetail, 200)
    @document_response(schemas.Error, 404)
    async def revoke_sessions(user_id: str,
                              data: schemas.RevokeSessionsRequest) -> dict[str, Any]:
        """End one session (``session_id``) or all of them; their tokens stop at once."""
        return await admin_users.revoke_sessions(accounts, user_id, data.session_id)

    @bp.post("/v1/admin/users/<user_id>/password-reset")
    @requires(admin_scope("users:write"))
    @document_response(schemas.AdminUserDetail, 200)
    @document_response(schemas.Error, 404)
    async def send_password_reset(user_id: str) -> dict[str, Any]:
        """Email the user a password-reset link."""
        return await admin_users.send_password_reset(accounts, user_id)

    @bp.post("/v1/admin/users/<user_id>/mfa-reset")
    @requires(admin_scope("users:write"))
    @document_response(schemas.AdminUserDetail, 200)
    @document_response(schemas.Error, 404)
    async def reset_second_factors(user_id: str) -> dict[str, Any]:
        """Remove every second factor (check who is asking first); the user is emailed."""
        return await admin_users.reset_second_factors(accounts, user_id)

    @bp.delete("/v1/admin/users/<user_id>")
    @requires(admin_scope("users:write"))
    @document_response(schemas.Error, 404)
    @no_content()
    async def delete_user(user_id: str) -> Response:
        """Delete the account, its sessions, links and factors."""
        await admin_users.delete(accounts, user_id)
        return Response("", status=204)

    @bp.get("/v1/admin/audit")
    @requires(admin_scope("audit:read"))
    @validate_querystring(schemas.AuditQuery)
    @document_response(schemas.AuditEvents, 200)
    @document_response(schemas.Error, 422)
    async def audit_events(query_args: schemas.AuditQuery) -> dict[str, Any]:
        """Security events, newest first; filter by ``user_id``, ``event``, ``after``."""
        return await audit.events(accounts.audit.store, user_id=query_args.user_id,
                                  event=query_args.event, after=query_args.after,
                                  limit=query_args.limit, cursor=query_args.cursor)

    @bp.post("/v1/admin/webhooks")
    @requires(admin_scope("webhooks:write"))
    @validate_request(schemas.WebhookRequest)
    @document_response(schemas.CreatedWebhook, 201)
    @document_response(schemas.Error, 422)
    async def create_webhook(data: schemas.WebhookRequest) -> tuple[dict[str, Any], int]:
        """Register a receiver for these events. The answer's ``secret`` (``whsec_…``)
        signs every delivery (Standard Webhooks) and is shown once. Loopback and private
        addresses are refused unless ``WEBHOOK_ALLOW_PRIVATE=true``."""
        endpoint, secret = await hooks().create_endpoint(data.url, data.events,
                                                        data.description)
        accounts.audit.record("webhook.created", user_id=None, outcome=endpoint.id)
        return {**_endpoint(endpoint), "secret": secret}, 201

    @bp.get("/v1/admin/webhooks")
    @requires(admin_scope("webhooks:write"))
    @document_response(schemas.WebhookEndpoints, 200)
    async def list_webhooks() -> dict[str, Any]:
        """The registered receivers (never their secrets)."""
        return {"webhooks": [_endpoint(e) for e in await hooks().list_endpoints()
                             if e.deleted_at is None]}

    @bp.delete("/v1/admin/webhooks/<endpoint_id>")
    @requires(admin_scope("webhooks:write"))
    @document_response(schemas.Error, 404)
    @no_content()
    async def delete_webhook(endpoint_id: str) -> Response:
        """Stop delivering to a receiver (deliveries already queued end unsent)."""
        await hooks().delete_endpoint(endpoint_id)
        accounts.audit.record("webhook.deleted", user_id=None, outcome=endpoint_id)
        return Response("", status=204)

    @bp.get("/v1/admin/webhooks/<endpoint_id>/deliveries")
    @requires(admin_scope("webhooks:write"))
    @document_response(schemas.WebhookDeliveries, 200)
    @document_response(schemas.Error, 404)
    async def webhook_deliveries(endpoint_id: str) -> dict[str, Any]:
        """The last 50 deliveries to a receiver, newest first, with every attempt."""
        await hooks().get_endpoint(endpoint_id)
        return {"deliveries": [_delivery(d) for d in
                               await hooks().list_deliveries(endpoint_id)]}

    @bp.get("/v1/users/me/activity")
    @requires(USER)
    @document_response(schemas.Activity, 200)
    async def my_activity() -> dict[str, Any]:
        """Your recent security events: logins, password and factor changes…"""
        return await audit.activity(accounts.audit.store, g.principal.user_id)

    return bp
