"""``snf-manage`` commands of the volume service (Archipelago).

``extstorage-install`` puts the Ganeti ExtStorage provider ``archipelago``
(``share/ganeti/extstorage/archipelago``) into a Ganeti node's ExtStorage
search path, with its ``archipelago.conf``: the node's URL and a component
token, made here (``snf-manage component-add`` does the same) unless one is
given with ``--token`` (a second Ganeti node shares the first one's: a new
token replaces the component's old one).

``archip-migrate-volumes`` copies the node's volumes from its directory
(``[archip] path``) into a RADOS pool (``snfd.archip.place.copy_volumes``),
for ``[archip] volume_store = rados``; it needs no database.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snfd import errors
from snfd.cli import Interrupted, run_with_reactor
from snfd.cli.pithos import _one_line_errors, _size

MIGRATE = "archip-migrate-volumes"
COMMANDS = ("extstorage-install", MIGRATE)
PROGRESS_EVERY = 1000
"""Objects between two progress lines."""

MIGRATE_DESCRIPTION = """\
Copy every volume of this node's directory ([archip] path, default
<state_dir>/volumes) into a RADOS pool, where [archip] volume_store = rados
keeps volumes: the names' epoch floors, the objects volumes own (each one
written, read back and compared by SHA-256), then the volumes' map
pointers.  Run again, it copies only what changed: what the pool has, the
same, is left.  An object the pool has other bytes of is copied again; a
volume whose pointer the pool has otherwise (changed since an earlier
run) is a conflict, listed and left, and the exit status is then 1,
unless --final.  An interrupted copy is resumed by running it again.

The maps the pointers name are blocks of the node's block store: they
move with the blocks (snf-manage pithos-migrate-blocks), which must be in
the cluster before a node reads its volumes there.  Each run then checks
that they are: every copied volume's map blocks, and the image blocks its
map names, in [pithos] rados_pool/rados_namespace or policy 0's
block_fallback directory.  Volumes lacking some are listed; the final
copy then ends with status 1.

