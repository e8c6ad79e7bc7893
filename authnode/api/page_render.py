"""How every server-rendered page looks and which headers it carries.

Plain HTML with no external assets. The Content-Security-Policy allows no inline script
and no script from anywhere but this service's own ``/assets/`` (pages that need one:
passkeys); forms post only to ``PUBLIC_URL``'s origin; no page may be framed
(``frame-ancestors 'none'``); ``Referrer-Policy: no-referrer`` keeps tokens in a URL out
of any ``Referer``. Every value shown is HTML-escaped here or by the caller with
:func:`html.escape`.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode, urlsplit, urlunsplit

from quart import Response

PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
}

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;"
          "padding:0 1rem;line-height:1.5}label,input,button{display:block;font-size:1rem}"
          "input{width:100%;padding:.5rem;margin:.25rem 0 1rem;box-sizing:border-box}"
          "button{padding:.5rem 1rem;margin:.25rem 0}"
          ".error{color:#a00}.note{color:#060}"
          "form.inline{display:inline}form.inline button{display:inline}"
          "table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25rem;"
          "border-bottom:1px solid #ddd;vertical-align:top}section{margin:2rem 0}"
          "a:focus,button:focus,input:focus{outline:3px solid #36c;outline-offset:2px}"
          "svg{max-width:14rem;height:auto}"
          "a.button{display:inline-block;padding:.5rem 1rem;border:1px solid #555;"
          "border-radius:3px;text-decoration:none;color:inherit}")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(form_origin: str, *, script: bool = False) -> str:
    """``form_origin``: where the page's forms may post (PUBLIC_URL's origin), or 'none'.
    ``script``: the page loads its script from this service (never inline)."""
    scripts = "script-src 'self'; connect-src 'self'; " if script else ""
    return (f"default-src 'none'; {scripts}style-src 'unsafe-inline'; img-src 'self' data:; "
            f"form-action {form_origin}; frame-ancestors 'none'; base-uri 'none'")


def page(title: str, body: str, status: int = 200, *, form_origin: str = "'none'",
         script_src: str | None = None) -> Response:
    """A complete page. ``body`` is trusted HTML (escape what goes into it);
    ``script_src``: the URL of this service's script the page needs, if any."""
    script = (f'<script src="{escape(script_src)}" defer></script>' if script_src else "")
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="referrer" content="no-referrer"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style>{script}</head><body><main><h1>{escape(title)}</h1>"
            f"{body}</main></body></html>")
    policy = content_security_policy(form_origin, script=script_src is not None)
    return Response(html, status=status,
                    headers={**PAGE_HEADERS, "Content-Security-Policy": policy})


def message(text: str | None, *, error: bool = True) -> str:
    """An error (announced to screen readers) or a confirmation, or nothing."""
    if not text:
        return ""
    if error:
        return f'<p class="error" role="alert">{escape(text)}</p>'
    return f'<p class="note" role="status">{escape(text)}</p>'


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


def field(name: str, label: str, *, kind: str = "text", autocomplete: str = "off",
          value: str = "", required: bool = True, extra: str = "") -> str:
    """A labelled input (the label is tied to it, for screen readers and clicks)."""
    needed = " required" if required else ""
    filled = f' value="{escape(value)}"' if value else ""
    return (f'<label for="{escape(name)}">{escape(label)}</label>'
            f'<input id="{escape(name)}" name="{escape(name)}" type="{escape(kind)}" '
            f'autocomplete="{escape(autocomplete)}"{filled}{needed} {extra}>')


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redirect(url: str) -> Response:
    return Response("", status=303, headers={"Location": url, "Cache-Control": "no-store",
                                             "Referrer-Policy": "no-referrer"})
