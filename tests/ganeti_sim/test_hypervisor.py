"""The simulated cluster's hypervisor (``[ganeti-sim] hypervisor``): Ganeti's
``fake`` by default, or ``kvm`` as a production cluster, with hotplug of
disks and NICs of running instances as Ganeti 3.0 does it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer
from twisted.trial import unittest
from zope.interface import implementer

from snfd import config as cfg
from snfd.bus.local import LocalBus
from snfd.config import ConfigError
from snfd.ganeti_sim import SimulatedCluster
from snfd.ganeti_sim.model import HYPERVISORS
from snfd.ganeti_sim.service import from_config
from snfd.httpclient import HTTPClientPool
from snfd.interfaces import IComputeBackends
from snfd.metrics import Metrics
from snfd.plugins import ganeti_sim as plugin
from tests.ganeti_sim.support import call, client, create_body, reactor, run, started

NODE = "node1.sim.ganeti.test"
TWO_DISKS = [{"size": 2048, "name": "root"}, {"size": 1024, "name": "data"}]
TRYING = " - INFO: Trying to hotplug device..."
DONE = " - INFO: Hotplug done."
FAKE_REFUSAL = ("Hotplug is not possible: Hotplug is not supported: Hotplug is not supported"
                " by this hypervisor: Hotplug is not supported: Hotplug is not supported by"
                " this hypervisor")


def messages(job: dict[str, Any]) -> list[str]:
    return [entry[3] for entry in job["oplog"][0]]


async def instance(rapi: Any, name: str) -> dict[str, Any]:
    status, body = await call(rapi, "GET", f"/2/instances/{name}")
    assert status == 200, (status, body)
    return body


async def hypervisor_of(rapi: Any, name: str) -> str:
    job = await run(rapi, "GET", f"/2/instances/{name}/info?static=1")
    return str(job["opresult"][0][name]["hypervisor"])


class ClusterInfoTests(unittest.TestCase):
    async def test_default_is_fake(self) -> None:
        """Without a hypervisor the cluster is Ganeti's fake one, as
        before: its info, and new instances created with ``fake``."""
        rapi = client(self, await started(self))
        status, info = await call(rapi, "GET", "/2/info")
        self.assertEqual(status, 200)
        self.assertEqual((info["default_hypervisor"], info["enabled_hypervisors"],
                          info["hvparams"]),
                         ("fake", ["fake"], {"fake": {"migration_mode": "live"}}))
        job = await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        self.assertEqual((job["status"], job["ops"][0]["hypervisor"]), ("success", "fake"))
        self.assertEqual(await hypervisor_of(rapi, "snf-1"), "fake")

    async def test_kvm(self) -> None:
        """A KVM cluster reports kvm as its default and only hypervisor,
        with KVM's default hvparams (Ganeti 3.0: migration_mode live)."""
        rapi = client(self, await started(self, hypervisor="kvm"))
        status, info = await call(rapi, "GET", "/2/info")
        self.assertEqual(status, 200)
        self.assertEqual((info["default_hypervisor"], info["enabled_hypervisors"],
                          info["hvparams"]),
                         ("kvm", ["kvm"], {"kvm": {"migration_mode": "live"}}))

    def test_unknown_hypervisor(self) -> None:
        """The simulator presents fake or kvm only."""
        self.assertEqual(HYPERVISORS, ("fake", "kvm"))
        e = self.assertRaises(ValueError, SimulatedCluster, reactor(), Path(self.mktemp()),
                              hypervisor="xen-pvm")
        self.assertIn("xen-pvm", str(e))


