"""The simulator and real Ganeti answer the contract scenario alike.

``tests.ganeti.contract.run_scenario`` drives one instance through create,
shutdown, startup, reboot, modify beparams, a failing job, a job cancelled
while queued, an administrator's shutdown, refused migrations, failovers
and reinstall, an exclusion-tag refusal, reinstalls of a file instance,
and delete, then a network through its life (see
``tests.ganeti.contract``, whose docstring lists what real Ganeti did
there), and records what a
client observes (RAPI answers, the job files, the events built from them),
normalised.  ``expected.EXPECTED`` is that record taken from a real Ganeti
3.0.2 cluster.  ``ContractMixin`` holds the tests; ``SimContractTests`` runs
them on ``snfd.ganeti_sim`` and ``RealContractTests`` on a real cluster in a
network namespace (skipped where that is impossible: not root, no netns,
no ganeti package).  Both must equal ``EXPECTED``, hence each other.  The
scenario runs once per class; its tests compare one part each.

What real Ganeti 3.0.2 did that the reference notes did not say or that
surprised (all pinned by ``EXPECTED``):

- ``GET /2/jobs/<unknown>`` answers 200 with every field null EXCEPT
  ``id``, which echoes the id asked for.
- ``summary`` is a list, one ``"OPCODE(instance)"`` string per op.
- RAPI turns create's ``beparams.memory`` into ``maxmem``/``minmem`` in the
  opcode (``custom_beparams`` then has maxmem/minmem/vcpus, no memory).
- Modify answers ``opresult`` ``[[["be/vcpus", 2]]]``: the changed params.
- A job that fails its prerequisites (startup of an unknown instance:
  ``OpPrereqError``/``unknown_entity``) has op ``start_timestamp`` set but
  ``exec_timestamp`` null.
- A job cancelled while queued: op ``start``/``exec_timestamp`` null, job
  ``start_timestamp`` null, and its file has no ``livelock``/``process_id``.
- Only create writes op log entries here; shutdown, startup, reboot,
  modify and remove leave the log empty.
- Polling every 20 ms mostly sees queued -> running -> final; ``waiting``
  shows only sometimes, so only the order is pinned, not the sequence.
  In a job of several ops (a reinstall) the job status goes back from
  ``running`` to ``waiting`` as each op starts, so the order is pinned
  per op.
- An administrator's job carries reason ``gnt:client:gnt-instance``, a RAPI
  one ``gnt:library:rlib2:<resource>``; both then ``gnt:opcode:<op>``.
- An invalid modify param (``beparams {"bogus": 2}``) fails with
  ``TypeEnforcementError`` and a one-element args list (no ecode), so the
  failing step uses the unknown-instance startup instead.
- A fresh cluster already has job 1 (``OP_CLUSTER_POST_INIT``) in its queue.
- ``gnt-instance <op> --submit`` prints ``<id>: <instance>`` on stdout,
  ``gnt-debug delay --submit`` prints ``JobID: <id>`` on stderr.
- This machine (no systemd) has no ``/run/ganeti``; ganeti-up.sh makes it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.trial import unittest

from snfd.testing.ganeti import RealGanetiCluster, real_ganeti_unavailable
from tests.ganeti.contract import RealDriver, SimDriver, run_scenario
from tests.ganeti.expected import EXPECTED


def real_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class ContractMixin:
    """The contract tests; subclasses say how to run the scenario once."""

    #: (record, error) of this class's one run of the scenario.
    _outcome: tuple[dict[str, Any] | None, BaseException | None] | None = None

    async def run_scenario_once(self) -> dict[str, Any]:
        raise NotImplementedError

    async def recorded(self) -> dict[str, Any]:
        cls = type(self)
        if cls.__dict__.get("_outcome") is None:
            try:
                cls._outcome = (await self.run_scenario_once(), None)
            except Exception as e:
                cls._outcome = (None, e)
        record, error = cls._outcome  # type: ignore[misc]
        if error is not None:
            raise error
        assert record is not None
        return record

    async def test_jobs(self):
        """Each step's job ends in the same status, with the same fields,
        summary, opcodes, opstatus, opresult shape (error class + ecode),
        log shape and timestamp nulls, and each op's statuses seen by
        polling only move forward."""
        record = await self.recorded()
        self.assertEqual([s["step"] for s in record["steps"]],
                         [s["step"] for s in EXPECTED["steps"]])
        for got, want in zip(record["steps"], EXPECTED["steps"], strict=True):
            self.assertEqual(got["job"], want["job"], f"job of step {want['step']}")

    async def test_instance_states(self):
        """After each step the instance has the same status, admin_state and
        oper_state in ``GET /2/instances?bulk=1`` (absent after delete)."""
        record = await self.recorded()
        for got, want in zip(record["steps"], EXPECTED["steps"], strict=True):
            self.assertEqual(got["instance"], want["instance"],
                             f"instance after step {want['step']}")

    async def test_instance_fields(self):
        """A bulk instance has the same fields, and the same values (names,
        uuids, MACs and node aside) after create and after modify; the plain
        listing is [{id, uri}]."""
        record = await self.recorded()
        self.assertEqual(record["bulk_fields"], EXPECTED["bulk_fields"])
        self.assertEqual(record["after_create"], EXPECTED["after_create"])
        self.assertEqual(record["after_modify"], EXPECTED["after_modify"])
        self.assertEqual(record["listing"], EXPECTED["listing"])

    async def test_cancel(self):
        """A queued job cancels with [true, "Dequeued job N"]; cancelling a
        finished job answers [false, "Job N not found in queue"]."""
        record = await self.recorded()
        self.assertEqual(record["cancel"], EXPECTED["cancel"])
        self.assertEqual(record["cancel_finished"], EXPECTED["cancel_finished"])

    async def test_unknown_things(self):
        """An unknown job answers 200 with null fields (the id echoed), which
        the client reads as None; an unknown instance answers 404 with
        Ganeti's {code, message, explain} body."""
        record = await self.recorded()
        self.assertEqual(record["unknown_job"], EXPECTED["unknown_job"])
        self.assertEqual(record["missing_instance"], EXPECTED["missing_instance"])

    async def test_job_files(self):
        """Every ^job-\\d+$ file parses, none has a job-level status, no temp
        file is left behind, and each step's file has the same fields, op
        statuses, results, timestamp nulls, reason sources and inputs."""
        record = await self.recorded()
        self.assertEqual(record["queue"], EXPECTED["queue"])
        self.assertEqual(list(record["job_files"]), list(EXPECTED["job_files"]))
        for step, want in EXPECTED["job_files"].items():
            self.assertEqual(record["job_files"][step], want, f"job file of step {step}")

    async def test_networks(self):
        """Networks: the group list, the listings, a network's pool as it
        is created, used by an explicit and a pool address, freed by NIC
        and instance removal, a create that waits on the connect job, and
        the 404 of a removed network."""
        record = await self.recorded()
        for key in ("groups", "networks_before", "network_created", "networks_listing",
                    "networks_bulk_names", "depending_create_before", "network_instance",
                    "network_instance_two_nics", "network_in_use", "network_one_nic",
                    "network_unused", "networks_after", "missing_network"):
            self.assertEqual(record[key], EXPECTED[key], key)

    async def test_reinstall_and_placement(self):
        """The cluster tags after adding an exclusion prefix; a reinstall
        replaces the instance's OS parameters by those given (none given:
        none left); the reinstalled file instance's fields."""
        record = await self.recorded()
        for key in ("cluster_tags", "os_after_reinstall_running",
                    "os_after_reinstall_stopped", "file_instance"):
            self.assertEqual(record[key], EXPECTED[key], key)

    async def test_events(self):
        """``job_messages`` builds the same messages (routing key, type,
        operation, status, instance, job id, cluster, event time, result)
        from each step's final job file."""
        record = await self.recorded()
        if isinstance(record["events"], str):
            raise unittest.SkipTest(record["events"])
        self.assertEqual(record["events"], EXPECTED["events"])


