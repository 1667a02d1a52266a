"""``snf-manage`` commands of the storage service."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from snfd.cli import run_with_reactor

COMMANDS = ("pithos-gc",)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "pithos-gc", help="remove blocks no object version references",
        description="Remove unreferenced blocks of the block store, sparing blocks"
                    " stored or referenced within the grace period (uploads in"
                    " flight), and temporary files a crash left.")
    p.add_argument("--grace", type=float, default=None,
                   help="seconds of grace (default: [pithos] gc_grace)")


def run(args: argparse.Namespace, config: Any, dsn: str) -> int:
    """Run the storage command ``args.command`` against ``dsn`` (the block
    store works in threads, so under a reactor)."""
    return run_with_reactor(lambda reactor: _gc(args, config, dsn, reactor))


async def _gc(args: argparse.Namespace, config: Any, dsn: str, reactor: Any) -> int:
    from snfd.db.pool import Database
    from snfd.metrics import Metrics
    from snfd.pithos.backend import Backend
    from snfd.pithos.blocks import FileBlockStore

    section = config["pithos"]
    grace = section.gc_grace if args.grace is None else args.grace
    path = (Path(section.block_path) if section.block_path
            else Path(config.node.state_dir) / "blocks")
    db = Database(dsn, reactor, Metrics(), application_name="snf-manage",
                  min_connections=1, max_connections=2)
    db.start()
    try:
        blocks = FileBlockStore(path, reactor)
        backend = Backend(db, blocks, None, reactor)
        scanned, removed = await backend.collect_garbage(grace)
        swept = await blocks.sweep_temporary(reactor.seconds() - grace)
    finally:
        db.close()
    print(f"scanned {scanned} blocks, removed {removed};"
          f" removed {swept or 0} temporary files")
    return 0
