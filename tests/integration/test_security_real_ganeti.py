"""Security groups on a real Ganeti 3.0 cluster: a rule added through the
network API reaches the nftables rules of the server's tap on the node,
through Ganeti's own run of the ``instance-modify`` post hook.

The chain under test: ``POST /network/v2.0/security-group-rules`` ->
``SecurityGroups.deliver`` puts the server's rules on its instance as
``snf:sg:<nic>:...`` tags and submits a no-op instance modify (the OS name
again) -> Ganeti runs the modify's post hooks on the instance's node ->
``share/ganeti/snfd-netnode-refresh`` (``python -m snfd.netnode refresh``)
reads the NIC's tap from KVM's runtime file and replaces the tap's table
``bridge snf-<tap>`` from the tags Ganeti passes in ``GANETI_POST_*``.

The cluster, node and server are set up as in ``test_network_real_ganeti``
(fake hypervisor, MAC_FILTERED private network bridged on ``gntbr0``,
``nic_hotplug`` off).  The fake hypervisor makes no tap, so the test stands
in for KVM: it makes a tap (``ip tuntap``) on ``gntbr0`` inside the
cluster's network namespace (where the daemons, and so the hooks, run) and
writes its name where KVM would,
``/var/run/ganeti/kvm-hypervisor/nic/<instance>/0`` (inside the daemons'
mount namespace ``/run/ganeti`` is the cluster's ``run`` directory).  The hook is installed for this cluster only, in its
``etc/hooks/instance-modify-post.d``, as a small wrapper that sets
``SNFD_PYTHON`` to this test's Python, runs the shipped script and keeps a
log of each run (the evidence that Ganeti ran it, and with what).

Needs root, Debian's ganeti package and ``nft``; skips otherwise, and when
``/etc/default/snfd-netnode`` exists on the host (the shipped script would
read it inside the cluster's namespaces too).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor, threads
from twisted.internet.task import deferLater
from twisted.trial import unittest

from snfd.testing.cloudnode import CloudNode, User
from snfd.testing.ganeti import RealGanetiCluster
from tests.integration.real_ganeti import rapi_get, start_node

REPO = Path(__file__).resolve().parents[2]
REFRESH = REPO / "share" / "ganeti" / "snfd-netnode-refresh"
SERVERS = "/compute/v2.0/servers"
NET = "/network/v2.0"
#: Seconds a real Ganeti job (create with a 1 GiB file disk, ...) may take.
JOB_WAIT = 180.0
#: Seconds from the API call to the tap's rules changing on the node.
HOOK_WAIT = 120.0
#: Ganeti's PATH for hooks (constants.HOOKS_PATH): nft must be on it.
HOOKS_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"
HOOK_NAME = "snfd-netnode-refresh"
PRIVATE_CIDR = "192.168.77.0/24"


def _host_unfit() -> str | None:
    """Why the hook could not run as on a real node here, or None."""
    if shutil.which("nft", path=HOOKS_PATH) is None:
        return "nft is not installed (apt-get install nftables): the hook needs it"
    if os.path.exists("/etc/default/snfd-netnode"):
        return ("/etc/default/snfd-netnode exists on this host: the shipped hook would take"
                " SNFD_PYTHON from it instead of this test's Python")
    if os.path.realpath("/var/run") != "/run":
        return ("/var/run is not /run here: the hook's /var/run/ganeti would not be the"
                " cluster's run directory")
    return None


def _hook_wrapper(log: Path) -> str:
    """The hook Ganeti runs: the shipped script with this test's Python,
    each run logged (environment summary, output, exit status) to ``log``."""
    return f"""#!/bin/sh
