"""Numbered SQL migrations, one series per component.

A component (the node core, each service plugin) ships a package directory
of files named ``NNNN_what.sql``, numbered from 0001 without gaps.  The
table ``schema_version`` records which ran.  Applying takes a transaction-
scoped advisory lock so that two nodes upgrading at once do not collide;
each file runs in its own transaction together with its ``schema_version``
row, so a failed migration leaves nothing half-applied.

These functions take a DB-API cursor (``txn``): they run both inside the
node's pool and from ``snf-manage`` on a plain connection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

import attrs

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Arbitrary but fixed: pg_advisory_xact_lock key serializing upgrades.
MIGRATION_LOCK = 0x736E6664_0001


class SchemaError(Exception):
    """The schema cannot be used as it is; ``str()`` is one operator line."""


@attrs.frozen
class Migration:
    component: str
    version: int
    name: str
    sql: str


@attrs.frozen
class Schema:
    """A component's migrations: the ``.sql`` files in package ``package``."""

    component: str
    package: str

    def migrations(self) -> list[Migration]:
        """The migrations in order; gaps or duplicate numbers are errors."""
        found = []
        for entry in resources.files(self.package).iterdir():
            m = _FILE.match(entry.name)
            if m:
                found.append(Migration(self.component, int(m.group(1)), m.group(2),
                                       entry.read_text(encoding="utf-8")))
        found.sort(key=lambda mig: mig.version)
        for expected, mig in enumerate(found, start=1):
            if mig.version != expected:
                raise SchemaError(
                    f"{self.package}: migration {expected:04d} is missing or"
                    f" duplicated (found {mig.version:04d}_{mig.name}.sql)")
        return found

    @property
    def latest(self) -> int:
        return len(self.migrations())


NODE_SCHEMA = Schema("node", "snfd.db.schema")


def ensure_version_table_txn(txn: Any) -> None:
    txn.execute(
        """CREATE TABLE IF NOT EXISTS schema_version (
               component text NOT NULL,
               version integer NOT NULL,
               name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now(),
               PRIMARY KEY (component, version))""")


def applied_txn(txn: Any) -> dict[str, int]:
    """The highest applied version of every component (none: empty)."""
    txn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    if not txn.fetchone()[0]:
        return {}
    txn.execute("SELECT component, max(version) FROM schema_version GROUP BY component")
    return {component: version for component, version in txn.fetchall()}


def pending_txn(txn: Any, schemas: Iterable[Schema]) -> list[Migration]:
    """The migrations not yet applied, in the order they must run."""
    applied = applied_txn(txn)
    todo: list[Migration] = []
    for schema in schemas:
        have = applied.get(schema.component, 0)
        todo.extend(m for m in schema.migrations() if m.version > have)
    return todo


def apply_txn(txn: Any, migration: Migration) -> bool:
    """Apply one migration unless another process did; True if applied."""
    txn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
    ensure_version_table_txn(txn)
    txn.execute(
        "SELECT 1 FROM schema_version WHERE component = %s AND version = %s",
        (migration.component, migration.version))
    if txn.fetchone():
        return False
    txn.execute(migration.sql)
    txn.execute(
        "INSERT INTO schema_version (component, version, name) VALUES (%s, %s, %s)",
        (migration.component, migration.version, migration.name))
    return True


def outdated_message(pending: Sequence[Migration]) -> str:
    """One line telling an operator what is missing and what to run."""
    parts: dict[str, list[int]] = {}
    for m in pending:
        parts.setdefault(m.component, []).append(m.version)
    what = ", ".join(
        f"{c} at version {min(v) - 1} (needs {max(v)})" for c, v in parts.items())
    return (f"database schema is older than this snfd: {what};"
            " run `snf-manage upgrade` (or set [database] auto_upgrade = yes)")


def upgrade(connection: Any, schemas: Iterable[Schema]) -> list[Migration]:
    """Apply every pending migration on a plain psycopg2 connection, one
    transaction per file.  Returns what was applied by this call."""
    schemas = list(schemas)
    done = []
    with connection.cursor() as cur:
        todo = pending_txn(cur, schemas)
    connection.commit()
    for migration in todo:
        try:
            with connection.cursor() as cur:
                applied = apply_txn(cur, migration)
            connection.commit()
        except Exception as e:
            connection.rollback()
            raise SchemaError(
                f"migration {migration.component} {migration.version:04d}_{migration.name}"
                f" failed: {' '.join(str(e).split())}") from e
        if applied:
            done.append(migration)
    return done


def check(connection: Any, schemas: Iterable[Schema]) -> None:
    """Raise ``SchemaError`` if any migration is pending."""
    with connection.cursor() as cur:
        todo = pending_txn(cur, schemas)
    connection.rollback()
    if todo:
        raise SchemaError(outdated_message(todo))
