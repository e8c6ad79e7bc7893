"""The SSRF guard: which webhook URLs are refused, without the internet (literal addresses,
and ``localhost`` from /etc/hosts)."""

from __future__ import annotations

import ipaddress

import pytest

from authnode.webhooks.targets import TargetRefused, check, refusal

pytestmark = pytest.mark.anyio

REFUSED = {
    "http://127.0.0.1/hook": "loopback",
    "http://127.8.9.10:8080/": "loopback",
    "http://[::1]/": "loopback",
    "http://10.1.2.3/": "private",
    "http://172.16.0.1/": "private",
    "http://172.31.255.255/": "private",
    "http://192.168.1.1/": "private",
    "http://169.254.169.254/latest/meta-data": "link-local",
    "http://100.64.0.1/": "shared (CGNAT)",
    "http://100.127.255.254/": "shared (CGNAT)",
    "http://[::ffff:127.0.0.1]/": "IPv4-mapped a loopback",
    "http://[::ffff:10.0.0.1]/": "IPv4-mapped a private",
    "http://[fd00::1]/": "private",
    "http://[fe80::1]/": "link-local",
    "http://0.0.0.0/": "unspecified",
    "http://[::]/": "unspecified",
    "http://224.0.0.1/": "multicast",
    "http://240.0.0.1/": "reserved",
    "http://192.0.2.1/": "private",  # documentation range (TEST-NET-1)
    "http://localhost:9/": "loopback",
    "http://LocalHost/": "loopback",
}


@pytest.mark.parametrize("url", list(REFUSED))
async def test_non_public_targets_are_refused_by_default(url: str) -> None:
    with pytest.raises(TargetRefused) as raised:
        await check(url, allow_private=False)
    assert REFUSED[url] in str(raised.value)
    assert "WEBHOOK_ALLOW_PRIVATE" in str(raised.value)
    assert raised.value.code == "invalid_request"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://localhost/",
                                 "http://10.0.0.5/", "http://[::1]:9000/x"])
async def test_allow_private_lets_them_through(url: str) -> None:
    target = await check(url, allow_private=True)
    assert target.addresses


@pytest.mark.parametrize("url", ["https://93.184.215.14/hooks?a=1", "http://8.8.8.8:8080/",
                                 "https://[2606:4700:4700::1111]/x", "http://1.1.1.1"])
async def test_public_literal_addresses_are_allowed(url: str) -> None:
    target = await check(url, allow_private=False)
    assert len(target.addresses) == 1 and target.addresses[0].is_global


@pytest.mark.parametrize("url,why", [
    ("ftp://example.com/", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("gopher://127.0.0.1/", "http:// or https://"),
    ("http://user:pw@8.8.8.8/", "user name or password"),
    ("http://user@8.8.8.8/", "user name or password"),
    ("http:///nohost", "no host"),
    ("http://8.8.8.8:99999/", "not valid"),
    ("http://8.8.8.8/#frag", "fragment"),
    ("http://no-such-host.invalid/", "does not resolve"),
    ("https://8.8.8.8/" + "a" * 2100, "at most 2048"),
])
async def test_malformed_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(TargetRefused) as raised:
        await check(url, allow_private=True)
    assert why in str(raised.value)


async def test_the_connection_is_pinned_to_the_checked_address() -> None:
    target = await check("https://[2606:4700:4700::1111]:8443/in?x=1", allow_private=False)
    url, headers, extensions = target.pinned()
    assert url == "https://[2606:4700:4700::1111]:8443/in?x=1"
    assert headers == {"Host": "[2606:4700:4700::1111]:8443"}
    assert extensions == {"sni_hostname": "2606:4700:4700::1111"}
    local = await check("http://localhost:8080/hook", allow_private=True)
    url, headers, extensions = local.pinned()
    assert url in ("http://127.0.0.1:8080/hook", "http://[::1]:8080/hook")
    assert headers == {"Host": "localhost:8080"} and extensions == {}


def test_public_addresses_have_no_refusal() -> None:
    for text in ("8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
        assert refusal(ipaddress.ip_address(text)) is None, text
