"""Statements planned once per connection (server-side prepared statements).

On these machines PostgreSQL takes longer to plan a statement with a few
subqueries than to run it (measured: 0.35 ms planning against 0.12 ms
execution for the object read), and the planner runs again for every
statement psycopg2 sends.  A ``Prepared`` statement is sent once per
connection as ``PREPARE`` and afterwards as ``EXECUTE``, and the pool's
sessions run ``plan_cache_mode = force_generic_plan`` so that its plan is
made once too (``auto`` keeps re-planning a statement whose generic plan
looks costlier than its custom ones, which for these is never better).

Only point lookups and writes by key are prepared: a generic plan is blind
to the parameters' values, which a range scan's best plan may depend on.

A prepared statement belongs to the session, outlives the transaction
that made it (also one rolled back) and follows schema changes (PostgreSQL
re-plans it).  The statements known to each connection are remembered
here by connection object; a replaced connection starts afresh.
"""

from __future__ import annotations

import hashlib
import re
import weakref
from collections.abc import Mapping
from typing import Any

_PARAM = re.compile(r"%\((\w+)\)s")

# Each live psycopg2 connection's prepared statement names.
_known: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


class Prepared:
    """One statement with psycopg2's named placeholders (``%(name)s``,
    no positional ``%s``), run prepared by ``execute``."""

    def __init__(self, sql: str):
        if "%s" in _PARAM.sub("", sql):
            raise ValueError("a prepared statement takes named placeholders only")
        names = list(dict.fromkeys(_PARAM.findall(sql)))
        self.sql = sql
        self.name = "snfd_" + hashlib.sha256(sql.encode()).hexdigest()[:24]
        body = _PARAM.sub(lambda m: f"${names.index(m.group(1)) + 1}", sql)
        self._prepare = f"PREPARE {self.name} AS {body}"
        self._execute = (f"EXECUTE {self.name}("
                         + ", ".join(f"%({n})s" for n in names) + ")") if names \
            else f"EXECUTE {self.name}"

    def execute(self, txn: Any, args: Mapping[str, Any]) -> None:
        """Run it on ``txn`` (an adbapi transaction or a psycopg2 cursor)
        with ``args``; fetch the rows from ``txn`` as after ``execute``."""
        conn = txn.connection
        known = _known.get(conn)
        if known is None:
            known = _known.setdefault(conn, set())
        if self.name not in known:
            txn.execute(self._prepare)
            known.add(self.name)
        txn.execute(self._execute, args)


#: The session setting the pool's connections need (see the docstring).
SESSION_OPTIONS = "-c plan_cache_mode=force_generic_plan"
