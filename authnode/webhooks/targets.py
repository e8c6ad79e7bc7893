"""The SSRF guard: a webhook may only be sent to a public address.

A URL is checked when the endpoint is registered and again before every attempt (a name's
DNS records can change meanwhile). Every address the name resolves to must be public:
loopback, private (RFC 1918, fc00::/7), link-local (169.254/16 with the cloud metadata
address, fe80::/10), multicast, reserved, unspecified, shared (CGNAT, 100.64/10) addresses
and the IPv4-mapped IPv6 forms of them are refused, unless ``WEBHOOK_ALLOW_PRIVATE=true``.
Anything Python's :mod:`ipaddress` does not call global is refused too (documentation
ranges, 6to4 relays, ...).

The attempt then connects to the very address that was checked (see
:meth:`Target.pinned`): resolving the name again in the HTTP client would let a name that
answers a public address first and 127.0.0.1 next (DNS rebinding) slip through.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import anyio

from authnode.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_CHARS = 2048
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)


class TargetRefused(InvalidRequest):
    """A webhook URL that may not be used (malformed, or not a public address)."""


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not a public one, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        reason = refusal(address.ipv4_mapped)
        return f"IPv4-mapped {reason}" if reason else None
    checks = [("loopback", address.is_loopback), ("unspecified", address.is_unspecified),
              ("link-local", address.is_link_local), ("multicast", address.is_multicast),
              ("shared (CGNAT)", address in _SHARED), ("reserved", address.is_reserved),
              ("private", address.is_private), ("non-public", not address.is_global)]
    return next((f"a {name} address" for name, hit in checks if hit), None)


@dataclass(frozen=True)
class Target:
    """A URL and the addresses its host had when checked (all of them allowed)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]

    def pinned(self) -> tuple[str, dict[str, str], dict[str, str]]:
        """What to send so the connection goes to ``addresses[0]`` and no other: the URL
        with that address as its host, the ``Host`` header of the original URL, and (for
        https) the request extension that makes TLS send the name as SNI and check the
        certificate against it. The first address only: no fallback to the others."""
        parts = urlsplit(self.url)
        address = self.addresses[0]
        literal = f"[{address}]" if address.version == 6 else str(address)
        default_port = 443 if self.scheme == "https" else 80
        netloc = literal if self.port == default_port else f"{literal}:{self.port}"
        url = parts._replace(netloc=netloc, fragment="").geturl()
        host_header = parts.netloc.rpartition("@")[2]
        extensions = {"sni_hostname": self.host} if self.scheme == "https" else {}
        return url, {"Host": host_header}, extensions


def parse(url: str) -> SplitResult:
    """The URL's parts, if it can be a webhook target at all (no resolution)."""
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        raise TargetRefused(f"The URL must be at most {MAX_URL_CHARS} characters.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise TargetRefused(f"The URL is not valid: {error}.") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("The URL must start with http:// or https://.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("The URL must not carry a user name or password.")
    if not parts.hostname:
        raise TargetRefused("The URL has no host.")
    if port == 0:
        raise TargetRefused("The URL's port must be 1 to 65535.")
    if parts.fragment:
        raise TargetRefused("The URL must not have a #fragment.")
    return parts


async def _resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    try:
        return (ipaddress.ip_address(host),)
    except ValueError:
        pass
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise TargetRefused(f"The URL's host {host!r} does not resolve "
                            f"({type(error).__name__}).") from None
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        # Strip an IPv6 zone ("fe80::1%eth0"): the address alone decides.
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in found:
            found.append(address)
    if not found:
        raise TargetRefused(f"The URL's host {host!r} has no address.")
    return tuple(found)


async def check(url: str, *, allow_private: bool) -> Target:
    """Resolve ``url``'s host and refuse it unless every address is public (or
    ``allow_private``); raises :class:`TargetRefused` with the reason."""
    parts = parse(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await _resolve(host, port)
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise TargetRefused(
                    f"The URL's host {host!r} resolves to {address}, {reason}; webhooks go "
                    f"to public addresses only (WEBHOOK_ALLOW_PRIVATE=true allows others).")
    return Target(url=url.strip(), scheme=parts.scheme, host=host, port=port,
                  addresses=addresses)
