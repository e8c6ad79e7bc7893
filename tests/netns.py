"""Several "hosts" on one machine: Linux network namespaces on a private test bridge.

``Network(count)`` creates a bridge on this machine with an address in a private /24
that it picks itself (``10.213.X.0/24``, an X no interface or route here uses yet), and
``count`` namespaces, each joined to the bridge by a veth pair and given its own address
in that subnet. Nothing is routed beyond the subnet (the namespaces have no default
route), so no packet leaves the machine. Servers that the namespaces must reach listen on
``Network.gateway``, the bridge's address on this machine.

Names carry a random tag, so concurrent runs never collide; ``close()`` (also on the way
out of ``with``, whatever happened) deletes the namespaces (which deletes their veth
pairs) and the bridge. Creating namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN);
:func:`unavailable_reason` says why it cannot be done here, for a test's skip reason.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

SUBNET_PREFIX = "10.213"
COMMAND_TIMEOUT_S = 10


class NetnsUnavailable(RuntimeError):
    """Namespaces or links could not be created here."""


@dataclass(frozen=True)
class Host:
    """Where a process runs: a namespace with its address, or (``namespace`` empty) this
    machine's loopback, for the fallback without namespaces."""

    name: str
    ip: str
    namespace: str = ""

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace (``ip netns exec`` execs it, so the
        process id is the program's own and signals reach it directly)."""
        if not self.namespace:
            return list(argv)
        return ["ip", "netns", "exec", self.namespace, *argv]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True,
                            timeout=COMMAND_TIMEOUT_S, check=False)
    if check and result.returncode != 0:
        raise NetnsUnavailable(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def unavailable_reason() -> str | None:
    """None when namespaces can be made here; otherwise why not, in a few words."""
    if os.environ.get("AUTHNODE_TEST_NO_NETNS"):
        return "AUTHNODE_TEST_NO_NETNS is set"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"anprobe-{secrets.token_hex(4)}"
    created = _ip("netns", "add", probe, check=False)
    if created.returncode != 0:
        return f"`ip netns add` failed: {created.stderr.strip() or created.returncode}"
    _ip("netns", "del", probe, check=False)
    return None


def _subnets_in_use() -> set[str]:
    text = _ip("-4", "-o", "addr", "show").stdout + _ip("-4", "route", "show").stdout
    return {word for word in text.split() if word.startswith(SUBNET_PREFIX + ".")}


def _free_subnet() -> ipaddress.IPv4Network:
    used = _subnets_in_use()
    candidates = list(range(256))
    secrets.SystemRandom().shuffle(candidates)
    for third in candidates:
        subnet = ipaddress.IPv4Network(f"{SUBNET_PREFIX}.{third}.0/24")
        if not any(ipaddress.IPv4Address(word.split("/")[0]) in subnet for word in used):
            return subnet
    raise NetnsUnavailable(f"no free /24 left in {SUBNET_PREFIX}.0.0/16")


@dataclass
class Network:
    count: int
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: list[Host] = field(default_factory=list)
    gateway: str = ""
    subnet: str = ""
    _namespaces: list[str] = field(default_factory=list)
    _bridge: str | None = None

    @property
    def bridge(self) -> str:
        return f"anb{self.tag}"  # interface names have at most 15 characters

    def open(self) -> Network:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def _create(self) -> None:
        subnet = _free_subnet()
        addresses = list(subnet.hosts())
        self.subnet = str(subnet)
        self.gateway = str(addresses[0])
        _ip("link", "add", self.bridge, "type", "bridge")
        self._bridge = self.bridge
        _ip("addr", "add", f"{self.gateway}/{subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for index in range(self.count):
            namespace = f"an-{self.tag}-{index}"
            outside, inside = f"anv{self.tag}{index}", f"anp{self.tag}{index}"
            address = str(addresses[10 + index])
            _ip("netns", "add", namespace)
            self._namespaces.append(namespace)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", namespace)  # deleted with the namespace
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            _ip("-n", namespace, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", inside)
            _ip("-n", namespace, "link", "set", inside, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            self.hosts.append(Host(name=f"host-{index}", ip=address, namespace=namespace))

    def close(self) -> list[str]:
        """Delete everything this network created; returns what could not be deleted."""
        leftovers = []
        for namespace in reversed(self._namespaces):
            if _ip("netns", "del", namespace, check=False).returncode != 0:
                leftovers.append(f"netns {namespace}")
        self._namespaces.clear()
        if self._bridge is not None:
            for index in range(self.count):  # normally gone with their peers already
                _ip("link", "del", f"anv{self.tag}{index}", check=False)
            if _ip("link", "del", self._bridge, check=False).returncode != 0:
                leftovers.append(f"bridge {self._bridge}")
            self._bridge = None
        self.hosts.clear()
        return leftovers

    def __enter__(self) -> Network:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def exists(self) -> bool:
        """True while any of this network's namespaces or its bridge is present."""
        namespaces = _ip("netns", "list", check=False).stdout
        links = _ip("-o", "link", "show", check=False).stdout
        return f"an-{self.tag}-" in namespaces or self.bridge in links