class CreateTests(unittest.TestCase):
    async def test_kvm_instances(self) -> None:
        """On KVM, a create that names no hypervisor makes a kvm instance
        (written back into the op); naming kvm works too, and KVM's
        parameters (boot_order...) are accepted."""
        rapi = client(self, await started(self, hypervisor="kvm"))
        job = await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        self.assertEqual((job["status"], job["ops"][0]["hypervisor"]), ("success", "kvm"))
        self.assertEqual(await hypervisor_of(rapi, "snf-1"), "kvm")
        job = await run(rapi, "POST", "/2/instances", create_body(
            "snf-2", hypervisor="kvm", hvparams={"serial_console": False}))
        self.assertEqual(job["status"], "success")
        self.assertEqual((await instance(rapi, "snf-2"))["custom_hvparams"],
                         {"serial_console": False})
        job = await run(rapi, "PUT", "/2/instances/snf-2/modify",
                        {"hvparams": {"boot_order": "cdrom", "cdrom_image_path": "/x.iso"}})
        self.assertEqual(job["opresult"], [[["hv/boot_order", "cdrom"],
                                            ["hv/cdrom_image_path", "/x.iso"]]])

    async def test_hypervisor_not_enabled(self) -> None:
        """A create naming a hypervisor the cluster has not enabled fails
        in its job, as LUInstanceCreate refuses it (wrong_state); one that
        is no Ganeti hypervisor at all fails validation at submission."""
        for enabled, other in (("kvm", "fake"), ("fake", "kvm")):
            rapi = client(self, await started(self, hypervisor=enabled))
            job = await run(rapi, "POST", "/2/instances",
                            create_body("snf-1", hypervisor=other))
            self.assertEqual(job["opresult"], [["OpPrereqError", [
                f"Selected hypervisor ({other}) not enabled in the cluster ({enabled})",
                "wrong_state"]]])
            self.assertEqual(await call(rapi, "GET", "/2/instances"), (200, []))
        status, body = await call(rapi, "POST", "/2/instances",
                                  create_body("snf-1", hypervisor="vmware"))
        self.assertEqual(status, 400)
        self.assertIn("OP_INSTANCE_CREATE.hypervisor&#x27; fails validation",
                      body["message"])

    async def test_fake_keeps_its_parameters(self) -> None:
        """The fake hypervisor declares migration_mode only: a KVM
        parameter on a fake cluster is unknown, as before."""
        rapi = client(self, await started(self))
        job = await run(rapi, "POST", "/2/instances",
                        create_body("snf-1", hvparams={"boot_order": "disk"}))
        self.assertEqual(job["opresult"], [["TypeEnforcementError",
                                            ["Unknown parameter 'boot_order'"]]])


