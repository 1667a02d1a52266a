"""Password hashing in its own thread pool: the pool ends with the reactor."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from twisted.internet import threads
from twisted.trial import unittest

_PROGRAM = textwrap.dedent("""
    from twisted.internet import defer, reactor
    from snfd.identity.passwords import Passwords

    passwords = Passwords(reactor, threads=2)

    async def use():
        encoded = await passwords.hash("a long password")
        assert await passwords.verify(encoded, "a long password")
        reactor.stop()

    defer.ensureDeferred(use())
    reactor.run()
    print("exited")
""")


class PasswordPoolTests(unittest.TestCase):
    async def test_process_exits_after_hashing(self):
        """A process that hashed a password exits when its reactor stops:
        the hashing threads are stopped at shutdown (the shutdown trigger
        does not fail on its own removal and leave them running)."""
        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-c", _PROGRAM], capture_output=True,
                                  text=True, timeout=120)
        try:
            done = await threads.deferToThread(run)
        except subprocess.TimeoutExpired:
            self.fail("the process did not exit after its reactor stopped")
        self.assertEqual((done.returncode, done.stdout.strip()), (0, "exited"), done.stderr)
