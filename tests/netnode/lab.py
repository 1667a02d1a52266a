"""A throwaway network lab for the NIC script tests: network namespaces made
by the test, a "node" namespace that runs the scripts and one namespace per
"VM", whose eth0 is the peer of a veth standing in for the VM's tap.

Everything is created inside namespaces named ``snfnt<pid>x<n>...``, each
registered for removal as soon as it exists, so a failing test leaves
nothing; deleting a namespace deletes its links. Traffic only flows between
addresses inside these namespaces (TEST-NET and documentation ranges).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

_counter = itertools.count()

PING = r"""
import os, socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
dst, timeout = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
if len(sys.argv) > 3:
    s.bind((sys.argv[3], 0))
ident = os.getpid() & 0xFFFF
hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"snfd-netnode"
pkt = hdr[:2] + struct.pack("!H", csum(hdr)) + hdr[4:]
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    s.sendto(pkt, (dst, 0))
    s.settimeout(0.3)
    try:
        while True:
            data, (src, _) = s.recvfrom(2048)
            icmp = data[(data[0] & 15) * 4:]
            if src == dst and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
"""

SERVER = r"""
import socket, sys, threading
def serve(ls):
    while True:
        c, _ = ls.accept(); c.close()
for port in sys.argv[1:]:
    ls = socket.socket(socket.AF_INET6); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind(("::", int(port))); ls.listen(16)
    threading.Thread(target=serve, args=(ls,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

RECEIVE = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
seen = set()
try:
    while True:
        seen.add(s.recvfrom(64)[1][0])
except socket.timeout:
    pass
print(" ".join(sorted(seen)), flush=True)
"""

SEND = r"""
import socket, sys
for source in sys.argv[3:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((source, 0))
    for _ in range(3):
        s.sendto(b"snfd-netnode", (sys.argv[1], int(sys.argv[2])))
"""

CONNECT = r"""
import socket, sys
source = ("", int(sys.argv[4])) if len(sys.argv) > 4 else None
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]),
                             source_address=source).close()
except OSError:
    sys.exit(1)
