"""Where a sign-in may send the browser afterwards (``?return_to=``): no open redirects.

A path on ``PUBLIC_URL`` (``/account``) is always allowed; an absolute URL only when it
starts with one of ``RETURN_URL_ALLOWLIST``'s prefixes (scheme, host and port exact, the
path under the prefix's path). Anything else — another host, a scheme-relative
``//evil.example``, ``https:evil``, a backslash (``/\\evil``, which browsers read as
``//``), a control character or white space (browsers drop tabs and newlines, turning
``/\\t/evil`` into ``//evil``), credentials in the URL — falls back to the default page.
The value arrives decoded once by the query parser; no further decoding is done, so an
encoded ``%2F%2Fevil`` stays a harmless relative path that is refused for lacking its
leading ``/``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from authnode.settings import Settings

DEFAULT_PAGE = "/account"


def _is_plain(raw: str) -> bool:
    return all(0x20 < ord(c) < 0x7F for c in raw) and "\\" not in raw


def _under(url: str, prefix: str) -> bool:
    if prefix.endswith("/"):
        return url.startswith(prefix)
    return url == prefix or url.startswith((prefix + "/", prefix + "?"))


def safe_return_url(settings: Settings, raw: str | None, *,
                    default: str = DEFAULT_PAGE) -> str:
    """The absolute URL to redirect to: ``raw`` if it is allowed, else ``default``
    (a path on ``PUBLIC_URL``)."""
    public = settings.public_origin
    fallback = public + default
    if not raw or len(raw) > 2048 or not _is_plain(raw):
        return fallback
    if raw.startswith("/"):
        if raw.startswith("//"):
            return fallback
        return public + raw
    parts = urlsplit(raw)
    if (parts.scheme not in ("http", "https") or not parts.netloc or parts.username
            or parts.password or not raw.lower().startswith(parts.scheme + "://")):
        return fallback
    normalized = (f"{parts.scheme}://{parts.netloc}".lower() + (parts.path or "/")
                  + (f"?{parts.query}" if parts.query else ""))
    prefixes = (public.lower() + "/", *settings.return_url_allowlist)
    for prefix in prefixes:
        if _under(normalized, prefix):
            return normalized
    return fallback