Moving a node's volumes from its directory to Ceph (docs/archipelago.md,
"Moving volumes from the filesystem"):

 1. Copy the blocks first (docs/operations.md, "Moving blocks from a
    filesystem to Ceph"):
      snf-manage pithos-migrate-blocks --to rados:snfd-blocks
 2. While the node runs, copy the volumes (as often as you like):
      snf-manage archip-migrate-volumes --to rados:snfd-blocks
    Objects being written may be copied torn, and volumes changed after
    an earlier run are conflicts: the next run copies such objects again
    (by hash), the final one the pointers.
 3. Stop the node(s); bring the blocks written since step 1 (the volumes'
    new maps among them: pithos-migrate-blocks again, or its
    block_fallback switch); copy once more:
      snf-manage archip-migrate-volumes --to rados:snfd-blocks --final
    It copies only what changed; the source's pointers win, and volumes
    an earlier run copied and the node removed since are removed from the
    pool (<state_dir>/archip-migrate-volumes.json records what each run
    copied: volumes other nodes' directories brought to the pool stay).
 4. Set [archip] volume_store = rados (rados_pool and rados_namespace as
    --to says) and [pithos] block_store = rados, and start the node(s).
    Their start-up sweep removes the objects of removed volumes.
"""

MIGRATE_EPILOG = """\
examples:
  snf-manage archip-migrate-volumes --to rados:snfd-blocks
  snf-manage archip-migrate-volumes --to rados:snfd-volumes/archip --final --json
"""

#: The provider as shipped with snfd.
PROVIDER_SOURCE = Path(__file__).resolve().parents[2] / "share" / "ganeti" / "extstorage" \
    / "archipelago"
#: Ganeti 3.0's action scripts (all required, but snapshot, open and close).
ACTIONS = ("create", "attach", "detach", "remove", "grow", "setinfo", "verify",
           "snapshot", "open", "close")
PROGRAM = "archipelago.py"
CONF = "archipelago.conf"


class CommandFailed(Exception):
    """Ends the command with status 1 and this one-line message."""


class BadArguments(Exception):
    """Arguments (or a configuration) the command refuses (exit status 2;
    one line)."""


def needs_database(args: argparse.Namespace) -> bool:
    """Whether the volume command ``args`` asks the database (else
    ``snf-manage`` runs it with ``run_without_database``): only
    ``extstorage-install`` without ``--token``, which makes one."""
    return args.command != MIGRATE and not args.token


def parse_rados_target(text: str) -> tuple[str, str | None]:
    """``rados:<pool>[/<namespace>]``: the pool and the namespace (None:
    not given)."""
    kind, _, rest = text.partition(":")
    if kind == "rados" and rest:
        pool, slash, namespace = rest.partition("/")
        if pool and "/" not in namespace:
            return pool, namespace if slash else None
    raise argparse.ArgumentTypeError(
        f"--to takes rados:<pool>[/<namespace>], not {text!r}")


def add_parsers(sub: Any) -> None:
    """Declare the volume commands on ``snf-manage``'s subparsers."""
    p = sub.add_parser(
        "extstorage-install",
        help="install the Ganeti ExtStorage provider 'archipelago' on a Ganeti node",
        description="Copy the ExtStorage provider into DEST (a directory of Ganeti's"
                    " ExtStorage search path, e.g. /srv/ganeti/extstorage/archipelago)"
                    " and write its archipelago.conf (mode 600) with the node URL and a"
                    " component token.")
    p.add_argument("--dest", required=True, type=Path, help="the provider's directory")
    p.add_argument("--url", required=True,
                   help="base URL of an snfd node with the archip plugin, as the Ganeti"
                        " node reaches it (http://host:port)")
    p.add_argument("--component", default="archipelago",
                   help="the component whose token the provider uses (default: archipelago)")
    p.add_argument("--token", help="use this component token instead of making one"
                                   " (no database needed)")
    p.add_argument("--nbd-host", help="connect to the NBD server here instead of where the"
                                      " node says it listens")
    p.add_argument("--run-dir", help="where attachments are recorded (default:"
                                     " /run/snfd-archipelago)")
    p.add_argument("--nbd-ca", type=Path,
                   help="the CA certificate (PEM) of the node's NBD server, when it"
                        " requires TLS ([archip] nbd_tls); installed as pki/ca-cert.pem")
    p.add_argument("--source", type=Path, default=PROVIDER_SOURCE, help=argparse.SUPPRESS)

    p = sub.add_parser(
        MIGRATE, help="copy this node's volumes from its directory to a RADOS pool",
        description=MIGRATE_DESCRIPTION, epilog=MIGRATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--to", type=parse_rados_target, metavar="rados:POOL[/NAMESPACE]",
                   help="the target pool (required) and namespace (default: [archip]"
                        " rados_namespace)")
    p.add_argument("--rados-conf", help="the target cluster's ceph.conf (default:"
                                        " [pithos] rados_conf)")
    p.add_argument("--rados-user", help="its cephx user, without client. (default:"
                                        " [pithos] rados_user)")
    p.add_argument("--rados-keyring", help="its keyring (default: [pithos] rados_keyring)")
    p.add_argument("--final", action="store_true",
                   help="the node is stopped: the source's pointers replace the pool's,"
                        " and volumes an earlier run copied that the source no longer"
                        " has are removed from the pool")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _one_line_errors(p, MIGRATE)


def provider_conf(url: str, token: str, nbd_host: str | None = None,
                  run_dir: str | None = None, pki: str | None = None) -> dict[str, Any]:
    """The provider's ``archipelago.conf`` (checked as the provider will)."""
    if not url.startswith(("http://", "https://")):
        raise CommandFailed(f"--url: not an http(s) URL: {url!r}")
    conf: dict[str, Any] = {"url": url.rstrip("/"), "token": token}
    if nbd_host:
        conf["nbd_host"] = nbd_host
    if run_dir:
        if not os.path.isabs(run_dir):
            raise CommandFailed(f"--run-dir: not an absolute path: {run_dir!r}")
        conf["run_dir"] = run_dir
    if pki:
        conf["nbd_tls_certificates"] = pki
    return conf


def install(dest: Path, conf: dict[str, Any], source: Path = PROVIDER_SOURCE) -> list[Path]:
    """Copy the provider from ``source`` into ``dest`` (made if absent) and
    write ``conf`` as its ``archipelago.conf``, readable by its owner only;
    each file is replaced atomically.  The paths written."""
    missing = [n for n in (PROGRAM, "parameters.list", *ACTIONS) if not (source / n).is_file()]
    if missing:
        raise CommandFailed(f"{source}: not the provider (no {', '.join(missing)})")
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o755)
    written = []
    for name in (PROGRAM, *ACTIONS):
        written.append(put_file(dest / name, (source / name).read_bytes(), 0o755))
    written.append(put_file(dest / "parameters.list", (source / "parameters.list").read_bytes(),
                        0o644))
    written.append(put_file(dest / CONF, (json.dumps(conf, indent=2) + "\n").encode(), 0o600))
    return written


def put_file(path: Path, data: bytes, mode: int) -> Path:
    """Write ``path`` atomically (temporary file, fsync, rename) with ``mode``."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def run_without_database(args: argparse.Namespace) -> int:
    """``extstorage-install --token`` and ``archip-migrate-volumes``:
    nothing to ask the database."""
    if args.command == MIGRATE:
        return migrate(args)
    return _install(args, args.token)


def run(args: argparse.Namespace, config: Any, installed: dict[str, Any], dsn: str) -> int:
    """``extstorage-install``: a new token of the component, then the files."""
    async def work(reactor: Any) -> int:
        from snfd.tap import assemble

        built = assemble(config, installed, reactor, dsn, ("identity",))
        accounts = built.services["identity"].accounts
        try:
            known = {c.name: c for c in await accounts.list_components()}
            old = known.get(args.component)
            token: str = await accounts.set_component(
                args.component, old.base_url if old else "", old.ui_url if old else "")
        except errors.Fault as e:
            raise CommandFailed(e.message) from None
        finally:
            await built.close()
        return _install(args, token)

    return run_with_reactor(work)


def _install(args: argparse.Namespace, token: str) -> int:
    pki = str(args.dest.absolute() / "pki") if args.nbd_ca else None
    conf = provider_conf(args.url, token, args.nbd_host, args.run_dir, pki)
    try:
        written = install(args.dest, conf, args.source)
        if args.nbd_ca:
            (args.dest / "pki").mkdir(mode=0o755, exist_ok=True)
            written.append(put_file(args.dest / "pki" / "ca-cert.pem", args.nbd_ca.read_bytes(),
                                0o644))
    except OSError as e:
        raise CommandFailed(f"{e.filename or args.dest}: {e.strerror or e}") from None
    print(f"installed the ExtStorage provider archipelago in {args.dest}"
          f" ({len(written)} files; component {args.component!r}, node {conf['url']})")
    return 0



# -- archip-migrate-volumes ------------------------------------------------------


def migrate(args: argparse.Namespace) -> int:
    """``archip-migrate-volumes``: status 2 and one line for bad arguments
    (or a node already on RADOS), 1 for conflicts or a failed copy."""
    if args.to is None:
        print(f"snf-manage {MIGRATE}: --to is required (see --help)", file=sys.stderr)
        return 2
    try:
        return _migrate(args)
    except BadArguments as e:
        print(f"snf-manage {MIGRATE}: {e}", file=sys.stderr)
        return 2


def _migrate(args: argparse.Namespace) -> int:
    from snfd.archip.place import FileVolumePlace
    from snfd.pithos.hashmap import BLOCK_SIZE
    from snfd.tap import load

    config, _ = load(args.config)
    archip, pithos = config.sections.get("archip"), config.sections.get("pithos")
    if archip is None or pithos is None:
        raise BadArguments("needs the archip and pithos plugins installed")
    if archip.volume_store == "rados":
        raise BadArguments(f"{config.source}: [archip] volume_store is rados already (the"
                           " source is the node's directory, volume_store = file)")
    state_dir = str(config.node.state_dir)
    path = os.path.abspath(archip.path or os.path.join(state_dir, "volumes"))
    if not os.path.isdir(path):
        raise BadArguments(f"[archip] path: no directory {path} (no volumes to copy)")
    # Owned objects are of the block store's block size, which no key sets.
    source = FileVolumePlace(path, BLOCK_SIZE)
    pool, namespace = args.to
    if namespace is None:
        namespace = archip.rados_namespace
    with contextlib.ExitStack() as opened:
        target = _open_rados_place(args, pithos, pool, namespace, BLOCK_SIZE)
        opened.callback(target.close)
        stores, where = _block_stores(args, pithos, state_dir, opened)
        copy = _Copy(args, source, target, f"rados:{pool}/{namespace}",
                     Record(os.path.join(state_dir, RECORD), path,
                            f"rados:{pool}/{namespace}"), stores, where)
        status = copy.run()
        if status == 0 and args.final:
            keys = ["volume_store = rados"]
            if pool != (archip.rados_pool or pithos.rados_pool):
                keys.append(f"rados_pool = {pool}")
            if namespace != archip.rados_namespace:
                keys.append(f"rados_namespace = {namespace}")
            print(f"every volume of {path} is in {copy.target_name}: set [archip]"
                  f" {', '.join(keys)}, with [pithos] block_store = rados, and start the"
                  " node (step 4)", file=copy.out)
        return status


def _block_stores(args: argparse.Namespace, pithos: Any, state_dir: str,
                  opened: contextlib.ExitStack) -> tuple[list[Any], str]:
    """The block stores a node on RADOS reads the volumes' maps from, and
    what they are for messages: ``[pithos]``'s policy 0 on RADOS (the
    cluster as for ``--to``; closed with ``opened``), then its
    ``block_fallback`` directory if one is set.  A pool the cluster lacks
    holds no block: it is left out."""
    from snfd.pithos.blocks import FileBlockStore
    from snfd.pithos.rados_blocks import RadosUnavailable, open_store

    stores: list[Any] = []
    names = [f"rados:{pithos.rados_pool}/{pithos.rados_namespace}"]
    try:
        store = open_store(args.rados_conf or pithos.rados_conf, pithos.rados_pool, None,
                           user=args.rados_user or pithos.rados_user,
                           keyring=args.rados_keyring or pithos.rados_keyring,
                           namespace=pithos.rados_namespace)
        opened.callback(store.close)
        stores.append(store)
    except RadosUnavailable as e:
        names[0] += f" ({e})"
    for policy, directory in pithos.block_fallback:
        if not policy:
            fallback = os.path.abspath(Path(state_dir) / Path(directory).expanduser())
            if os.path.isdir(fallback):
                stores.append(FileBlockStore(fallback, None))
                names.append(f"the fallback {fallback}")
    return stores, " or ".join(names)


def _open_rados_place(args: argparse.Namespace, pithos: Any, pool: str, namespace: str,
                      block_size: int) -> Any:
    from snfd.archip.rados_volumes import open_place
    from snfd.pithos.rados_blocks import RadosUnavailable

    conf = args.rados_conf or pithos.rados_conf
    if not conf:
        raise BadArguments("--to rados: needs --rados-conf (or [pithos] rados_conf)")
    try:
        return open_place(conf, pool, None, block_size=block_size, namespace=namespace,
                          user=args.rados_user or pithos.rados_user,
                          keyring=args.rados_keyring or pithos.rados_keyring)
    except RadosUnavailable as e:  # NoSuchPool too
        raise BadArguments(f"--to: {e}") from None


RECORD = "archip-migrate-volumes.json"
"""In the state directory: the volumes each copy brought to its target."""


class Record:
    """The volumes copies from directory ``source`` brought to ``target``
    (``<state_dir>/archip-migrate-volumes.json``): the final copy removes
    from the target those the source no longer has, and no others (other
    nodes' directories may be copied into the same pool)."""

    def __init__(self, path: str, source: str, target: str):
        self.path = path
        self.key = f"{source} -> {target}"
        self.copies: dict[str, list[str]] = {}
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read())
            self.copies = {str(k): [str(n) for n in v]
                           for k, v in dict(doc.get("copies", {})).items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise CommandFailed(f"{path}: cannot read the record of earlier copies: {e}"
                                " (remove it: the final copy then removes no volume)"
                                ) from None
        self.names = set(self.copies.get(self.key, ()))

    def save(self) -> None:
        self.copies[self.key] = sorted(self.names)
        doc = {"version": 1, "copies": self.copies}
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        put_file(Path(self.path), (json.dumps(doc, indent=1) + "\n").encode(), 0o600)


class _Copy:
    """One run of ``copy_volumes`` with the command's progress lines and
    summary."""

    def __init__(self, args: argparse.Namespace, source: Any, target: Any,
                 target_name: str, record: Record, stores: Sequence[Any] = (),
                 stores_name: str = ""):
        self.args = args
        self.source = source
        self.target = target
        self.target_name = target_name
        self.record = record
        self.stores = stores
        self.stores_name = stores_name
        self.began = time.monotonic()
        self.objects = 0
        self.listed = 0

    @property
    def out(self) -> Any:
        """Where progress lines go (stderr when stdout has the JSON)."""
        return sys.stderr if self.args.json else sys.stdout

    def progress(self, kind: str, name: str) -> None:
        if kind == "pointer":  # copied, or there the same
            self.record.names.add(name)
        elif kind == "removed":
            self.record.names.discard(name)
        elif kind == "object":
            self.objects += 1
            if self.objects % PROGRESS_EVERY == 0:
                seconds = max(time.monotonic() - self.began, 1e-6)
                print(f"{self.objects} of {self.listed} objects checked or copied;"
                      f" {self.objects / seconds:.0f} objects/s", file=self.out, flush=True)

    def run(self) -> int:
        from snfd.archip.place import blocks_missing, copy_volumes

        args = self.args
        what = "final copy" if args.final else "copying"
        print(f"{what}: volumes of {self.source.where} to {self.target_name}",
              file=self.out, flush=True)
        try:
            try:
                self.listed = len(self.source.object_names_now())
                report = copy_volumes(self.source, self.target, replace_pointers=args.final,
                                      prune=set(self.record.names) if args.final else False,
                                      progress=self.progress)
            finally:
                self.record.save()
            volumes = self.source.names_now()
            lacking = blocks_missing(self.target, self.stores, volumes)
        except KeyboardInterrupt:
            raise Interrupted() from None
        except (OSError, ValueError) as e:
            if isinstance(e, OSError) and e.filename:
                reason = f"{e.filename}: {e.strerror or e}"
            else:
                reason = (e.strerror if isinstance(e, OSError) else None) or str(e)
            raise CommandFailed(f"the copy to {self.target_name} stopped: {reason}; run it"
                                " again to resume") from None
        seconds = time.monotonic() - self.began
        if args.json:
            print(json.dumps({
                "source": self.source.where, "target": self.target_name,
                "final": args.final,
                "pointers_copied": report.pointers_copied,
                "pointers_present": report.pointers_present,
                "pointers_removed": report.pointers_removed,
                "objects_copied": report.objects_copied,
                "objects_present": report.objects_present,
                "bytes_copied": report.bytes_copied, "floors_raised": report.floors,
                "conflicts": report.conflicts, "complete": report.complete,
                "volumes_checked": len(volumes),
                "volumes_lacking_blocks": {n: len(b) for n, b in lacking.items()},
                "seconds": round(seconds, 3)}, indent=2))
        else:
            print(f"done in {seconds:.1f} s: {report.pointers_copied} pointers copied,"
                  f" {report.pointers_present} already there, {report.pointers_removed}"
                  f" removed; {report.objects_copied} objects copied"
                  f" ({_size(report.bytes_copied)}), {report.objects_present} already"
                  f" there; {report.floors} floors raised; {len(report.conflicts)}"
                  " conflicts")
            for conflict in report.conflicts:
                print(f"conflict: {conflict}")
            if lacking:
                print(f"{len(lacking)} of {len(volumes)} volumes lack blocks of their maps"
                      f" in {self.stores_name}:")
            else:
                print(f"the blocks of the {len(volumes)} volumes' maps are in"
                      f" {self.stores_name}")
            for name, blocks in sorted(lacking.items()):
                print(f"lacking blocks: volume {name}: {len(blocks)} (first {blocks[0]})")
        if report.conflicts and not args.final:
            print("volumes changed since an earlier copy are conflicts: the final copy"
                  " (--final, the node stopped) replaces them", file=self.out)
        if lacking:
            print("a node on RADOS could not read volumes whose blocks are missing: copy the"
                  " blocks (snf-manage pithos-migrate-blocks, steps 1 and 3), or keep"
                  " their directory as [pithos] block_fallback"
                  + (", then run --final again" if args.final else ""), file=self.out)
            if args.final:
                return 1
        return 1 if report.conflicts else 0
