"""The one settings object, built once at startup and passed down.

Every value comes from, in order of precedence: the process environment, an optional
``.env`` file, a preset file (``config/<name>.env``), the hardware tuning of
:mod:`authnode.tuning`, or a built-in default. :func:`load_settings` records which one
won for each variable so ``authnode config show`` can say so. A value that does not
parse raises :class:`SettingsError` naming the variable and what it accepts.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from authnode.tuning import HostResources, Tuned, tune

PRESETS = ("starter", "growth", "high-scale")
PRESET_OPTION = "--preset/AUTHNODE_PRESET"
SECRET_KEY_MIN_BYTES = 32  # 256 bits
# Placeholders that shipped in example files: refused whatever their shape.
PLACEHOLDER_SECRET_KEYS = frozenset({
    "change-me-to-48-random-characters-from-the-command-above",
    "replace-with-the-output-of-authnode-secret",
})
# Variables that no longer exist, and what replaced them: set anywhere, they stop startup
# (silently ignoring them would drop a security decision the operator made).
REMOVED_VARIABLES = {
    "TRUST_FORWARDED_FOR": "TRUSTED_PROXIES replaced it: set TRUSTED_PROXIES to the CIDRs "
                           "of the proxies that add X-Forwarded-For (e.g. 10.0.0.0/8)",
}
# A load balancer polling /readyz every 1-2 s with a failure threshold of 2-3 stops
# sending new connections within about this long.
DRAIN_DELAY_API_S = 5


class SettingsError(ValueError):
    """A setting that cannot be used; ``str()`` is the one line shown to the operator."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class Secret:
    """A string that never prints: repr and str are masked; ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` events per ``window_s`` seconds."""

    count: int
    window_s: int

    def __str__(self) -> str:
        return f"{self.count}/{self.window_s}s"


# --------------------------------------------------------------------------- parsers


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected a whole number >= {minimum}") from None
        if value < minimum:
            raise ValueError(f"expected a whole number >= {minimum}")
        return value

    return parse


def _float_above_zero(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number of seconds > 0") from None
    if not value > 0:
        raise ValueError("expected a number of seconds > 0")
    return value


def _seconds_at_least_zero(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number of seconds >= 0") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError("expected a number of seconds >= 0")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _boolean(raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected one of true, false, 1, 0, yes, no")


def _choice(*accepted: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        text = raw.strip().lower()
        if text not in accepted:
            raise ValueError(f"expected one of {', '.join(accepted)}")
        return text

    return parse


_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration_s(raw: str) -> int:
    """Whole seconds, written as ``900``, ``900s``, ``15m``, ``24h`` or ``7d``."""
    match = _DURATION.match(raw)
    if match is None or match.group(2) == "ms":
        raise ValueError("expected a duration such as 900, 15m, 24h or 7d")
    value = int(match.group(1)) * _UNIT_S[match.group(2) or "s"]
    if value < 1:
        raise ValueError("expected a duration of at least 1 second")
    return value


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|m|h|d|second|minute|hour|day)s?\s*$")
_RATE_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "second": 1, "minute": 60,
                "hour": 3600, "day": 86400}


def _rate_limit(raw: str) -> RateLimit:
    """``COUNT/WINDOW`` such as ``10/15m``, ``5/1h`` or ``1/minute``."""
    match = _RATE.match(raw)
    if match is None:
        raise ValueError("expected COUNT/WINDOW such as 10/15m, 20/1h or 1/minute")
    count = int(match.group(1))
    window_s = int(match.group(2) or "1") * _RATE_UNIT_S[match.group(3)]
    if count < 1 or window_s < 1:
        raise ValueError("expected a count and a window of at least 1")
    return RateLimit(count=count, window_s=window_s)


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        text = raw.strip()
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.netloc:
            starts = " or ".join(scheme + "://" for scheme in schemes)
            raise ValueError(f"expected a URL starting with {starts}")
        return text

    return parse


def _optional_url(raw: str) -> str | None:
    if not raw.strip():
        return None
    return _url("http", "https")(raw)


