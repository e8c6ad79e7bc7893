"""Every route declares who may call it, the declaration is enforced, and OpenAPI shows it.

The app is built by the real factory; the stores behind it are never reached, because
every request here is decided before a view or an authentication lookup runs.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from quart import Quart

from authnode.accounts.context import Accounts
from authnode.api.access import PUBLIC, USER, PrincipalKind, access_of, public, requires
from authnode.api.app import create_app
from authnode.observability.metrics import Metrics
from authnode.oidc.flow import Oidc
from authnode.settings import load_settings
from authnode.shared.online import OnlineUsers
from authnode.tuning import HostResources

SECRET = "lX3a9Qe0u7Zr2Vw8Nc4Tb6Yk1Hs5Jd0Gf3Pm9Ro2Ui7E"


class Unreachable:
    """A store no request of these tests may reach."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a store was used: {name}")


def build_app() -> Quart:
    settings = load_settings({"SECRET_KEY": SECRET},
                             host=HostResources(cpus=2, memory_bytes=8 << 30))
    unreachable: Any = Unreachable()
    accounts = Accounts(settings=settings, users=unreachable, sessions=unreachable,
                        email_tokens=unreachable, registrations=unreachable,
                        hasher=unreachable, policy=unreachable,
                        access_tokens=unreachable, refresh_key=b"k" * 32,
                        revocations=unreachable, limiter=unreachable, outbox=unreachable,
                        profiles=unreachable, mfa=unreachable,
                        audit=unreachable, admin_keys=unreachable,
                        identities=unreachable)
    online = OnlineUsers(cast(Any, unreachable), window_s=settings.online_window_s)
    return create_app(accounts, unreachable, {}, metrics=Metrics(environ={}), online=online,
                      oidc=Oidc(accounts, unreachable, unreachable))


def test_every_route_declares_its_access() -> None:
    app = build_app()
    missing = sorted({rule.rule for rule in app.url_map.iter_rules()
                      if access_of(app, rule.endpoint) is None})
    assert missing == []


def test_the_account_routes_need_a_user_and_the_rest_are_public() -> None:
    app = build_app()
    needs_user = sorted({rule.rule for rule in app.url_map.iter_rules()
                         if USER in getattr(access_of(app, rule.endpoint), "kinds", ())})
    assert needs_user == ["/v1/auth/logout", "/v1/auth/logout-all", "/v1/auth/password/change",
                          "/v1/auth/reauthenticate", "/v1/auth/reauthenticate/options",
                          "/v1/mfa/recovery-codes", "/v1/mfa/totp", "/v1/mfa/totp/confirm",
                          "/v1/mfa/webauthn", "/v1/mfa/webauthn/<passkey_id>",
                          "/v1/mfa/webauthn/register", "/v1/mfa/webauthn/register/options",
                          "/v1/sessions", "/v1/sessions/<session_id>", "/v1/stats/online",
                          "/v1/users/me", "/v1/users/me/activity",
                          "/v1/users/me/identities", "/v1/users/me/identities/<identity_id>",
                          "/v1/users/me/identities/<provider>"]


def test_every_admin_route_needs_an_admin_key_with_a_scope() -> None:
    app = build_app()
    declared = {}
    for rule in app.url_map.iter_rules():
        access = access_of(app, rule.endpoint)
        assert access is not None
        is_admin = PrincipalKind.ADMIN_KEY in access.kinds
        assert is_admin == rule.rule.startswith("/v1/admin/"), rule.rule
        if is_admin:
            assert USER not in access.kinds and access.admin_scopes, rule.rule
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                declared[f"{method} {rule.rule}"] = sorted(access.admin_scopes)
    reads = {"GET /v1/admin/users": ["users:read"],
             "GET /v1/admin/users/<user_id>": ["users:read"],
             "GET /v1/admin/audit": ["audit:read"],
             "POST /v1/admin/users/<user_id>/sessions/revoke": ["sessions:write"]}
    for name, scopes in reads.items():
        assert declared.pop(name) == scopes, name
    hooks = {name: declared.pop(name) for name in list(declared) if "/webhooks" in name}
    assert set(hooks) == {"POST /v1/admin/webhooks", "GET /v1/admin/webhooks",
                          "DELETE /v1/admin/webhooks/<endpoint_id>",
                          "GET /v1/admin/webhooks/<endpoint_id>/deliveries"}
    assert all(scopes == ["webhooks:write"] for scopes in hooks.values())
    assert declared and all(scopes == ["users:write"] for scopes in declared.values())


def test_what_needs_step_up_or_a_recent_authentication() -> None:
    """The issue's list: with a second factor enrolled, changing the password, deleting
    the account, removing a factor and adding one need AAL2 and a recent authentication;
    starting an enrolment always needs a recent one."""
    app = build_app()
    declared = {}
    for rule in app.url_map.iter_rules():
        access = access_of(app, rule.endpoint)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if access is not None and (access.step_up or access.recent):
                declared[f"{method} {rule.rule}"] = ("step_up" if access.step_up else "",
                                                     "recent" if access.recent else "")
    assert declared == {
        "POST /v1/auth/password/change": ("step_up", ""),
        "DELETE /v1/users/me": ("step_up", ""),
        "POST /v1/mfa/totp": ("step_up", "recent"),
        "DELETE /v1/mfa/totp": ("step_up", ""),
        "POST /v1/mfa/webauthn/register/options": ("step_up", "recent"),
        "DELETE /v1/mfa/webauthn/<passkey_id>": ("step_up", ""),
        "POST /v1/users/me/identities/<provider>": ("step_up", "recent"),
        "DELETE /v1/users/me/identities/<identity_id>": ("step_up", ""),
    }


@pytest.mark.anyio
async def test_openapi_documents_exactly_the_declared_requirements() -> None:
    app = build_app()
    document = await (await app.test_client().get("/openapi.json")).get_json()
    for rule in app.url_map.iter_rules():
        operation = document["paths"].get(rule.rule.replace("<", "{").replace(">", "}"))
        if operation is None:  # hidden from the document (pages, /metrics)
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            security = operation[method.lower()].get("security")
            access = access_of(app, rule.endpoint)
            assert access is not None
            if access == PUBLIC:
                assert not security, rule.rule
            elif access.admin_scopes:
                assert security == [{"adminKey": sorted(access.admin_scopes)}], rule.rule
            else:
                assert security == [{"bearer": []}], rule.rule


@pytest.mark.anyio
async def test_a_route_without_a_declaration_is_refused() -> None:
    app = build_app()

    @app.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"secret": "data"}

    response = await app.test_client().get("/forgotten")
    assert response.status_code == 401
    assert (await response.get_json())["error"]["code"] == "invalid_token"


@pytest.mark.anyio
async def test_declared_routes_are_enforced_before_the_view_runs() -> None:
    app = build_app()

    @app.get("/open")
    @public
    async def open_route() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/closed")
    @requires(USER)
    async def closed_route() -> dict[str, str]:
        raise AssertionError("the view ran without a principal")

    client = app.test_client()
    assert (await client.get("/open")).status_code == 200
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        response = await client.get("/closed", headers=headers)
        assert response.status_code == 401
        assert (await response.get_json())["error"]["code"] == "invalid_token"


def test_requires_needs_a_kind() -> None:
    with pytest.raises(ValueError, match="@public"):
        requires()