# Installed by {Path(__file__).name} for this test cluster only.
SNFD_PYTHON={sys.executable}
export SNFD_PYTHON
{{
  echo "run at $(date +%s.%N) phase=$GANETI_HOOKS_PHASE path=$GANETI_HOOKS_PATH"
  echo "  PATH=$PATH instance=$GANETI_POST_INSTANCE_NAME nics=$GANETI_POST_INSTANCE_NIC_COUNT"
  echo "  tags=$GANETI_POST_INSTANCE_TAGS"
}} >> {log}
out=$(sh {REFRESH} "$@" 2>&1)
rc=$?
[ -n "$out" ] && printf '  %s\\n' "$out" >> {log}
echo "  exit $rc" >> {log}
[ -n "$out" ] && printf '%s\\n' "$out" >&2
exit $rc
"""


class SecurityGroupsOnRealGanetiTests(unittest.TestCase):
    """A security-group rule reaches the tap's nftables rules on the node
    through Ganeti's real post-hook run."""

    timeout = 600
    cluster: RealGanetiCluster   # set by start_node
    node: CloudNode
    dsn: str

    async def setUp(self) -> None:
        reason = _host_unfit()
        if reason:
            raise unittest.SkipTest(reason)
        root = await start_node(
            self, "snfd-security-real-",
            "filtered_bridge = gntbr0\ndefault_bridge = gntbr0\nnic_hotplug = no\n",
            "/network/v2.0/networks")
        cluster = self.cluster
        self.netns = f"gnt{cluster.number}"
        self.hook_log = cluster.base / "snfd-netnode-refresh.log"
        hooks = cluster.base / "etc" / "hooks" / "instance-modify-post.d"
        hooks.mkdir(parents=True, exist_ok=True)
        self.hook = hooks / HOOK_NAME
        self.hook.write_text(_hook_wrapper(self.hook_log))
        self.hook.chmod(0o755)
        await threads.deferToThread(self.provision, root)

    def provision(self, root: Path) -> None:
        """The operator's part: the backend, a flavor, an image and a user."""
        node, cluster = self.node, self.cluster
        node.manage("backend-add", cluster.name, "--url", cluster.url, "--username",
                    cluster.username, "--password", cluster.password, "--certificate",
                    str(root / "rapi.pem"), "--events", "watch", "--json")
        flavors = json.loads(node.manage("flavor-create", "--cpu", "1", "--ram", "128",
                                         "--disk", "1", "--disk-template", "file", "--json"))
        self.flavor_id = flavors[0]["id"]
        image_file = root / "tiny.img"
        image_file.write_bytes(b"\0" * 4096)
        image = json.loads(node.manage("image-register", str(image_file), "--name", "Test",
                                       "--property", "OS=debian", "--json"))
        self.image_id = image["id"]
        self.alice = node.add_user("alice@example.org", "Alice")

    # -- helpers (blocking ones run in threads) ------------------------------------

    def api(self, user: User, method: str, path: str, body: Any = None,
            expect: int | None = None) -> Any:
        status, answer = self.node.api(method, path, user.token, body)
        if expect is not None and status != expect:
            raise AssertionError(f"{method} {path} {body}: {status} {answer}\n"
                                 f"--- node log:\n{self.node.tail(60)}")
        return answer

    def rapi(self, path: str) -> tuple[int, Any]:
        """A GET on the cluster's RAPI: status and the parsed answer."""
        return rapi_get(self.cluster, path)

    def instance_tags(self, name: str) -> list[str]:
        status, found = self.rapi(f"/2/instances/{name}")
        self.assertEqual(status, 200, found)
        return list(found["tags"])

    def netns_run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``argv`` in the cluster's network namespace."""
        done = subprocess.run(["ip", "netns", "exec", self.netns, *argv], capture_output=True,
                              text=True, timeout=30, check=False, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} in {self.netns} exited"
                                 f" {done.returncode}: {done.stderr or done.stdout}")
        return done

    def tap_table(self, tap: str) -> str | None:
        """``nft list table bridge snf-<tap>`` in the cluster's namespace, or
        None while there is no such table."""
        done = self.netns_run("nft", "list", "table", "bridge", f"snf-{tap}", check=False)
        return done.stdout if done.returncode == 0 else None

    def hook_runs(self) -> str:
        try:
            return self.hook_log.read_text()
        except FileNotFoundError:
            return ""

    async def diagnosis(self) -> str:
        """The cluster's recent jobs (with their warnings), the hook's log
        and the node's log tail, for a failure message."""
        jobs = await self.cluster.gx("gnt-job", "list", "--no-headers", "-o",
                                     "id,status,summary", check=False)
        ids = [line.split()[0] for line in jobs.splitlines() if line.split()][-4:]
        info = await self.cluster.gx("gnt-job", "info", *ids, check=False) if ids else ""
        return (f"--- gnt-job list:\n{jobs}\n--- gnt-job info {' '.join(ids)}:\n{info}\n"
                f"--- hook log:\n{self.hook_runs() or '(the hook never ran)'}\n"
                f"--- node log:\n{self.node.tail(60)}")

    async def poll(self, what: str, probe: Callable[[], Any], seconds: float) -> Any:
        """Call the blocking ``probe`` in a thread until it returns
        something true (that value); on timeout fail with the diagnosis."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = await threads.deferToThread(probe)
            if found:
                return found
            await deferLater(reactor, 0.5, lambda: None)
        self.fail(f"timed out after {seconds:.0f}s waiting for {what}\n"
                  f"{await self.diagnosis()}")

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await threads.deferToThread(fn, *args)

    def server_status(self, sid: int) -> str | None:
        status, shown = self.node.api("GET", f"{SERVERS}/{sid}", self.alice.token)
        if status == 404:
            return "GONE"
        if status != 200:
            return None
        server = shown["server"]
        if server["status"] == "ERROR":
            raise AssertionError(f"server {sid} went to ERROR: {server}")
        return None if server["SNF:task_state"] else str(server["status"])

    # -- the scenario ----------------------------------------------------------------

    async def test_rule_reaches_the_taps_nftables_through_the_ganeti_hook(self):
        """An ingress TCP 22 rule added to the project's default group
        becomes the instance tag ``snf:sg:snf-nic-<port>:in4:tcp:22:0.0.0.0/0``
        and, through the no-op modify's post hook that Ganeti runs, a
        ``tcp dport 22 accept`` in the tap's ``bridge snf-<tap>`` table;
        deleting the rule takes the tag and the nft rule away again (the
        table is replaced, not removed: the NIC keeps its other rules)."""
        alice, call = self.alice, self.call

        # A private network and a server on it.
        net = (await call(self.api, alice, "POST", f"{NET}/networks", {"network": {
            "name": "private"}}, 201))["network"]
        self.assertEqual(net["type"], "MAC_FILTERED", net)
        await call(self.api, alice, "POST", f"{NET}/subnets", {"subnet": {
            "network_id": net["id"], "cidr": PRIVATE_CIDR, "ip_version": 4}}, 201)
        made = await call(self.api, alice, "POST", SERVERS, {"server": {
            "name": "vm-sg", "imageRef": self.image_id, "flavorRef": self.flavor_id,
            "networks": [{"uuid": net["id"]}]}}, 202)
        sid = int(made["server"]["id"])
        instance = f"snf-{sid}"
        await self.poll(f"server {sid} ACTIVE",
                        lambda: self.server_status(sid) == "ACTIVE", JOB_WAIT)
        (port,) = (await call(self.api, alice, "GET", f"{NET}/ports?device_id={sid}",
                              None, 200))["ports"]
        groups = (await call(self.api, alice, "GET", f"{NET}/security-groups?name=default",
                             None, 200))["security_groups"]
        self.assertEqual(len(groups), 1, groups)
        default = groups[0]
        self.assertEqual((port["port_security_enabled"], port["security_groups"]),
                         (True, [default["id"]]), port)
        nic = f"snf-nic-{port['id']}"
        tag = f"snf:sg:{nic}:in4:tcp:22:0.0.0.0/0"
        tags = await call(self.instance_tags, instance)
        self.assertIn(f"snf:sg:{nic}:on", tags)
        self.assertNotIn(tag, tags)

        # KVM's part, which the fake hypervisor does not play: the NIC's tap
        # (a persistent one, on the bridge as ifup leaves it).
        tap = f"snfsg{os.getpid() % 1000}"
        await call(self.netns_run, "ip", "tuntap", "add", "dev", tap, "mode", "tap")
        self.addCleanup(self.netns_run, "ip", "link", "del", tap, check=False)
        await call(self.netns_run, "ip", "link", "set", "dev", tap, "master", "gntbr0")
        nic_dir = self.cluster.base / "run" / "kvm-hypervisor" / "nic" / instance
        nic_dir.mkdir(parents=True)
        (nic_dir / "0").write_text(tap)
        seen = await self.cluster.gx("cat", f"/var/run/ganeti/kvm-hypervisor/nic/{instance}/0")
        self.assertEqual(seen, tap)   # the hook finds it where KVM would write it
        self.assertIsNone(await call(self.tap_table, tap))
        self.assertEqual(await call(self.hook_runs), "")

        # The rule, through the API: tags, the no-op modify, its post hook.
        rule = (await call(self.api, alice, "POST", f"{NET}/security-group-rules", {
            "security_group_rule": {
                "security_group_id": default["id"], "direction": "ingress",
                "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}},
            201))["security_group_rule"]
        table = await self.poll(f"tcp dport 22 in table bridge snf-{tap}",
                                lambda: (t := self.tap_table(tap)) and "tcp dport 22" in t
                                and t, HOOK_WAIT)
        self.assertIn(tag, await call(self.instance_tags, instance))
        self.assertIn('oifname "' + tap + '" jump sg-to-vm', table)
        self.assertIn("ip saddr 0.0.0.0/0 tcp dport 22 accept", table)
        # MAC filtering of the private network came from the hook's NIC environment.
        self.assertIn(f'iifname "{tap}" ether saddr != {port["mac_address"]} drop', table)
        runs = await call(self.hook_runs)
        self.assertIn(f"instance={instance} nics=1", runs)
        self.assertIn(f"PATH={HOOKS_PATH} ", runs)
        self.assertIn(tag, runs)
        self.assertIn("exit 0", runs)
        self.assertNotIn("exit 1", runs)
        self.assertNotIn("exit 2", runs)

        # The rule goes: the tag goes and the hook runs again without it.
        runs_before = runs.count("run at ")
        await call(self.api, alice, "DELETE", f"{NET}/security-group-rules/{rule['id']}",
                   None, 204)
        table = await self.poll(
            f"tcp dport 22 gone from table bridge snf-{tap}",
            lambda: (t := self.tap_table(tap)) and "tcp dport 22" not in t and t, HOOK_WAIT)
        self.assertIn("jump sg-to-vm", table)
        self.assertNotIn("tcp sport 22", table)   # the rule's stateless mirror went too
        self.assertNotIn(tag, await call(self.instance_tags, instance))
        runs = await call(self.hook_runs)
        self.assertGreater(runs.count("run at "), runs_before, runs)
        self.assertNotIn("exit 1", runs)
        self.assertNotIn("exit 2", runs)

        # The server goes.
        await call(self.api, alice, "DELETE", f"{SERVERS}/{sid}", None, 204)
        await self.poll(f"server {sid} deleted",
                        lambda: self.server_status(sid) in ("GONE", "DELETED"), JOB_WAIT)