def _redis_url(raw: str) -> str:
    """One ``redis://`` URL, or in cluster mode a comma-separated list of startup nodes."""
    nodes = [part.strip() for part in raw.split(",") if part.strip()]
    if not nodes:
        raise ValueError("expected redis://HOST:PORT[/0] or a comma-separated list of them")
    for node in nodes:
        parts = urlsplit(node if "://" in node else f"redis://{node}")
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError("expected redis://HOST:PORT[/0] or a comma-separated list of them")
        if parts.path not in ("", "/", "/0"):
            raise ValueError("only database 0 is allowed (Redis Cluster has no other)")
    return ",".join(nodes)


def _bind(raw: str) -> str:
    host, sep, port = raw.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT such as 0.0.0.0:8000")
    return raw.strip()


def _secret(raw: str) -> Secret | None:
    if not raw:
        return None
    check_secret_key_strength(raw)
    return Secret(raw)


_HEX = re.compile(r"^[0-9a-fA-F]+$")
_BASE64 = re.compile(r"^[A-Za-z0-9_+/-]+={0,2}$")  # base64url or standard, padded or not
KEY_STRENGTH_HINT = ("expected 256 random bits: base64url of 32+ bytes (43+ characters) "
                     "or hex (64+ characters); `authnode secret` prints one")


def check_secret_key_strength(text: str) -> None:
    """Refuse a key that does not carry 256 bits in a form we can check.

    The value must decode (hex, else base64/base64url) to at least 32 bytes, and look
    random: the sanity checks refuse what no random generator produces in practice
    (measured over 100,000 keys: at least 12 distinct hex or 22 distinct base64 symbols,
    no symbol in more than a quarter of the text), and text that repeats itself (a
    quarter of its 3-character pieces seen before)."""
    if text in PLACEHOLDER_SECRET_KEYS:
        raise ValueError("this is the example file's placeholder; " + KEY_STRENGTH_HINT)
    if _HEX.match(text):
        decoded_bytes, min_distinct = len(text) // 2, 8
    elif _BASE64.match(text):
        decoded_bytes, min_distinct = len(text.rstrip("=")) * 6 // 8, 16
    else:
        raise ValueError("not base64url or hex; " + KEY_STRENGTH_HINT)
    if decoded_bytes < SECRET_KEY_MIN_BYTES:
        raise ValueError(f"only {decoded_bytes * 8} bits; " + KEY_STRENGTH_HINT)
    body = text.rstrip("=")
    counts = Counter(body)
    trigrams = [body[i:i + 3] for i in range(len(body) - 2)]
    if len(counts) < min_distinct or max(counts.values()) * 3 > len(body):
        raise ValueError("does not look random (too few distinct characters); "
                         + KEY_STRENGTH_HINT)
    if len(set(trigrams)) * 4 < len(trigrams) * 3:
        raise ValueError("does not look random (it repeats itself); " + KEY_STRENGTH_HINT)


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated CIDRs (a bare address is its own /32 or /128)."""
    found = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            found.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not a CIDR such as 10.0.0.0/8 or fd00::/8") \
                from None
    return tuple(found)


def _origins(raw: str) -> tuple[str, ...]:
    """Comma-separated exact origins (``https://app.example.com``, a port if not the
    default); ``*`` is refused: browsers send cookies only to named origins."""
    found = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        if part == "*":
            raise ValueError("* is not allowed: name each origin (cookie sessions need it)")
        parts = urlsplit(part)
        if (parts.scheme not in ("http", "https") or not parts.hostname
                or parts.path not in ("", "/") or parts.query or parts.fragment
                or parts.username or parts.password):
            raise ValueError(f"{part!r} is not an origin such as https://app.example.com")
        found.append(f"{parts.scheme}://{parts.netloc}".lower())
    return tuple(dict.fromkeys(found))


def _return_url_prefixes(raw: str) -> tuple[str, ...]:
    """Comma-separated URL prefixes (``https://app.example.com/`` or with a path,
    ``https://app.example.com/after-login``): where a sign-in may send the browser."""
    found = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        parts = urlsplit(part)
        if (parts.scheme not in ("http", "https") or not parts.hostname
                or parts.query or parts.fragment or parts.username or parts.password
                or "\\" in part):
            raise ValueError(f"{part!r} is not a URL prefix such as https://app.example.com/")
        found.append(f"{parts.scheme}://{parts.netloc}".lower() + (parts.path or "/"))
    return tuple(dict.fromkeys(found))


def _optional_bind(raw: str) -> str | None:
    return _bind(raw) if raw.strip() else None


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("expected a non-empty value")
    return raw.strip()


def _optional_text(raw: str) -> str:
    return raw.strip()


def _log_level(raw: str) -> str:
    return _choice("debug", "info", "warning", "error")(raw).upper()


# The previous SECRET_KEY
_PREVIOUS_SECRET_MIN_CHARS = 32  # the least SECRET_KEY has ever accepted


def _previous_secret(raw: str) -> Secret | None:
    """The SECRET_KEY being rotated away from: checked only for length, because a secret
    is often rotated precisely because it no longer passes today's checks."""
    if not raw:
        return None
    if len(raw) < _PREVIOUS_SECRET_MIN_CHARS:
        raise ValueError(f"expected at least {_PREVIOUS_SECRET_MIN_CHARS} characters")
    return Secret(raw)


# --------------------------------------------------------------------------- OpenID Connect

OIDC_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9]{0,31}")
# The variables of one provider NAME: OIDC_<NAME>_<SUFFIX>, NAME in upper case.
OIDC_SUFFIXES = ("ISSUER", "CLIENT_ID", "CLIENT_SECRET", "SCOPES", "DISPLAY_NAME")
OIDC_VARIABLE = re.compile(r"OIDC_([A-Z0-9]+)_(" + "|".join(OIDC_SUFFIXES) + ")")
OIDC_DEFAULT_SCOPES = ("openid", "email", "profile")