"""


def unavailable() -> str | None:
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    name = f"snfnt{os.getpid()}probe"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        return "ip netns add does not work here"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


class Lab:
    """Namespaces for one test; ``add_cleanup`` is the test's addCleanup."""

    def __init__(self, add_cleanup: Callable[..., Any]):
        self._add_cleanup = add_cleanup
        self.tag = f"snfnt{os.getpid()}x{next(_counter)}"
        self.node = self.namespace("node")
        self.sh(self.node, "ip", "link", "set", "lo", "up")

    def namespace(self, role: str) -> str:
        """Create a namespace; it is deleted when the test ends."""
        name = f"{self.tag}{role}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self._add_cleanup(subprocess.run, ["ip", "netns", "del", name], capture_output=True)
        return name

    def sh(self, ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command in namespace ``ns``."""
        return subprocess.run(
            ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=check
        )

    def query(self, ns: str, *argv: str) -> Any:
        """Run a ``-j`` command in ``ns`` and parse its JSON."""
        out = self.sh(ns, *argv).stdout
        return json.loads(out) if out.strip() else []

    def bridge(self, name: str = "prv0") -> str:
        """Create an up bridge in the node namespace."""
        self.sh(self.node, "ip", "link", "add", name, "type", "bridge")
        self.sh(self.node, "ip", "link", "set", name, "up")
        return name

    def vm(self, role: str, tap: str, mac: str, address: str, gateway: str | None = None) -> str:
        """A "VM": a namespace whose eth0 (``mac``, ``address`` as a.b.c.d/len)
        is the peer of ``tap`` in the node namespace. Returns the namespace."""
        ns = self.namespace(role)
        self.sh(self.node, "ip", "link", "add", tap, "type", "veth", "peer", "name", "eth0",
                "netns", ns)  # fmt: skip
        self.sh(ns, "ip", "link", "set", "lo", "up")
        self.sh(ns, "ip", "link", "set", "eth0", "address", mac)
        self.sh(ns, "ip", "addr", "add", address, "dev", "eth0")
        self.sh(ns, "ip", "link", "set", "eth0", "up")
        if gateway:
            self.sh(ns, "ip", "route", "add", "default", "via", gateway)
        return ns

    def router(self, table: str) -> str:
        """A "router" namespace (192.0.2.1/24) behind the node's link
        ``uplink``, which routing table ``table`` leads to (the node's static
        setup for IP_LESS_ROUTED networks). Returns the namespace."""
        node = self.node
        self.sh(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        router = self.namespace("r")
        self.sh(node, "ip", "link", "add", "uplink", "type", "veth", "peer", "name", "eth0",
                "netns", router)  # fmt: skip
        self.sh(router, "ip", "addr", "add", "192.0.2.1/24", "dev", "eth0")
        self.sh(router, "ip", "link", "set", "eth0", "up")
        self.sh(node, "ip", "link", "set", "uplink", "up")
        self.sh(node, "ip", "route", "add", "192.0.2.1", "dev", "uplink", "table", table)
        self.sh(node, "ip", "route", "add", "default", "via", "192.0.2.1", "dev", "uplink",
                "table", table)  # fmt: skip
        self.sh(node, "ip", "-6", "route", "add", "default", "dev", "uplink", "table", table)
        self.sh(node, "ip", "rule", "add", "iif", "uplink", "table", table)
        return router

    def hook(self, action: str, env: dict[str, str], script: str | None = None,
             args: Sequence[str] = ()):  # fmt: skip
        """Run ``snfd.netnode`` (or a wrapper ``script``) in the node
        namespace with exactly the environment Ganeti would give plus PATH,
        and ``args`` after the action."""
        full = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **env}
        if script:
            full["SNFD_PYTHON"] = sys.executable
            argv = [script, *args]
        else:
            argv = [sys.executable, "-m", "snfd.netnode", action, *args]
        return subprocess.run(
            ["ip", "netns", "exec", self.node, *argv],
            capture_output=True,
            text=True,
            env=full,
            cwd="/",
        )

    def ping(self, ns: str, address: str, timeout: float = 3.0, source: str | None = None) -> bool:
        """Whether ``address`` answers an ICMP echo from ``ns`` (sent from
        ``source`` if given) in time."""
        argv = [sys.executable, "-c", PING, address, str(timeout), *([source] if source else [])]
        return self.sh(ns, *argv, check=False).returncode == 0

    def serve(self, ns: str, *ports: int) -> None:
        """Accept TCP connections (IPv4 and IPv6) on ``ports`` in ``ns``
        until the test ends."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, *map(str, ports)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._add_cleanup(proc.wait, 10)
        self._add_cleanup(proc.kill)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def udp_sources(self, ns: str, dst_ns: str, dst: str, *sources: str) -> set[str]:
        """Send UDP datagrams from ``ns`` to ``dst`` (in ``dst_ns``), one
        batch from each of ``sources``; return the sources that arrived.
        Unlike a ping, no answer has to find its way back."""
        receiver = subprocess.Popen(
            ["ip", "netns", "exec", dst_ns, sys.executable, "-c", RECEIVE, "9999", "1.5"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._add_cleanup(receiver.kill)
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        self.sh(ns, sys.executable, "-c", SEND, dst, "9999", *sources)
        out, _ = receiver.communicate(timeout=30)
        return set(out.split())

    def connects(self, ns: str, address: str, port: int, timeout: float = 2.0,
                 source_port: int | None = None) -> bool:  # fmt: skip
        """Whether a TCP connection from ``ns`` (from ``source_port`` if
        given) to ``address:port`` succeeds."""
        argv = [sys.executable, "-c", CONNECT, address, str(port), str(timeout)]
        argv += [str(source_port)] if source_port else []
        return self.sh(ns, *argv, check=False).returncode == 0

    def tables(self) -> set[str]:
        """The nftables tables in the node namespace, as "family name"."""
        ruleset = self.query(self.node, "nft", "-j", "list", "tables")
        items = ruleset.get("nftables", []) if ruleset else []
        return {f"{i['table']['family']} {i['table']['name']}" for i in items if "table" in i}

    def ruleset(self) -> str:
        """The node namespace's whole nftables ruleset, as text."""
        return self.sh(self.node, "nft", "list", "ruleset").stdout

    def members(self, bridge: str = "prv0") -> set[str]:
        """The links enslaved to ``bridge`` in the node namespace."""
        return {
            link["ifname"]
            for link in self.query(self.node, "ip", "-j", "link", "show", "master", bridge)
        }

    def link(self, name: str) -> dict[str, Any]:
        """``ip -d link show`` of a link in the node namespace."""
        return self.query(self.node, "ip", "-j", "-d", "link", "show", "dev", name)[0]