class KvmHotplugTests(unittest.TestCase):
    async def test_disk_hot_add_and_remove(self) -> None:
        """A KVM cluster hot-plugs a disk into a running instance and
        hot-removes it: each change is followed by ``hotplug:done`` in the
        result and Ganeti's two log messages."""
        rapi = client(self, await started(self, hypervisor="kvm"))
        await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        job = await run(rapi, "PUT", "/2/instances/snf-1/modify",
                        {"disks": [["add", -1, {"size": 1024, "name": "extra"}]],
                         "hotplug": True})
        self.assertEqual(job["status"], "success")
        self.assertEqual(job["opresult"], [[["disk/1", "add:size=1024,mode=rw"],
                                            ["disk/1", "hotplug:done"]]])
        self.assertEqual(messages(job), [TRYING, DONE])
        self.assertEqual((await instance(rapi, "snf-1"))["disk.sizes"], [2048, 1024])

        job = await run(rapi, "PUT", "/2/instances/snf-1/modify",
                        {"disks": [["remove", "extra", {}]], "hotplug": True})
        self.assertEqual(job["status"], "success")
        self.assertEqual(job["opresult"], [[["disk/1", "remove"], ["disk/1", "hotplug:done"]]])
        self.assertEqual(messages(job), [TRYING, DONE])
        inst = await instance(rapi, "snf-1")
        self.assertEqual((inst["disk.sizes"], inst["status"]), ([2048], "running"))

    async def test_nic_hot_add_modify_and_remove(self) -> None:
        """NICs too: ``nic.N``, ``nic/N`` and ``NIC/N`` entries are each
        followed by their ``hotplug:done``."""
        rapi = client(self, await started(self, hypervisor="kvm"))
        await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        job = await run(rapi, "PUT", "/2/instances/snf-1/modify",
                        {"nics": [["add", {"name": "n2", "ip": "10.0.0.7"}]],
                         "hotplug": True})
        mac = (await instance(rapi, "snf-1"))["nic.macs"][1]
        self.assertEqual(job["opresult"], [[
            ["nic.1", f"add:mac={mac},ip=10.0.0.7,mode=bridged,link=gntbr0,network=None"],
            ["nic.1", "hotplug:done"]]])
        self.assertEqual(messages(job), [TRYING, DONE])
        job = await run(rapi, "PUT", "/2/instances/snf-1/modify",
                        {"nics": [["modify", "n2", {"ip": "10.0.0.9"}]], "hotplug": True})
        self.assertEqual(job["opresult"], [[["nic.ip/1", "10.0.0.9"], ["nic.link/1", "gntbr0"],
                                            ["nic.mode/1", "bridged"], ["nic.vlan/1", ""],
                                            ["nic/1", "hotplug:done"]]])
        job = await run(rapi, "PUT", "/2/instances/snf-1/modify",
                        {"nics": [["remove", "n2", {}]], "hotplug": True})
        self.assertEqual(job["opresult"], [[["NIC/1", "remove"], ["NIC/1", "hotplug:done"]]])
        self.assertEqual((await instance(rapi, "snf-1"))["nic.ips"], ["10.0.0.5"])

    async def test_hotplug_if_possible(self) -> None:
        """``hotplug_if_possible`` on a running KVM instance hot-plugs
        (the op's ``hotplug`` becomes true), so a disk may leave it."""
        rapi = client(self, await started(self, hypervisor="kvm"))
        await run(rapi, "POST", "/2/instances", create_body("snf-1", disks=TWO_DISKS))
        job = await run(rapi, "PUT", "/2/instances/snf-1/modify",
                        {"disks": [["remove", "data", {}]], "hotplug_if_possible": True})
        self.assertEqual(job["status"], "success")
        self.assertEqual(job["ops"][0]["hotplug"], True)
        self.assertEqual(job["opresult"], [[["disk/1", "remove"], ["disk/1", "hotplug:done"]]])

    async def test_stopped_instance(self) -> None:
        """A stopped KVM instance cannot hot-plug: ``hotplug`` fails
        (wrong_state), ``hotplug_if_possible`` warns and changes the
        configuration only."""
        rapi = client(self, await started(self, hypervisor="kvm"))
        await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        await run(rapi, "PUT", "/2/instances/snf-1/shutdown")
        change = {"disks": [["add", -1, {"size": 1024}]]}
        job = await run(rapi, "PUT", "/2/instances/snf-1/modify", {**change, "hotplug": True})
        failure = "Hotplug is not supported: Instance is probably down"
        self.assertEqual(job["opresult"], [["OpPrereqError", [
            f"Hotplug is not possible: {failure}: {failure}", "wrong_state"]]])
        job = await run(rapi, "PUT", "/2/instances/snf-1/modify",
                        {**change, "hotplug_if_possible": True})
        self.assertEqual(job["status"], "success")
        self.assertEqual(messages(job), [f" - WARNING: {failure}", " - INFO: Modification"
                                         " will take place without hotplugging."])
        self.assertEqual(job["opresult"], [[["disk/1", "add:size=1024,mode=rw"]]])

    async def test_dry_run(self) -> None:
        """A dry-run disk change hot-plugs nothing."""
        rapi = client(self, await started(self, hypervisor="kvm"))
        await run(rapi, "POST", "/2/instances", create_body("snf-1", disks=TWO_DISKS))
        job = await run(rapi, "PUT", "/2/instances/snf-1/modify",
                        {"disks": [["remove", "data", {}]], "hotplug": True,
                         "dry_run": True})
        self.assertEqual((job["status"], job["opresult"]), ("success", [None]))
        self.assertNotIn(TRYING, messages(job))
        self.assertEqual((await instance(rapi, "snf-1"))["disk.sizes"], [2048, 1024])


