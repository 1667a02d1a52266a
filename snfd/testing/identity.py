"""Test databases for the identity service."""

from __future__ import annotations

from typing import Any

from snfd.db.migrations import NODE_SCHEMA
from snfd.plugins.identity import plugin
from snfd.testing.postgres import fresh_database


def identity_database(testcase: Any) -> str:
    """A fresh database with the node's and the identity service's schemas."""
    return fresh_database(testcase, [NODE_SCHEMA, plugin.schema])
