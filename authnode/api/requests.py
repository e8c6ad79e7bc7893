"""Small readers of the incoming request shared by the blueprints."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from quart import Request

from authnode.errors import InvalidToken

MAX_BEARER_CHARS = 4096


def bearer_token(request: Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_BEARER_CHARS:
        raise InvalidToken()
    return token


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_FORWARDED_CHARS = 2048
UNKNOWN_CLIENT = "unknown"


def _address(text: str) -> Address | None:
    """An IP address, IPv4-mapped IPv6 as IPv4; None for anything else (ports, junk)."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network
               for network in proxies)


def client_address(request: Request, *, trusted_proxies: Sequence[Network]) -> Address | None:
    """The address of the client, as far as it can be known.

    The peer is the last hop. Only when it is a trusted proxy is ``X-Forwarded-For`` read,
    from the right: each proxy appends the address it saw, so the first entry that is not
    a trusted proxy is the client; entries left of it are whatever the client wrote and
    are never believed. A malformed entry stops the walk there and the last trusted hop's
    view wins (the rightmost address we could check), never an error."""
    peer = _address(request.remote_addr or "")
    if peer is None or not trusted_proxies or not _trusted(peer, trusted_proxies):
        return peer
    client = peer
    forwarded = ",".join(request.headers.getlist("X-Forwarded-For"))
    if len(forwarded) > MAX_FORWARDED_CHARS:
        return peer
    for entry in reversed(forwarded.split(",")):
        hop = _address(entry)
        if hop is None:
            break
        client = hop
        if not _trusted(hop, trusted_proxies):
            break
    return client


def limit_subject(address: Address | None) -> str:
    """The subject of per-address limits: an IPv4 address, or an IPv6 client's /64 (one
    host usually holds a whole /64, so counting single addresses would not limit it)."""
    if address is None:
        return UNKNOWN_CLIENT
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_ip(request: Request, *, trusted_proxies: Sequence[Network]) -> str:
    """The client as per-address limits count it (see :func:`limit_subject`)."""
    return limit_subject(client_address(request, trusted_proxies=trusted_proxies))


def user_agent(request: Request) -> str:
    return request.headers.get("User-Agent", "")[:256]