@dataclass(frozen=True)
class OidcProvider:
    """One OpenID Connect provider users may sign in with (``OIDC_<NAME>_*``)."""

    name: str  # lower case: the URL's ``/v1/auth/oidc/<name>/``
    issuer: str
    client_id: str
    client_secret: Secret
    scopes: tuple[str, ...]
    display_name: str


def _provider_names(raw: str) -> tuple[str, ...]:
    names = [part.strip().lower() for part in raw.split(",") if part.strip()]
    for name in names:
        if not OIDC_PROVIDER_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a provider name (a letter, then letters or "
                             "digits, 32 at most; e.g. google,entra)")
    if len(set(names)) != len(names):
        raise ValueError("a provider is named twice")
    return tuple(names)


def oidc_variable(name: str, suffix: str) -> str:
    return f"OIDC_{name.upper()}_{suffix}"


def _issuer_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise ValueError("expected an https:// issuer URL (http only for localhost)")
    if not parts.hostname or parts.query or parts.fragment or parts.username:
        raise ValueError("expected an issuer URL such as https://accounts.google.com")
    return raw.strip().rstrip("/")


def _scopes(raw: str) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(raw.replace(",", " ").split()))
    if "openid" not in scopes:
        raise ValueError("expected space-separated scopes including openid")
    if any(not re.fullmatch(r"[\x21\x23-\x5b\x5d-\x7e]+", scope) for scope in scopes):
        raise ValueError("a scope has a character OAuth does not allow")
    return scopes


def _oidc_providers(names: tuple[str, ...],
                    layers: list[tuple[str, Mapping[str, str]]]) -> tuple[OidcProvider, ...]:
    """The providers ``OIDC_PROVIDERS`` names, each from its own ``OIDC_<NAME>_*``."""

    def raw(name: str, suffix: str) -> tuple[str, str | None]:
        variable = oidc_variable(name, suffix)
        for _, layer in layers:
            if layer.get(variable):
                return variable, layer[variable]
        return variable, None

    def required(name: str, suffix: str, parse: Callable[[str], Any], hidden: bool = False,
                 default: str | None = None) -> Any:
        variable, text = raw(name, suffix)
        if text is None:
            if default is None:
                raise SettingsError(variable, f"required: {name} is in OIDC_PROVIDERS")
            text = default
        try:
            return parse(text)
        except ValueError as error:
            shown = "(hidden)" if hidden else repr(text)
            raise SettingsError(variable, f"invalid value {shown}: {error}") from None

    return tuple(OidcProvider(
        name=name,
        issuer=required(name, "ISSUER", _issuer_url),
        client_id=required(name, "CLIENT_ID", _text),
        client_secret=required(name, "CLIENT_SECRET", lambda t: Secret(_text(t)), True),
        scopes=required(name, "SCOPES", _scopes, default=" ".join(OIDC_DEFAULT_SCOPES)),
        display_name=required(name, "DISPLAY_NAME", _text, default=name.capitalize()),
    ) for name in names)


