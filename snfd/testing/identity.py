"""Test databases for the identity service."""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from snfd import errors
from snfd.db.migrations import NODE_SCHEMA
from snfd.interfaces import IAuthenticator
from snfd.plugins.identity import plugin
from snfd.testing.postgres import fresh_database
from snfd.web.auth import Principal


def identity_database(testcase: Any) -> str:
    """A fresh database with the node's and the identity service's schemas."""
    return fresh_database(testcase, [NODE_SCHEMA, plugin.schema])


@implementer(IAuthenticator)
class StubAuthenticator:
    """An ``IAuthenticator`` for tests of a service's API alone: the tokens
    in ``tokens`` map to their principals, any other is refused."""

    def __init__(self) -> None:
        self.tokens: dict[str, Principal] = {}

    async def authenticate(self, token: str) -> Principal:
        try:
            return self.tokens[token]
        except KeyError:
            raise errors.Unauthorized("Invalid token") from None
