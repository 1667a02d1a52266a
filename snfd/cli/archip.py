"""``snf-manage`` commands of the volume service (Archipelago).

``extstorage-install`` puts the Ganeti ExtStorage provider ``archipelago``
(``share/ganeti/extstorage/archipelago``) into a Ganeti node's ExtStorage
search path, with its ``archipelago.conf``: the node's URL and a component
token, made here (``snf-manage component-add`` does the same) unless one is
given with ``--token`` (a second Ganeti node shares the first one's: a new
token replaces the component's old one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from snfd import errors
from snfd.cli import run_with_reactor

COMMANDS = ("extstorage-install",)

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
    """``extstorage-install --token``: nothing to ask the database."""
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

