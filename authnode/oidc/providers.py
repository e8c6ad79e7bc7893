"""What the hosted pages need to show provider sign-in."""

from __future__ import annotations

from urllib.parse import urlencode

from authnode.settings import Settings


def login_buttons(settings: Settings) -> list[tuple[str, str]]:
    """(name, display name) of each configured provider, in ``OIDC_PROVIDERS`` order."""
    return [(p.name, p.display_name) for p in settings.oidc]


def start_path(name: str, *, return_to: str | None = None, mode: str = "page") -> str:
    """The path a "Sign in with …" button links to (relative to ``PUBLIC_URL``)."""
    query = {"mode": mode, **({"return_to": return_to} if return_to else {})}
    return f"/v1/auth/oidc/{name}/start?{urlencode(query)}"