class FakeHotplugTests(unittest.TestCase):
    async def test_fake_refuses_hotplug(self) -> None:
        """The fake hypervisor cannot hot-plug: a modify with ``hotplug``
        fails before it changes anything, with Ganeti 3.0's text (its own,
        then the node's answer, twice) and wrong_state."""
        rapi = client(self, await started(self))
        await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        for change in ({"disks": [["add", -1, {"size": 1024}]]},
                       {"disks": [["remove", 0, {}]]},
                       {"nics": [["add", {"name": "n2"}]]}):
            job = await run(rapi, "PUT", "/2/instances/snf-1/modify",
                            {**change, "hotplug": True})
            self.assertEqual(job["opresult"], [["OpPrereqError",
                                                [FAKE_REFUSAL, "wrong_state"]]])
        inst = await instance(rapi, "snf-1")
        self.assertEqual((inst["disk.sizes"], len(inst["nic.macs"])), ([2048], 1))

    async def test_hotplug_if_possible_falls_back(self) -> None:
        """``hotplug_if_possible`` on fake warns and changes without
        hotplug: a disk is added; a disk of a running instance still
        cannot be removed."""
        rapi = client(self, await started(self))
        await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        job = await run(rapi, "PUT", "/2/instances/snf-1/modify",
                        {"disks": [["add", -1, {"size": 1024, "name": "extra"}]],
                         "hotplug_if_possible": True})
        self.assertEqual(job["status"], "success")
        self.assertEqual(messages(job), [
            " - WARNING: Hotplug is not supported: Hotplug is not supported by this"
            " hypervisor", " - INFO: Modification will take place without hotplugging."])
        self.assertEqual(job["opresult"], [[["disk/1", "add:size=1024,mode=rw"]]])
        self.assertEqual(job["ops"][0]["hotplug"], False)
        job = await run(rapi, "PUT", "/2/instances/snf-1/modify",
                        {"disks": [["remove", "extra", {}]], "hotplug_if_possible": True})
        self.assertEqual(job["status"], "error")
        self.assertIn("without using hotplug", str(job["opresult"]))


class ConfigTests(unittest.TestCase):
    def load(self, body: str) -> Any:
        path = Path(self.mktemp())
        path.write_text(body)
        keys = {plugin.plugin.name: plugin.plugin.config_keys}
        return cfg.load_config(str(path), keys, environ={})

    def test_hypervisor_key(self) -> None:
        """``[ganeti-sim] hypervisor`` is fake by default, or kvm."""
        self.assertEqual(self.load("[ganeti-sim]\n")["ganeti-sim"].hypervisor, "fake")
        self.assertEqual(self.load("[ganeti-sim]\nhypervisor = KVM\n")["ganeti-sim"]
                         .hypervisor, "kvm")
        self.assertEqual(plugin._HYPERVISORS, HYPERVISORS)

    def test_bad_hypervisor(self) -> None:
        """Another value is one line naming the key."""
        e = self.assertRaises(ConfigError, self.load, "[ganeti-sim]\nhypervisor = xen\n")
        self.assertIn("[ganeti-sim] hypervisor: expected one of fake, kvm, got 'xen'", str(e))
        self.assertNotIn("\n", str(e))


@implementer(IComputeBackends)
class _Backends:
    def __init__(self) -> None:
        self.registered: list[tuple[Any, ...]] = []

    async def register_backend(self, *args: Any) -> None:
        self.registered.append(args)

    async def seed_demo(self) -> None:
        pass


@attrs.define
class _Node:
    reactor: Any
    state_dir: Path
    bus: Any
    http: Any


class RegistrationTests(unittest.TestCase):
    async def registered(self, hypervisor: str) -> tuple[Any, ...]:
        metrics = Metrics()
        bus = LocalBus(reactor(), metrics)
        bus.start()
        self.addCleanup(lambda: defer.ensureDeferred(bus.stop()))
        pool = HTTPClientPool(reactor(), metrics)
        self.addCleanup(lambda: defer.ensureDeferred(pool.close()))
        node = _Node(reactor(), Path(self.mktemp()), bus, pool)
        keys = plugin.plugin.config_keys
        section = cfg.Section("ganeti-sim", {
            **{k.name: k.default for k in keys}, "hypervisor": hypervisor, "demo": False})
        backends = _Backends()
        service = from_config(node, section, {IComputeBackends: backends})  # type: ignore[arg-type]
        service.startService()
        self.addCleanup(service.stopService)
        assert service._starting is not None
        await service._starting
        self.assertEqual(len(backends.registered), 1)
        return backends.registered[0]

    async def test_registers_its_hypervisor(self) -> None:
        """The cluster is registered with the compute service with the
        configured hypervisor (fake by default)."""
        self.assertEqual((await self.registered("kvm"))[5], "kvm")
        self.assertEqual((await self.registered("fake"))[5], "fake")
