"""The Quart application: blueprints, error mapping, request ids, access log."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from quart import Quart, Response, g, request
from quart_schema import QuartSchema

from authnode.accounts.context import Accounts
from authnode.api import access, browser
from authnode.api.auth import auth_blueprint
from authnode.api.caching import OPENAPI_MAX_AGE_S, PublicCache
from authnode.api.documentation import AuthnodeOpenAPIProvider, docs_assets_blueprint
from authnode.api.errors import register_error_handlers
from authnode.api.health import health_blueprint
from authnode.api.hosted import hosted_blueprint
from authnode.api.jwks import jwks_blueprint
from authnode.api.mfa import mfa_blueprint
from authnode.api.oidc import oidc_blueprint
from authnode.api.operators import operators_blueprint
from authnode.api.pages import pages_blueprint
from authnode.api.requests import client_address, user_agent
from authnode.api.stats import stats_blueprint
from authnode.api.users import users_blueprint
from authnode.observability.metrics import Metrics
from authnode.oidc.flow import Oidc
from authnode.operators import audit
from authnode.operators.audit import AuditContext
from authnode.probes import Probe
from authnode.shared.online import OnlineUsers
from authnode.tokens.keyring import KeyRing
from authnode.webhooks.delivery import Webhooks

access_log = logging.getLogger("authnode.access")

MAX_REQUEST_ID_CHARS = 128
HSTS = "max-age=31536000"  # one year; subdomains are the operator's call, not ours


def _plain_dicts_skip_conversion(app: Quart) -> None:
    """quart-schema passes every returned dict through a new pydantic ``TypeAdapter``
    (a fifth of the CPU of ``GET /healthz``, measured: bench/README.md). Our views return
    plain JSON dicts, which Quart encodes as they are, or finished Responses (``GET
    /v1/users/me``); models still go to quart-schema."""
    convert = app.make_response

    async def make_response(result: Any) -> Any:
        value = result
        if type(result) is tuple and len(result) == 2 and type(result[1]) is int:
            value = result[0]  # (body, status)
        if type(value) is dict or type(result) is Response:  # a Response: nothing to convert
            return await Quart.make_response(app, result)
        return await convert(result)

    app.make_response = make_response  # type: ignore[method-assign]


def create_app(accounts: Accounts, keyring: KeyRing, probes: Mapping[str, Probe], *,
               metrics: Metrics, online: OnlineUsers, webhooks: Webhooks | None = None,
               oidc: Oidc | None = None,
               draining: Callable[[], bool] = lambda: False,
               serving: Callable[[], bool] = lambda: True) -> Quart:
    settings = accounts.settings
    app = Quart("authnode")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["BODY_TIMEOUT"] = settings.body_timeout_s
    app.config["RESPONSE_TIMEOUT"] = settings.request_timeout_s
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    QuartSchema(
        app,
        info={"title": "authnode", "version": "1",
              "description": "Email-and-password authentication."},
        openapi_path="/openapi.json", swagger_ui_path="/docs",
        redoc_ui_path=None, scalar_ui_path=None,
        # An admin key (ak_…) from `authnode admin-keys create`; scopes per operation.
        security_schemes={access.ADMIN_KEY_SCHEME: {"type": "http", "scheme": "bearer",
                                                    "bearer_format": "ak_<id>_<secret>"},
                          access.BEARER_SCHEME: {"type": "http", "scheme": "bearer",
                                                 "bearer_format": "JWT"}},
        openapi_provider_class=AuthnodeOpenAPIProvider,
    )
    _plain_dicts_skip_conversion(app)
    register_error_handlers(app)
    app.register_blueprint(docs_assets_blueprint(app))
    app.register_blueprint(health_blueprint(probes, draining, serving))
    app.register_blueprint(jwks_blueprint(keyring, max_age_s=settings.jwks_max_age_s))
    app.register_blueprint(auth_blueprint(accounts, metrics))
    app.register_blueprint(users_blueprint(accounts))
    app.register_blueprint(mfa_blueprint(accounts))
    app.register_blueprint(operators_blueprint(accounts, webhooks))
    app.register_blueprint(pages_blueprint(accounts))
    app.register_blueprint(hosted_blueprint(accounts, metrics, oidc))
    app.register_blueprint(stats_blueprint(online))
    if oidc is not None:
        app.register_blueprint(oidc_blueprint(oidc, metrics))
    # Browsers honour HSTS only over https, and it would pin an http origin's host to
    # https: sent only when the public origin is https.
    hsts = settings.public_url.lower().startswith("https://")
    public_cache = PublicCache({"/.well-known/jwks.json": settings.jwks_max_age_s,
                               "/openapi.json": OPENAPI_MAX_AGE_S})

    def request_audit_context() -> AuditContext:
        """Who and where, for an audit event recorded while this request runs."""
        address = client_address(request, trusted_proxies=settings.trusted_proxies)
        return AuditContext(actor=g.get("actor", "user"),
                            ip=str(address) if address is not None else None,
                            user_agent=user_agent(request) or None,
                            request_id=g.get("request_id"))

    @app.before_request
    async def start_request() -> None:
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = (incoming if incoming and len(incoming) <= MAX_REQUEST_ID_CHARS
                        and incoming.isprintable() else secrets.token_hex(8))
        audit.bind(request_audit_context)

    access.install(app, accounts, online)
    browser.install_cors(app, settings)  # after start_request: errors carry the request id

    @app.after_request
    async def finish_request(response: Response) -> Response:
        response = await public_cache.apply(request, response)  # ETag, max-age, 304
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers["X-Content-Type-Options"] = "nosniff"
        if hsts:
            response.headers["Strict-Transport-Security"] = HSTS
        if request.path.startswith("/v1/") or "principal" in g:  # personal: never cached
            response.headers["Cache-Control"] = "no-store"
        started = g.get("started")
        seconds = time.perf_counter() - started if started else 0.0
        # The rule's template ("/v1/sessions/<session_id>"), never the raw path.
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.observe_request(route=route, method=request.method,
                                status=response.status_code, seconds=seconds)
        access_log.info(
            "request", extra={
                "request_id": g.get("request_id"), "method": request.method,
                "route": route, "status": response.status_code,
                "duration_ms": round(seconds * 1000, 2) if started else None,
            })
        return response

    return app
