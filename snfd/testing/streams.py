"""The test suite as two streams that ``./dev test`` runs at once.

``system``: the tests that start processes and machinery of their own,
one after another as they need: private RabbitMQ brokers and PostgreSQL
servers (restarts), real Ganeti clusters and network namespaces, ``twistd``
nodes and the real clients (``openstack``, ``swift``, rclone, restic) run
against them.  They share fixed resources (epmd, namespace names, the
machine's broker with fixed exchange names), so they stay in one stream.
``units``: everything else: in-process services over the shared
PostgreSQL, which wait mostly on each other's I/O.

Measured on the 2-core CI machine (``--reporter=snfd-timed``): the
suite's 1,708 tests took 43 minutes in one stream for 32 CPU-minutes,
most of it waiting on subprocesses, brokers and the database.  (``trial
-j`` is no substitute: its workers get ``PYTHONPATH`` set to the venv's
path, which breaks Debian's Ganeti tools in the real-Ganeti tests.)

``python -m snfd.testing.streams system|units`` prints the stream's test
names (packages or modules, one per line) for trial.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: Packages and modules of the ``system`` stream.
SYSTEM = (
    "tests.integration", "tests.ganeti", "tests.netnode", "tests.bus", "tests.db",
    "tests.cluster", "tests.cyclades.test_dispatcher", "tests.web.test_node_http",
)


def _names(root: Path) -> list[str]:
    """The suite's packages and top-level modules, and the modules of a
    package that ``SYSTEM`` splits, as dotted names."""
    names = []
    for path in sorted(root.iterdir()):
        if path.is_dir() and (path / "__init__.py").exists():
            package = f"tests.{path.name}"
            if any(s.startswith(package + ".") for s in SYSTEM):
                names += [f"{package}.{m.stem}" for m in sorted(path.glob("test_*.py"))]
            else:
                names.append(package)
        elif path.suffix == ".py" and path.name.startswith("test_"):
            names.append(f"tests.{path.stem}")
    return names


def stream(name: str, root: Path | None = None) -> list[str]:
    """The dotted names of stream ``name`` (``system`` or ``units``)."""
    every = _names(root or Path(__file__).resolve().parents[2] / "tests")
    if name == "system":
        return [n for n in every if n in SYSTEM]
    if name == "units":
        return [n for n in every if n not in SYSTEM]
    raise ValueError(f"no stream {name!r}: system or units")


if __name__ == "__main__":
    print("\n".join(stream(sys.argv[1])))
