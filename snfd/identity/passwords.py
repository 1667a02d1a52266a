"""Local passwords: argon2id hashes, computed off the reactor thread in
a bounded thread pool of their own.

Each argon2 operation takes 64 MiB and a core for tens of milliseconds;
in the reactor's shared pool a burst of logins would starve the block I/O
that runs there, so hashing gets its own pool (``[identity]
password_threads`` threads, default: the cores, at most 8), started on
first use and stopped with ``stop()`` or at reactor shutdown.

Verification of an unknown account still runs one argon2 verification
against a fixed dummy hash, so the time a login takes does not tell
whether the account exists.
"""

from __future__ import annotations

import os
from typing import Any

import argon2
from twisted.internet import threads
from twisted.python.threadpool import ThreadPool

MIN_LENGTH = 8
MAX_LENGTH = 1024


class PasswordRule(ValueError):
    """A new password is unacceptable; ``str()`` says why."""


def check_new(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise PasswordRule(f"A password needs at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise PasswordRule(f"A password may have at most {MAX_LENGTH} characters.")


def default_threads() -> int:
    """The hashing threads when none are configured: the cores, at most 8
    (each argon2 operation holds 64 MiB)."""
    return max(1, min(8, os.cpu_count() or 1))


class Passwords:
    """argon2id with argon2-cffi's default (RFC 9106 low-memory) parameters."""

    def __init__(self, reactor: Any, hasher: argon2.PasswordHasher | None = None,
                 threads: int = 0):
        """Hashes and verifies in a pool of ``threads`` threads (0: the
        default, ``default_threads()``) whose results ``reactor`` receives."""
        self._reactor = reactor
        self._hasher = hasher or argon2.PasswordHasher()
        self._dummy = self._hasher.hash("snfd dummy password for unknown accounts")
        self.threads = threads if threads > 0 else default_threads()
        self._pool = ThreadPool(minthreads=0, maxthreads=self.threads,
                                name="snfd-passwords")
        self._shutdown: Any = None

    def stop(self) -> None:
        """Stop the hashing threads (waits for the running ones); a later
        use starts them again."""
        handle, self._shutdown = self._shutdown, None
        if handle is None:
            return
        self._reactor.removeSystemEventTrigger(handle)
        self._pool.stop()

    def _at_shutdown(self) -> None:
        # The reactor already took this trigger off its list: only stop.
        if self._shutdown is not None:
            self._shutdown = None
            self._pool.stop()

    async def hash(self, password: str) -> str:
        check_new(password)
        return await self._in_thread(self._hasher.hash, password)

    async def verify(self, encoded: str | None, password: str) -> bool:
        """``True`` when ``password`` matches ``encoded`` (``None``: no
        password; always ``False``, after the same amount of work)."""
        if len(password) > MAX_LENGTH:
            return False
        return bool(await self._in_thread(self._verify, encoded, password))

    def _verify(self, encoded: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(encoded or self._dummy, password) and encoded is not None
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        if self._shutdown is None:
            self._pool = ThreadPool(minthreads=0, maxthreads=self.threads,
                                    name="snfd-passwords")
            self._pool.start()
            self._shutdown = self._reactor.addSystemEventTrigger(
                "during", "shutdown", self._at_shutdown)
        return await threads.deferToThreadPool(self._reactor, self._pool, fn, *args)