def _check_oidc_variables(names: tuple[str, ...],
                          layers: list[tuple[str, Mapping[str, str]]]) -> None:
    """An ``OIDC_<NAME>_*`` variable for a provider not in ``OIDC_PROVIDERS`` is a typo or
    a provider the operator believes is on: refuse it rather than ignore it."""
    wanted = {name.upper() for name in names}
    for source, layer in layers:
        for key in layer:
            match = OIDC_VARIABLE.fullmatch(key)
            if match and match.group(1) not in wanted:
                raise SettingsError(key, f"set ({source}) but {match.group(1).lower()!r} is "
                                    "not in OIDC_PROVIDERS")


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class _Spec:
    """How one variable is read: see :func:`setting`."""

    env: str
    attr: str
    parse: Callable[[str], Any]
    default: str | None = None  # raw text, parsed like any other source
    tuned: Callable[[Tuned], int] | None = None
    secret: bool = False
    help: str = ""


def _default_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def setting(env: str, parse: Callable[[str], Any], default: str | None = None, *,
            tuned: Callable[[Tuned], int] | None = None, secret: bool = False,
            help: str = "") -> Any:
    """Declare a :class:`Settings` field's variable, parser and default, next to it."""
    return field(metadata={"setting": _Spec(env, "", parse, default, tuned, secret, help)})


