"""The fault-injection harness (``bench/faults.py``) as a test: its
invariants, not its timings.

Two faults of its table, with shorter windows, on the same cloud the
benchmark builds (two nodes on a private PostgreSQL and RabbitMQ, a
shared block store, the simulated Ganeti behind a proxy): the leader
node SIGKILLed under load, and PostgreSQL's postmaster SIGKILLed under
load.  The test passes when the harness exits 0: every acknowledged
object reads back byte-identical, no partial object is visible, quota
usage equals what is stored and running, no server is left in a
transitional state and no commission is left pending.  The harness's
table is printed either way (``test.log``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from twisted.internet import threads
from twisted.trial import unittest

from snfd.testing.rabbitmq import PrivateRabbit

HARNESS = Path(__file__).resolve().parents[2] / "bench" / "faults.py"


class FaultsUnderLoadTests(unittest.TestCase):
    timeout = 900

    def setUp(self):
        PrivateRabbit()  # SkipTest when RabbitMQ is not installed

    async def test_invariants_hold(self):
        proc = await threads.deferToThread(
            subprocess.run,
            [sys.executable, str(HARNESS), "--only", "leader-kill,pg-kill", "--before", "3",
             "--after", "3", "--down", "3"],
            capture_output=True, text=True, timeout=840, check=False)
        print(proc.stdout)
        self.assertEqual(proc.returncode, 0, f"{proc.stdout}\n{proc.stderr[-6000:]}")
        self.assertIn("| leader-kill |", proc.stdout)
        self.assertIn("| pg-kill |", proc.stdout)

