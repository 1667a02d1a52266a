"""``snf-manage os-install``: put the Ganeti OS definition ``snf-image``
(``share/ganeti/os/snf-image``) into a Ganeti node's OS search path.

The definition needs no configuration: every build's parameters come from
the job (``config_url``).  ``--nbd-ca`` installs the CA certificate of the
node's NBD server, for a node that requires TLS ([archip] nbd_tls), as
``pki/ca-cert.pem`` beside the scripts, where ``create`` looks for it.
No database is needed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from snfd.cli.archip import put_file

COMMANDS = ("os-install",)

#: The OS definition as shipped with snfd.
OS_SOURCE = Path(__file__).resolve().parents[2] / "share" / "ganeti" / "os" / "snf-image"
#: The scripts Ganeti requires of an OS (API 20), and the program they run.
SCRIPTS = ("create", "export", "import", "rename", "verify")
PROGRAM = "snf_image.py"
DATA = ("ganeti_api_version", "variants.list", "parameters.list")


class CommandFailed(Exception):
    """Ends the command with status 1 and this one-line message."""


def add_parsers(sub: Any) -> None:
    """Declare ``os-install`` on ``snf-manage``'s subparsers."""
    p = sub.add_parser(
        "os-install", help="install the Ganeti OS definition 'snf-image' on a Ganeti node",
        description="Copy the OS definition snf-image into DEST (a directory of Ganeti's"
                    " OS search path, e.g. /srv/ganeti/os/snf-image).")
    p.add_argument("--dest", required=True, type=Path, help="the OS definition's directory")
    p.add_argument("--nbd-ca", type=Path,
                   help="the CA certificate (PEM) of the node's NBD server, when it"
                        " requires TLS ([archip] nbd_tls); installed as pki/ca-cert.pem")
    p.add_argument("--source", type=Path, default=OS_SOURCE, help=argparse.SUPPRESS)


def install(dest: Path, source: Path = OS_SOURCE, nbd_ca: Path | None = None) -> list[Path]:
    """Copy the OS definition from ``source`` into ``dest`` (made if
    absent), scripts executable, each file replaced atomically; with
    ``nbd_ca``, that certificate as ``pki/ca-cert.pem``.  The paths written."""
    missing = [n for n in (PROGRAM, *SCRIPTS, *DATA) if not (source / n).is_file()]
    if missing:
        raise CommandFailed(f"{source}: not the OS definition (no {', '.join(missing)})")
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o755)
    written = [put_file(dest / n, (source / n).read_bytes(), 0o755) for n in (PROGRAM, *SCRIPTS)]
    written += [put_file(dest / n, (source / n).read_bytes(), 0o644) for n in DATA]
    if nbd_ca is not None:
        (dest / "pki").mkdir(mode=0o755, exist_ok=True)
        written.append(put_file(dest / "pki" / "ca-cert.pem", nbd_ca.read_bytes(), 0o644))
    return written


def run(args: argparse.Namespace) -> int:
    """``os-install``: the files, then one line saying where."""
    try:
        written = install(args.dest, args.source, args.nbd_ca)
    except OSError as e:
        raise CommandFailed(f"{e.filename or args.dest}: {e.strerror or e}") from None
    print(f"installed the OS definition snf-image in {args.dest} ({len(written)} files)")
    return 0