@dataclass(frozen=True)
class Settings:
    # Connections
    mongodb_uri: str = setting(
        "MONGODB_URI", _url("mongodb", "mongodb+srv"), "mongodb://127.0.0.1:27017/authnode",
        help="MongoDB (or MongoDB-wire) URI with database")
    redis_url: str = setting(
        "REDIS_URL", _redis_url, "redis://127.0.0.1:6379/0",
        help="Redis URL; in cluster mode a comma-separated list of startup nodes")
    redis_mode: Literal["single", "cluster"] = setting(
        "REDIS_MODE", _choice("single", "cluster"), "single")
    postgres_url: str = setting(
        "POSTGRES_URL", _url("postgresql", "postgres"),
        "postgresql://postgres@127.0.0.1:5432/authnode", help="job queue database")
    smtp_url: str = setting(
        "SMTP_URL", _url("smtp", "smtps"), "smtp://127.0.0.1:25",
        help="smtp://[user:pass@]host:port (?starttls=true), smtps:// for implicit TLS")
    mail_from: str = setting("MAIL_FROM", _text, "authnode <no-reply@localhost>")
    public_url: str = setting(
        "PUBLIC_URL", _url("http", "https"), "http://127.0.0.1:8000",
        help="origin users reach; the token issuer and the base of email links")
    secret_key: Secret | None = setting(
        "SECRET_KEY", _secret, "", secret=True,
        help="256 random bits as base64url or hex (`authnode secret` prints one)")
    bind: str = setting("BIND", _bind, "127.0.0.1:8000")
    instance_id: str = setting("INSTANCE_ID", _text, None, help="name in logs; default host:pid")
    # Pools and concurrency (the seed's variables)
    db_pool_size: int = setting("DB_POOL_SIZE", _int_at_least(1), tuned=lambda t: t.db_pool_size)
    db_min_pool_size: int = setting(
        "DB_MIN_POOL_SIZE", _int_at_least(0), tuned=lambda t: t.db_min_pool_size)
    db_max_idle_time_ms: int = setting(
        "DB_MAX_IDLE_TIME_MS", _int_at_least(0), "0", help="0 keeps idle connections forever")
    db_wait_queue_timeout_ms: int = setting("DB_WAIT_QUEUE_TIMEOUT_MS", _int_at_least(1), "10000")
    worker_concurrency: int = setting(
        "WORKER_CONCURRENCY", _int_at_least(1), tuned=lambda t: t.io_worker_concurrency,
        help="jobs at once on the I/O queue (email)")
    worker_cpu_concurrency: int = setting(
        "WORKER_CPU_CONCURRENCY", _int_at_least(1), tuned=lambda t: t.cpu_worker_concurrency,
        help="jobs at once on the CPU queue")
    disable_stalled_job_check: bool = setting("DISABLE_STALLED_JOB_CHECK", _boolean, "false")
    shutdown_timeout_ms: int = setting("SHUTDOWN_TIMEOUT_MS", _int_at_least(0), "10000")
    hash_threads: int = setting("HASH_THREADS", _int_at_least(1), tuned=lambda t: t.hash_threads)
    redis_max_connections: int = setting(
        "REDIS_MAX_CONNECTIONS", _int_at_least(1), tuned=lambda t: t.redis_max_connections)
    postgres_pool_size: int = setting(
        "POSTGRES_POOL_SIZE", _int_at_least(2), tuned=lambda t: t.postgres_pool_size)
    api_workers: int = setting(
        "API_WORKERS", _int_at_least(1), tuned=lambda t: t.api_workers,
        help="API processes sharing the port (--workers)")
    # HTTP server
    request_timeout_s: float = setting("REQUEST_TIMEOUT_S", _float_above_zero, "30")
    body_timeout_s: float = setting("BODY_TIMEOUT_S", _float_above_zero, "10")
    keep_alive_timeout_s: float = setting("KEEP_ALIVE_TIMEOUT_S", _float_above_zero, "5")
    max_body_bytes: int = setting("MAX_BODY_BYTES", _int_at_least(1024), "65536")
    # Passwords
    argon2_memory_kib: int = setting(
        "ARGON2_MEMORY_KIB", _int_at_least(19456), "19456", help="OWASP minimum is 19456 (19 MiB)")
    argon2_time_cost: int = setting("ARGON2_TIME_COST", _int_at_least(2), "2")
    argon2_parallelism: int = setting("ARGON2_PARALLELISM", _int_at_least(1), "1")
    # Tokens
    access_token_ttl_s: int = setting("ACCESS_TOKEN_TTL", _duration_s, "900")
    refresh_token_ttl_s: int = setting("REFRESH_TOKEN_TTL", _duration_s, "30d")
    refresh_reuse_grace_s: int = setting("REFRESH_REUSE_GRACE_S", _int_at_least(0), "10")
    email_token_ttl_s: int = setting(
        "EMAIL_TOKEN_TTL", _duration_s, "1h", help="lifetime of password-reset links")
    verify_email_token_ttl_s: int = setting("VERIFY_EMAIL_TOKEN_TTL", _duration_s, "24h")
    signing_key_rotation_s: int = setting("SIGNING_KEY_ROTATION", _duration_s, "7d")
    jwks_max_age_s: int = setting("JWKS_MAX_AGE_S", _int_at_least(0), "300")
    # Pages
    verify_redirect_url: str | None = setting("VERIFY_REDIRECT_URL", _optional_url, "")
    reset_redirect_url: str | None = setting("RESET_REDIRECT_URL", _optional_url, "")
    # Scale-out
    profile_cache_ttl_s: int = setting("PROFILE_CACHE_TTL", _duration_s, "300")
    online_window_s: int = setting("ONLINE_WINDOW_S", _int_at_least(60), "300")
    connection_share_warn_percent: int = setting(
        "CONNECTION_SHARE_WARN_PERCENT", _int_at_least(1), "25")
    # Rate limits
    login_account_limit: RateLimit = setting(
        "LOGIN_ACCOUNT_LIMIT", _rate_limit, "10/15m",
        help="failed password checks per account and client address before 429")
    login_ip_limit: RateLimit = setting("LOGIN_IP_LIMIT", _rate_limit, "100/15m")
    register_ip_limit: RateLimit = setting("REGISTER_IP_LIMIT", _rate_limit, "20/1h")
    forgot_ip_limit: RateLimit = setting("FORGOT_IP_LIMIT", _rate_limit, "20/1h")
    resend_ip_limit: RateLimit = setting("RESEND_IP_LIMIT", _rate_limit, "20/1h")
    email_address_limit: RateLimit = setting(
        "EMAIL_ADDRESS_LIMIT", _rate_limit, "1/1m", help="emails of one kind to one address")
    # Jobs
    email_max_attempts: int = setting("EMAIL_MAX_ATTEMPTS", _int_at_least(1), "8")
    stalled_job_after_s: int = setting(
        "STALLED_JOB_AFTER_S", _int_at_least(5), "30",
        help="a running job whose worker is silent this long is retried")
    # Logging
    log_level: str = setting("LOG_LEVEL", _log_level, "info")
    # Lockout (all client addresses together)
    login_account_total_limit: RateLimit = setting(
        "LOGIN_ACCOUNT_TOTAL_LIMIT", _rate_limit, "100/1h",
        help="failed password checks per account from all client addresses together")
    # Key rotation
    secret_key_previous: Secret | None = setting(
        "SECRET_KEY_PREVIOUS", _previous_secret, "", secret=True,
        help="the SECRET_KEY before a rotation; only opens signing keys stored under it")
    # Browsers
    cors_allowed_origins: tuple[str, ...] = setting(
        "CORS_ALLOWED_ORIGINS", _origins, "",
        help="origins of browser apps allowed to call the API (CORS, and the CSRF check of "
             "cookie sessions); PUBLIC_URL's own origin is always allowed")
    return_url_allowlist: tuple[str, ...] = setting(
        "RETURN_URL_ALLOWLIST", _return_url_prefixes, "",
        help="URL prefixes a sign-in may redirect to (?return_to=); paths on PUBLIC_URL "
             "are always allowed, anything else goes to /account")
    # Edges: proxies, metrics, replicas, SMTP credentials
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        "TRUSTED_PROXIES", _networks, "",
        help="CIDRs of proxies whose X-Forwarded-For is believed; empty ignores it")
    metrics_bind: str | None = setting(
        "METRICS_BIND", _optional_bind, "",
        help="HOST:PORT serving GET /metrics; empty serves it nowhere")
    max_replica_lag_s: int = setting(
        "MAX_REPLICA_LAG_S", _int_at_least(0), "5",
        help="longest a MongoDB secondary may trail the primary")
    smtp_allow_insecure_auth: bool = setting(
        "SMTP_ALLOW_INSECURE_AUTH", _boolean, "false",
        help="allow SMTP credentials over a connection without TLS")
    # Sessions
    refresh_ip_limit: RateLimit = setting(
        "REFRESH_IP_LIMIT", _rate_limit, "1000/1h", help="refreshes per client IP")
    # Second factors
    reauth_max_age_s: int = setting(
        "REAUTH_MAX_AGE_S", _int_at_least(30), "300",
        help="how recent an authentication changing factors, the password or deleting the "
             "account needs")
    mfa_failure_limit: RateLimit = setting(
        "MFA_FAILURE_LIMIT", _rate_limit, "20/1h",
        help="wrong second-factor codes per account, over all logins, before 429")
    # Operators
    admin_key_limit: RateLimit = setting(
        "ADMIN_KEY_LIMIT", _rate_limit, "600/1m", help="admin API requests per key")
    audit_retention_days: int = setting(
        "AUDIT_RETENTION_DAYS", _int_at_least(1), "180",
        help="how long audit events are kept (the purge job deletes older ones)")
    # Draining
    # Seconds between SIGTERM and closing the listener, for load balancers to notice.
    drain_delay_s: float = setting(
        "DRAIN_DELAY_S", _seconds_at_least_zero, str(DRAIN_DELAY_API_S),
        help=f"on SIGTERM /readyz says 503 and the API keeps serving this long before "
             f"closing its listener (default {DRAIN_DELAY_API_S} for the api role, "
             f"0 for --role worker)")
    # OpenID Connect sign-in (each provider's OIDC_<NAME>_* fill ``oidc`` below)
    oidc_provider_names: tuple[str, ...] = setting(
        "OIDC_PROVIDERS", _provider_names, "",
        help="comma-separated names of OpenID Connect providers (each configured by "
             "OIDC_<NAME>_ISSUER, _CLIENT_ID, _CLIENT_SECRET, optional _SCOPES, "
             "_DISPLAY_NAME)")
    # Webhooks
    webhook_allow_private: bool = setting(
        "WEBHOOK_ALLOW_PRIVATE", _boolean, "false",
        help="allow webhook URLs on loopback, private, link-local and other non-public "
             "addresses (refused by default: SSRF)")
    oidc: tuple[OidcProvider, ...] = ()
    # Where each value came from, by variable name (not part of equality).
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def public_origin(self) -> str:
        return self.public_url.rstrip("/")

    def oidc_provider(self, name: str) -> OidcProvider | None:
        return next((p for p in self.oidc if p.name == name), None)


