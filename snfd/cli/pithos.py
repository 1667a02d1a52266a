"""``snf-manage`` commands of the storage service."""

from __future__ import annotations

import argparse
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


def run(args: argparse.Namespace, config: Any, installed: dict[str, Any], dsn: str) -> int:
    """Run the storage command ``args.command`` against ``dsn`` (the block
    store works in threads, so under a reactor)."""
    return run_with_reactor(lambda reactor: _gc(args, config, installed, dsn, reactor))


async def _gc(args: argparse.Namespace, config: Any, installed: dict[str, Any], dsn: str,
              reactor: Any) -> int:
    from snfd.tap import assemble

    built = assemble(config, installed, reactor, dsn, ("pithos",))
    svc = built.services["pithos"]
    grace = svc.section.gc_grace if args.grace is None else args.grace
    try:
        scanned, removed = await svc.backend.collect_garbage(grace)
        swept = await svc.blocks.sweep_temporary(reactor.seconds() - grace)
    finally:
        await built.close()
    print(f"scanned {scanned} blocks, removed {removed};"
          f" removed {swept or 0} temporary files")
    return 0
