"""The client address behind proxies: ``X-Forwarded-For`` walked from the right, only past
trusted proxies; malformed input falls back, IPv6 clients counted per /64."""

from __future__ import annotations

import ipaddress

import pytest
from quart import Quart, request
from werkzeug.datastructures import Headers

from authnode.api.requests import client_ip

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


async def _client_ip(peer: str, forwarded: list[str] | None,
                     proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
                     = PROXIES) -> str:
    app = Quart(__name__)
    headers = Headers([("X-Forwarded-For", value) for value in forwarded or []])
    headers["Remote-Addr"] = peer  # where Quart's ASGI layer puts the connection's peer
    async with app.test_request_context("/", headers=headers):
        return client_ip(request, trusted_proxies=proxies)


CASES = [
    # (peer, X-Forwarded-For headers, expected)
    ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),  # peer not a proxy: header ignored
    ("10.0.0.2", None, "10.0.0.2"),  # a proxy that added nothing
    ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
    ("10.0.0.2", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # forged left entry
    ("10.0.0.2", ["6.6.6.6, 198.51.100.1, 10.9.9.9"], "198.51.100.1"),  # two proxies
    ("10.0.0.2", ["6.6.6.6", "198.51.100.1, 10.9.9.9"], "198.51.100.1"),  # two headers
    ("10.0.0.2", ["10.1.1.1, 10.9.9.9"], "10.1.1.1"),  # only proxies: the leftmost
    ("10.0.0.2", ["junk, 198.51.100.1"], "198.51.100.1"),
    ("10.0.0.2", ["198.51.100.1, junk"], "10.0.0.2"),  # the walk stops at the junk
    ("10.0.0.2", ["198.51.100.1:443"], "10.0.0.2"),
    ("10.0.0.2", [""], "10.0.0.2"),
    ("10.0.0.2", ["1.1.1.1, " * 1000 + "198.51.100.1"], "10.0.0.2"),  # too long: ignored
    ("10.0.0.2", ["::ffff:198.51.100.1"], "198.51.100.1"),  # IPv4-mapped
    ("::ffff:10.0.0.2", ["198.51.100.1"], "198.51.100.1"),  # mapped peer, trusted
    ("10.0.0.2", ["2001:db8:1:2:3:4:5:6"], "2001:db8:1:2::/64"),
    ("fd00::1", ["2001:db8:1:2::9, fd00::7"], "2001:db8:1:2::/64"),
    ("2001:db8:aa:bb::1", None, "2001:db8:aa:bb::/64"),
    ("unix-socket", ["198.51.100.1"], "unknown"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("peer", "forwarded", "expected"), CASES)
async def test_client_address(peer: str, forwarded: list[str] | None, expected: str) -> None:
    assert await _client_ip(peer, forwarded) == expected


@pytest.mark.anyio
async def test_without_trusted_proxies_the_header_is_never_read() -> None:
    assert await _client_ip("10.0.0.2", ["198.51.100.1"], proxies=()) == "10.0.0.2"
