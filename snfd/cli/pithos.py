"""``snf-manage`` commands of the storage service."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import attrs

from snfd.cli import run_with_reactor

COMMANDS = ("pithos-gc", "pithos-migrate-blocks")

MIGRATE = "pithos-migrate-blocks"
PROGRESS_EVERY = 10_000
"""Blocks scanned between two progress lines."""

MIGRATE_DESCRIPTION = """\
Copy the blocks of a storage policy (default: policy 0, whose store also
holds images and volumes) from the store the node's configuration names to
another, while the cloud runs: each block the target lacks is read, its
content checked against its name (SHA-256) and written; blocks the target
has are skipped without being read.  A block whose content does not match
its name is reported and not copied (the exit status is then 1).  An
interrupted copy of a filesystem store resumes where it stopped (the
progress file); one of a RADOS store lists it again, skipping what the
target has.  With --verify, nothing is copied: every block of the source is
read back from the target and checked.

When the policy's store has a fallback ([pithos] block_fallback), the
fallback is the source: the store the blocks come from.

Moving a cloud's blocks from a filesystem (NFS) to Ceph, without stopping it
(docs/operations.md, "Moving blocks from a filesystem to Ceph"):

 1. While the nodes write to the old store, copy:
      snf-manage pithos-migrate-blocks --to rados:snfd-blocks
 2. Switch every node to the new store, keeping the old one as a read-only
    fallback, and restart them together:
      [pithos] block_store = rados, rados_conf = ..., rados_pool = snfd-blocks,
               block_fallback = <the old block_path>
    Reads of blocks only in the old store read the fallback; nothing writes
    to it or collects it; uploads store every block in the new store.
 3. Copy again (the same command: the source is now the fallback), to bring
    the blocks written to the old store before the switch.  Its summary
    says when every block of the fallback is in the new store.
 4. Remove block_fallback and restart the nodes; keep the old directory
    until a --verify run and the cloud's own reads have been watched.
Each storage policy moves the same way (--policy NAME, and a
block_fallback entry NAME:DIRECTORY).
"""

MIGRATE_EPILOG = """\
examples:
  snf-manage pithos-migrate-blocks --to rados:snfd-blocks
  snf-manage pithos-migrate-blocks --policy silver --to rados:snfd-blocks/blocks-silver
  snf-manage pithos-migrate-blocks --to file:/srv/new-blocks --verify --json