class SimContractTests(ContractMixin, unittest.TestCase):
    """The contract on the simulator (``snfd.ganeti_sim.SimulatedCluster``)."""

    async def run_scenario_once(self) -> dict[str, Any]:
        try:
            from snfd.ganeti_sim import SimulatedCluster  # noqa: F401
        except ImportError as e:
            raise unittest.SkipTest(f"snfd.ganeti_sim is not importable: {e}") from None
        state_dir = Path(self.mktemp())
        state_dir.mkdir(parents=True)
        driver = SimDriver(real_reactor(), state_dir)
        await driver.start()
        try:
            return await run_scenario(real_reactor(), driver)
        finally:
            await driver.stop()


class RealContractTests(ContractMixin, unittest.TestCase):
    """The contract on a real Ganeti 3.0 cluster in netns ``gnt<N>``: brought
    up for the first test (about 6 s), torn down as soon as the scenario ends."""

    timeout = 900  # a fresh machine installs the ganeti package first

    async def run_scenario_once(self) -> dict[str, Any]:
        reason = await threads.deferToThread(real_ganeti_unavailable)
        if reason:
            raise unittest.SkipTest(reason)
        reactor = real_reactor()
        cluster = RealGanetiCluster(reactor)
        await threads.deferToThread(cluster.up)
        try:
            return await run_scenario(reactor, RealDriver(reactor, cluster))
        finally:
            await threads.deferToThread(cluster.down)


class RealGanetiFixtureTests(unittest.TestCase):
    """``snfd.testing.ganeti`` without bringing a cluster up."""

    def test_disabled_by_environment(self):
        """SNFD_TEST_REAL_GANETI=0 makes real_ganeti_unavailable give a reason."""
        self.patch(os, "environ", {**os.environ, "SNFD_TEST_REAL_GANETI": "0"})
        real_ganeti_unavailable.cache_clear()
        self.addCleanup(real_ganeti_unavailable.cache_clear)
        self.assertIn("SNFD_TEST_REAL_GANETI=0", real_ganeti_unavailable() or "")

    def test_names_follow_the_number(self):
        """A cluster numbered N is reached at 10.77.N.2:5080 and named
        cluster<N>.ganeti.test, its job queue under /srv/gnt<N>."""
        cluster = RealGanetiCluster(real_reactor(), number=42)
        self.assertEqual(cluster.url, "https://10.77.42.2:5080")
        self.assertEqual(cluster.name, "cluster42.ganeti.test")
        self.assertEqual(cluster.queue_dir, Path("/srv/gnt42/lib/queue"))