# Every variable, in the order of the fields above.
SPECS: tuple[_Spec, ...] = tuple(replace(f.metadata["setting"], attr=f.name)
                                 for f in fields(Settings) if "setting" in f.metadata)


# --------------------------------------------------------------------------- loading


def parse_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments ignored, quotes stripped."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export "):
            text = text[len("export "):]
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise SettingsError(str(path), f"line {number} is not KEY=VALUE")
        value = value.split(" #", 1)[0].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def preset_dirs(environ: Mapping[str, str]) -> list[Path]:
    """Where preset files are looked for: $AUTHNODE_CONFIG_DIR, the checkout, /etc."""
    dirs = []
    if configured := environ.get("AUTHNODE_CONFIG_DIR"):
        dirs.append(Path(configured))
    dirs.append(Path(__file__).resolve().parent.parent / "config")
    dirs.append(Path("/etc/authnode/presets"))
    return dirs


def find_preset(name: str, environ: Mapping[str, str]) -> Path:
    if name not in PRESETS:
        raise SettingsError(PRESET_OPTION, f"unknown preset {name!r}; expected one of "
                            f"{', '.join(PRESETS)}")
    for directory in preset_dirs(environ):
        candidate = directory / f"{name}.env"
        if candidate.is_file():
            return candidate
    raise SettingsError(PRESET_OPTION, f"preset file {name}.env not found in "
                        f"{', '.join(str(d) for d in preset_dirs(environ))}")


