"""Local passwords: argon2id hashes, computed off the reactor thread.

Verification of an unknown account still runs one argon2 verification
against a fixed dummy hash, so the time a login takes does not tell
whether the account exists.
"""

from __future__ import annotations

from typing import Any

import argon2
from twisted.internet import threads

MIN_LENGTH = 8
MAX_LENGTH = 1024


class PasswordRule(ValueError):
    """A new password is unacceptable; ``str()`` says why."""


def check_new(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise PasswordRule(f"A password needs at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise PasswordRule(f"A password may have at most {MAX_LENGTH} characters.")


class Passwords:
    """argon2id with argon2-cffi's default (RFC 9106 low-memory) parameters."""

    def __init__(self, reactor: Any, hasher: argon2.PasswordHasher | None = None):
        """Hashes and verifies in ``reactor``'s thread pool."""
        self._reactor = reactor
        self._hasher = hasher or argon2.PasswordHasher()
        self._dummy = self._hasher.hash("snfd dummy password for unknown accounts")

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
        return await threads.deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), fn, *args)
