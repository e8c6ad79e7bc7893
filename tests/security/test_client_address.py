"""Hostile input: a client that writes its own ``X-Forwarded-For`` to escape per-address
limits, or to break the server with a malformed one.

The real binary, both Redis modes. The test client reaches authnode from 127.0.0.1, so
``TRUSTED_PROXIES=127.0.0.0/8`` makes that connection "the reverse proxy", and the
``X-Forwarded-For`` the test sends is what such a proxy would pass on: whatever the client
wrote, then the address the proxy saw appended on the right. ``LOGIN_IP_LIMIT`` is 3 per
minute; logins use a new unknown address each time, so only the per-address limit can
refuse them. Which client the server saw is read back where a user sees it: the ``ip`` of
a session in ``GET /v1/sessions``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.acceptance.test_accounts_support import (
    PASSWORD,
    assert_error,
    bearer,
    describe,
    register_verified,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess, unique_email
from tests.services import SmtpRecorder

IP_LIMIT = 3
LOOPBACK_PROXY = "127.0.0.0/8, ::1/128"
WRONG = "not the password at all"


@pytest.fixture
def behind_proxy(authnode_env: AuthnodeEnv) -> Iterator[AuthnodeProcess]:
    env = authnode_env.with_overrides(TRUSTED_PROXIES=f"{LOOPBACK_PROXY}, 10.0.0.0/8",
                                      LOGIN_IP_LIMIT=f"{IP_LIMIT}/1m")
    process = env.start("all")
    yield process
    process.kill()


def _wrong_login(node: AuthnodeProcess, forwarded: str | None) -> httpx.Response:
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    return node.client.post("/v1/auth/login", headers=headers,
                            json={"email": unique_email("nobody"), "password": WRONG})


def _assert_counted_as_one(node: AuthnodeProcess, headers: list[str]) -> None:
    """Every header but the last is let through (401); the last is over the limit (429)."""
    assert len(headers) == IP_LIMIT + 1
    for forwarded in headers[:-1]:
        assert_error(_wrong_login(node, forwarded), 401, "invalid_credentials")
    assert_error(_wrong_login(node, headers[-1]), 429, "rate_limited")


def _session_ip(node: AuthnodeProcess, email: str, forwarded: str) -> str:
    """Log in with ``forwarded``; the client address the new session recorded."""
    response = node.client.post("/v1/auth/login", headers={"X-Forwarded-For": forwarded},
                                json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, describe(response)
    access = response.json()["access_token"]
    sessions = node.client.get("/v1/sessions", headers=bearer(access))
    assert sessions.status_code == 200, describe(sessions)
    current = [s for s in sessions.json()["sessions"] if s["current"]]
    assert len(current) == 1, sessions.json()
    ip: str = current[0]["ip"]
    return ip


def test_forged_leftmost_entries_do_not_escape_the_per_address_limit(
        behind_proxy: AuthnodeProcess) -> None:
    # The attacker (203.0.113.7) writes a new address in front each time; the proxy
    # appends the real one. All of them count against 203.0.113.7.
    _assert_counted_as_one(behind_proxy, [f"198.51.100.{n}, 203.0.113.7"
                                          for n in range(IP_LIMIT + 1)])
    # Writing the victim's address on the left does not spend the victim's allowance, and
    # the victim behind the same proxy is not refused because of the attacker.
    _assert_counted_as_one(behind_proxy, ["203.0.113.7, 203.0.113.8"] * (IP_LIMIT + 1))
    assert_error(_wrong_login(behind_proxy, "203.0.113.9"), 401, "invalid_credentials")


def test_without_trusted_proxies_the_header_is_ignored(authnode_env: AuthnodeEnv) -> None:
    env = authnode_env.with_overrides(LOGIN_IP_LIMIT=f"{IP_LIMIT}/1m")
    node = env.start("api")
    try:
        # A different address in the header each time: all counted as the peer.
        _assert_counted_as_one(node, [f"198.51.100.{n}" for n in range(IP_LIMIT + 1)])
    finally:
        node.kill()


def test_a_chain_of_trusted_proxies_yields_the_client(behind_proxy: AuthnodeProcess,
                                                      smtp: SmtpRecorder) -> None:
    email, _ = register_verified(behind_proxy.client, smtp, prefix="proxied")
    # Client 203.0.113.20 -> proxy 10.1.2.3 -> proxy 127.0.0.1 (the peer): the walk from the
    # right skips both proxies; the forged entry left of the client is never read.
    assert _session_ip(behind_proxy, email, "192.0.2.66, 203.0.113.20, 10.1.2.3") == \
        "203.0.113.20"
    # Only trusted proxies: the leftmost of them is as far as anything can be known.
    assert _session_ip(behind_proxy, email, "10.9.9.9, 10.1.2.3") == "10.9.9.9"
    # IPv4-mapped IPv6 is the IPv4 client.
    assert _session_ip(behind_proxy, email, "::ffff:203.0.113.21") == "203.0.113.21"


def test_malformed_headers_get_normal_answers(behind_proxy: AuthnodeProcess,
                                              smtp: SmtpRecorder) -> None:
    email, _ = register_verified(behind_proxy.client, smtp, prefix="malformed")
    # A malformed entry stops the walk: the client is the last address that could be
    # checked, never an entry left of the junk.
    assert _session_ip(behind_proxy, email, "junk!, 203.0.113.60") == "203.0.113.60"
    assert _session_ip(behind_proxy, email, "203.0.113.61, junk!") == "127.0.0.1"
    assert _session_ip(behind_proxy, email, "203.0.113.62, 10.0.0.1:8080") == "127.0.0.1"
    malformed = ["not-an-ip", "203.0.113.50:443", "[2001:db8::1]", "", ",, ,,", "1.2.3",
                 "999.1.1.1", "2001:db8::1::2", "unknown", "203.0.113.50/24", "fe80::1%eth0",
                 "0x7f.0.0.1, " * 150 + "x", "203.0.113.50 203.0.113.51", "%00", "::ffff:",
                 "203.0.113.50" + ", 203.0.113.50" * 500]
    for forwarded in malformed:
        response = _wrong_login(behind_proxy, forwarded)
        # 429 once the peer's own allowance is spent: the fallback is the peer.
        assert response.status_code in (401, 429), (forwarded, describe(response))
        assert_error(response, response.status_code,
                     "invalid_credentials" if response.status_code == 401 else "rate_limited")
        assert behind_proxy.client.get("/healthz",
                                       headers={"X-Forwarded-For": forwarded}).status_code == 200


def test_ipv6_clients_are_limited_per_64(behind_proxy: AuthnodeProcess) -> None:
    # Four addresses of one /64 (a single host can use them all) share one allowance.
    _assert_counted_as_one(behind_proxy, ["2001:db8:1:2::a", "2001:db8:1:2::b",
                                          "2001:db8:1:2:ffff:ffff:ffff:ffff",
                                          "2001:db8:1:2::c"])
    # The neighbouring /64 is another client.
    assert_error(_wrong_login(behind_proxy, "2001:db8:1:3::a"), 401, "invalid_credentials")
    # IPv4-mapped addresses are their IPv4 client, not one big ::ffff:0:0/64 subject.
    _assert_counted_as_one(behind_proxy, ["::ffff:198.51.100.1"] * IP_LIMIT
                           + ["198.51.100.1"])
    assert_error(_wrong_login(behind_proxy, "::ffff:198.51.100.2"), 401,
                 "invalid_credentials")