def load_settings(
    environ: Mapping[str, str],
    *,
    host: HostResources,
    preset: str | None = None,
    env_file: Path | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings; raise :class:`SettingsError` for the first unusable value.

    ``overrides`` (command-line options such as ``--bind``) win over everything."""
    preset = preset or environ.get("AUTHNODE_PRESET") or None
    layers: list[tuple[str, Mapping[str, str]]] = [("command line", overrides or {}),
                                                   ("environment", environ)]
    if env_file is not None and env_file.is_file():
        layers.append((f"file {env_file}", parse_env_file(env_file)))
    if preset:
        layers.append((f"preset {preset}", parse_env_file(find_preset(preset, environ))))

    for source, layer in layers:
        for removed, replacement in REMOVED_VARIABLES.items():
            if removed in layer:
                raise SettingsError(removed, f"no longer exists ({source}); {replacement}")
    known = {spec.env for spec in SPECS}
    for source, layer in layers[2:]:
        for key in layer:
            if key not in known and not OIDC_VARIABLE.fullmatch(key):
                raise SettingsError(key, f"unknown variable in {source}")

    argon2_memory_kib = _resolve(_spec("ARGON2_MEMORY_KIB"), layers, None)[0]
    tuned = tune(host, argon2_memory_kib=argon2_memory_kib)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in SPECS:
        values[spec.attr], sources[spec.env] = _resolve(spec, layers, tuned)
    if values["instance_id"] is None:
        values["instance_id"] = _default_instance_id()
    if sources["DB_MIN_POOL_SIZE"] == "tuned from hardware":  # never above a set maximum
        values["db_min_pool_size"] = min(values["db_min_pool_size"], values["db_pool_size"])
    _check_oidc_variables(values["oidc_provider_names"], layers)
    values["oidc"] = _oidc_providers(values["oidc_provider_names"], layers)
    settings = Settings(**values, sources=sources)
    _check_consistency(settings)
    return settings


def _spec(env: str) -> _Spec:
    return next(spec for spec in SPECS if spec.env == env)


def _resolve(
    spec: _Spec, layers: list[tuple[str, Mapping[str, str]]], tuned: Tuned | None
) -> tuple[Any, str]:
    for source, layer in layers:
        raw = layer.get(spec.env)
        if raw is None or (raw == "" and spec.default is None and spec.tuned is not None):
            continue
        try:
            return spec.parse(raw), source
        except ValueError as error:
            shown = "(hidden)" if spec.secret else repr(raw)
            raise SettingsError(spec.env, f"invalid value {shown}: {error}") from None
    if spec.tuned is not None and tuned is not None:
        return spec.tuned(tuned), "tuned from hardware"
    if spec.default is None:
        return None, "default"
    return spec.parse(spec.default), "default"


def _check_consistency(settings: Settings) -> None:
    if settings.db_min_pool_size > settings.db_pool_size:
        raise SettingsError(
            "DB_MIN_POOL_SIZE",
            f"{settings.db_min_pool_size} is above DB_POOL_SIZE={settings.db_pool_size}; "
            "expected a minimum no larger than the maximum",
        )
    nodes = settings.redis_url.split(",")
    if settings.redis_mode == "single" and len(nodes) > 1:
        raise SettingsError("REDIS_URL", "a list of nodes needs REDIS_MODE=cluster")
    _check_smtp_credentials(settings)


def _check_smtp_credentials(settings: Settings) -> None:
    """A password sent over plain SMTP can be read on the wire: refuse unless asked."""
    from authnode.mail.senders import parse_smtp_url

    try:
        target = parse_smtp_url(settings.smtp_url)
    except ValueError as error:
        raise SettingsError("SMTP_URL", str(error).removeprefix("SMTP_URL: ")) from None
    if target.sends_credentials_in_clear and not settings.smtp_allow_insecure_auth:
        raise SettingsError(
            "SMTP_URL", "has a user or password but no TLS; use smtps:// or ?starttls=true "
            "(or set SMTP_ALLOW_INSECURE_AUTH=true for a server on this host)")


def for_role(settings: Settings, role: str) -> Settings:
    """The settings as ``serve --role ROLE`` uses them: a worker has no listener for a load
    balancer to drain, so its ``DRAIN_DELAY_S`` default is 0 (a value set anywhere wins)."""
    if role != "worker" or settings.sources.get("DRAIN_DELAY_S", "default") != "default":
        return settings
    return replace(settings, drain_delay_s=0.0,
                   sources={**settings.sources, "DRAIN_DELAY_S": "default for --role worker"})


def require_secret_key(settings: Settings) -> Secret:
    if settings.secret_key is None:
        raise SettingsError("SECRET_KEY", "required: " + KEY_STRENGTH_HINT)
    return settings.secret_key


def new_secret_key() -> str:
    """What ``authnode secret`` prints: 384 random bits, base64url."""
    import secrets

    return secrets.token_urlsafe(48)


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(variable, shown value, source) rows for ``authnode config show``; secrets masked."""
    attr_values = {f.name: getattr(settings, f.name) for f in fields(settings)}
    rows = []
    for spec in SPECS:
        value = attr_values[spec.attr]
        if spec.secret:
            shown = "(unset)" if value is None else "********"
        elif value is None:
            shown = "(unset)"
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        elif isinstance(value, tuple):
            shown = ",".join(str(item) for item in value) or "(none)"
        else:
            shown = _mask_url_password(str(value))
        rows.append((spec.env, shown, settings.sources.get(spec.env, "default")))
    for provider in settings.oidc:
        for suffix, value in (("ISSUER", provider.issuer), ("CLIENT_ID", provider.client_id),
                              ("CLIENT_SECRET", "********"),
                              ("SCOPES", " ".join(provider.scopes)),
                              ("DISPLAY_NAME", provider.display_name)):
            rows.append((oidc_variable(provider.name, suffix), value, "OIDC_PROVIDERS"))
    return rows


def _mask_url_password(text: str) -> str:
    return re.sub(r"(://[^:/@,]*:)[^@/,]*@", r"\1****@", text)