"""


class CommandFailed(Exception):
    """A storage command that cannot go on (exit status 1; the message is
    one line)."""


class BadArguments(Exception):
    """Arguments the command refuses (exit status 2; one line)."""


@attrs.frozen
class Target:
    """Where ``--to`` says the blocks go: ``kind`` ``file`` (``where`` a
    directory) or ``rados`` (``where`` a pool, and a ``namespace``)."""

    kind: str
    where: str
    namespace: str = ""

    def __str__(self) -> str:
        if self.kind == "file":
            return f"file:{self.where}"
        return f"rados:{self.where}/{self.namespace}"


def parse_target(text: str) -> Target:
    """``file:<directory>`` or ``rados:<pool>[/<namespace>]``."""
    kind, _, rest = text.partition(":")
    if kind == "file" and rest:
        return Target("file", os.path.abspath(os.path.expanduser(rest)))
    if kind == "rados" and rest:
        pool, _, namespace = rest.partition("/")
        if pool and "/" not in namespace:
            return Target("rados", pool, namespace)
    raise argparse.ArgumentTypeError(
        f"--to takes file:<directory> or rados:<pool>[/<namespace>], not {text!r}")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _one_line_errors(parser: argparse.ArgumentParser, name: str) -> None:
    """Bad arguments end the command with one line and status 2 (not
    argparse's usage block)."""
    def error(message: str) -> NoReturn:
        print(f"snf-manage {name}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)
    parser.error = error  # type: ignore[method-assign]


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "pithos-gc", help="remove blocks no object version references",
        description="Remove unreferenced blocks of the block store, sparing blocks"
                    " stored or referenced within the grace period (uploads in"
                    " flight), and temporary files a crash left.")
    p.add_argument("--grace", type=float, default=None,
                   help="seconds of grace (default: [pithos] gc_grace)")

    p = sub.add_parser(
        MIGRATE, help="copy a storage policy's blocks to another store (NFS to Ceph)",
        description=MIGRATE_DESCRIPTION, epilog=MIGRATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--to", type=parse_target, metavar="file:DIR|rados:POOL[/NAMESPACE]",
                   help="the target store (required)")
    p.add_argument("--rados-conf", help="the target cluster's ceph.conf (default:"
                                        " [pithos] rados_conf)")
    p.add_argument("--rados-user", help="its cephx user, without client. (default:"
                                        " [pithos] rados_user)")
    p.add_argument("--rados-keyring", help="its keyring (default: [pithos] rados_keyring)")
    p.add_argument("--policy", help="the storage policy (default: policy 0)")
    p.add_argument("--progress-file",
                   help="where a copy records how far it got (default:"
                        " <state_dir>/pithos-migrate-blocks-<policy>.json)")
    p.add_argument("--verify", action="store_true",
                   help="copy nothing: read every block of the source back from the"
                        " target and check it")
    p.add_argument("--in-flight", type=_positive, default=8,
                   help="blocks copied at the same time (default 8)")
    p.add_argument("--batch", type=_positive, default=1000,
                   help="names listed per page (default 1000); a progress file"
                        " records a page once all its blocks are done")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _one_line_errors(p, MIGRATE)


def run(args: argparse.Namespace, config: Any, installed: dict[str, Any], dsn: str) -> int:
    """Run the storage command ``args.command`` against ``dsn`` (the block
    store works in threads, so under a reactor)."""
    if args.command == MIGRATE:
        if args.to is None:
            print(f"snf-manage {MIGRATE}: --to is required (see --help)", file=sys.stderr)
            return 2
        try:
            return run_with_reactor(lambda reactor: _migrate(args, config, installed, dsn,
                                                             reactor))
        except BadArguments as e:
            print(f"snf-manage {MIGRATE}: {e}", file=sys.stderr)
            return 2
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


async def _migrate(args: argparse.Namespace, config: Any, installed: dict[str, Any],
                   dsn: str, reactor: Any) -> int:
    from snfd.pithos.migrate import describe
    from snfd.pithos.policies import FallbackBlocks
    from snfd.tap import assemble

    built = assemble(config, installed, reactor, dsn, ("pithos",))
    target = None
    try:
        svc = built.services["pithos"]
        policy = svc.policies.primary if args.policy is None else svc.policies.find(args.policy)
        if policy is None:
            raise BadArguments(f"--policy: no storage policy is named {args.policy!r}"
                               f" (policies: {', '.join(p.name for p in svc.policies)})")
        source, role = policy.blocks, "store"
        target = _open_target(args, svc.section, reactor)
        if isinstance(source, FallbackBlocks):
            # After the switch: from the fallback into the policy's store,
            # and nowhere else (the summary says when the fallback may go).
            source, role = source.fallback, "fallback"
            expected = describe(policy.blocks.primary)
            if describe(target) != expected:
                raise BadArguments(f"--to: policy {policy.name} keeps its blocks in"
                                   f" {expected} now; the copy from its fallback goes"
                                   " there")
        return await _copy_or_verify(args, config, policy.name, source, role, target,
                                     reactor)
    finally:
        close = getattr(target, "close", None)
        if close is not None:
            close()
        await built.close()


def _open_target(args: argparse.Namespace, section: Any, reactor: Any) -> Any:
    to: Target = args.to
    if to.kind == "file":
        from snfd.pithos.blocks import FileBlockStore

        if os.path.exists(to.where) and not os.path.isdir(to.where):
            raise BadArguments(f"--to: {to.where} is not a directory")
        try:
            return FileBlockStore(to.where, reactor)
        except OSError as e:
            raise BadArguments(f"--to: cannot use {to.where}: {e.strerror or e}") from None
    from snfd.pithos.rados_blocks import RadosUnavailable, open_store

    conf = args.rados_conf or section.rados_conf
    if not conf:
        raise BadArguments("--to rados: needs --rados-conf (or [pithos] rados_conf)")
    try:
        return open_store(conf, to.where, reactor, namespace=to.namespace,
                          user=args.rados_user or section.rados_user,
                          keyring=args.rados_keyring or section.rados_keyring)
    except RadosUnavailable as e:
        raise BadArguments(f"--to: {e}") from None


async def _copy_or_verify(args: argparse.Namespace, config: Any, policy: str, source: Any,
                          role: str, target: Any, reactor: Any) -> int:
    from snfd.pithos.migrate import Progress, copy_blocks, describe, verify_blocks

    source_name, target_name = describe(source), describe(target)
    if source_name == target_name:
        raise BadArguments(f"--to: {target_name} is the source itself")
    if int(source.block_size) != int(target.block_size):
        raise BadArguments(f"--to: {target_name} has blocks of {target.block_size} bytes,"
                           f" the source {source.block_size}")
    out = sys.stderr if args.json else sys.stdout
    began = time.monotonic()
    shown = [0]

    def rate(blocks: int, size: int) -> str:
        seconds = max(time.monotonic() - began, 1e-6)
        return f"{blocks / seconds:.0f} blocks/s, {size / seconds / 1e6:.1f} MB/s"

    def tick(done: int, line: str) -> None:
        if done // PROGRESS_EVERY > shown[0]:
            shown[0] = done // PROGRESS_EVERY
            print(line, file=out, flush=True)

    what = f"policy {policy}: {source_name}" + (" (fallback)" if role == "fallback" else "")
    if args.verify:
        print(f"verifying {what} against {target_name}", file=out, flush=True)
        checked = await verify_blocks(
            source, target, reactor, batch=args.batch, in_flight=args.in_flight,
            on_page=lambda r: tick(r.checked, f"{r.checked} blocks checked: {r.ok} ok,"
                                   f" {len(r.missing)} missing, {len(r.corrupt)} corrupt;"
                                   f" {rate(r.checked, r.bytes)}"))
        seconds = time.monotonic() - began
        if args.json:
            print(json.dumps({
                "policy": policy, "source": source_name, "role": role,
                "target": target_name, "checked": checked.checked, "ok": checked.ok,
                "bytes": checked.bytes, "missing": checked.missing,
                "corrupt": [attrs.asdict(f) for f in checked.corrupt],
                "seconds": round(seconds, 3)}, indent=2))
        else:
            print(f"checked {checked.checked} blocks in {seconds:.1f} s: {checked.ok} ok,"
                  f" {len(checked.missing)} missing from the target,"
                  f" {len(checked.corrupt)} corrupt there")
            for name in checked.missing:
                print(f"missing: {name}")
            for fault in checked.corrupt:
                print(f"corrupt: {fault.name}: {fault.reason}")
        return 1 if checked.missing or checked.corrupt else 0

    progress_path = args.progress_file or str(
        Path(config.node.state_dir) / f"pithos-migrate-blocks-{policy}.json")
    progress = Progress(progress_path, source_name, target_name, role)
    print(f"copying {what} to {target_name}", file=out, flush=True)
    if not source.scan_resumable:
        print("the source's listing cannot be resumed: an interrupted copy lists it"
              " again, skipping the blocks the target has", file=out, flush=True)

    def page(r: Any) -> None:
        tick(r.scanned, f"{r.scanned} blocks scanned: {r.copied} copied"
                        f" ({_size(r.bytes)}), {r.present} already there, {r.gone} gone,"
                        f" {len(r.failed)} failed;"
                        f" {rate(r.copied - r.copied_before, r.bytes - r.bytes_before)}")
    try:
        report = await copy_blocks(source, target, reactor, progress=progress,
                                   batch=args.batch, in_flight=args.in_flight, on_page=page)
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        kept = (f"; {progress.path} records how far it got: run it again to resume"
                if source.scan_resumable else "; run it again")
        raise CommandFailed(f"the copy to {target_name} stopped: {reason}{kept}") from None
    if progress.stale:
        print(progress.stale, file=out)
    seconds = time.monotonic() - began
    copied_now = report.copied - report.copied_before
    bytes_now = report.bytes - report.bytes_before
    if args.json:
        print(json.dumps({
            "policy": policy, "source": source_name, "role": role, "target": target_name,
            "scanned": report.scanned, "copied": report.copied, "bytes": report.bytes,
            "present": report.present, "gone": report.gone,
            "failed": [attrs.asdict(f) for f in report.failed],
            "complete": report.complete, "resumed_after": report.resumed_after,
            "seconds": round(seconds, 3), "copied_this_run": copied_now,
            "bytes_this_run": bytes_now}, indent=2))
    else:
        resumed = (f" (resumed after {report.resumed_after})"
                   if report.resumed_after is not None else "")
        print(f"done{resumed}: {report.scanned} blocks scanned, {report.copied} copied"
              f" ({_size(report.bytes)}), {report.present} already there, {report.gone}"
              f" gone from the source meanwhile, {len(report.failed)} failed;"
              f" this run {seconds:.1f} s, {rate(copied_now, bytes_now)}")
        for fault in report.failed:
            print(f"failed: {fault.name}: {fault.reason} (not copied)")
    if role == "fallback" and not report.failed:
        print(f"every block of the fallback {source_name} is in {target_name}: its"
              " block_fallback entry may go (step 4)", file=out)
    return 1 if report.failed else 0


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            break
        size /= 1024
    return f"{size:.1f} {unit}"
