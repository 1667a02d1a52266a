"""``snf sharer`` and the ``snf file`` commands that change an object in
place, as kamaki has them: ``restore`` (an older version becomes the
latest), ``append``, ``overwrite`` and ``truncate`` (Pithos' partial
updates: a ``POST`` of the object with ``Content-Range`` and
``X-Object-Bytes``, reference 2.9).  They are added to the ``file`` group
of ``snfd.cli.snf`` (so ``snf file -A <uuid> ...`` works on a sharer's
objects, where they allow it).

Only the blocks a change touches are rewritten on the server; the local
file is streamed, never read whole.  An append is sent once and never
retried (a second one would add the data twice); an overwrite and a
truncation are harmless to repeat and are retried like other requests.
Every change makes a new version of the object, whose id is printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from snfd.cli.output import Column, show, show_json
from snfd.cli.snf_account import _emails
from snfd.cli.snf_app import App, Failed, SnfGroup, fail, pass_app
from snfd.client.pithos import FileBody

__all__ = ["register"]


def _object(app: App, remote: str) -> tuple[str, str]:
    container, name = app.remote(remote)
    if not name:
        fail("give an object: container/name")
    return container, name


def _changed(app: App, what: str, container: str, name: str,
             headers: Mapping[str, str], **fields: Any) -> None:
    """Report a change: its new version (``-o json``: with the ETag)."""
    version = headers.get("X-Object-Version", "")
    if app.json:
        show_json({"container": container, "name": name, "x_object_version": version,
                   "etag": headers.get("ETag", ""), **fields})
    else:
        click.echo(f"{what} {container}/{name}: version {version}")


def register_file_commands(file: click.Group) -> None:
    @file.command("restore")
    @click.argument("remote")
    @click.option("--version", "version", required=True,
                  help="the version id to restore (see `snf file versions`)")
    @pass_app
    def restore(app: App, remote: str, version: str) -> None:
        """Make an older version of an object its latest one (server side;
        the newer versions stay in its history).  Prints the new version.

        \b
        Example:
          snf file versions docs/report.txt
          snf file restore docs/report.txt --version 1042
        """
        container, name = _object(app, remote)
        if not version.strip().isdigit():
            raise click.BadParameter("a version id is a number", param_hint="--version")
        headers = app.client.restore(container, name, version.strip())
        _changed(app, f"restored version {version.strip()} of", container, name, headers,
                 restored_from=version.strip())

    @file.command("append")
    @click.argument("remote")
    @click.argument("local", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @pass_app
    def append(app: App, remote: str, local: Path) -> None:
        """Add the bytes of LOCAL at the end of object REMOTE.

        Sent once, never retried: if the answer is lost, check the object
        (`snf file info`) before appending again.

        \b
        Example:
          snf file append logs/app.log ./today.log
        """
        container, name = _object(app, remote)
        with local.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            headers = app.client.append(container, name, FileBody(f, 0, size))
        _changed(app, f"appended {size} bytes to", container, name, headers, bytes=size)

    @file.command("overwrite")
    @click.argument("remote")
    @click.argument("local", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--start", type=click.IntRange(0), required=True,
                  help="the first byte of REMOTE to write (at most its size)")
    @click.option("--end", type=click.IntRange(0),
                  help="the last byte to write, inclusive (default: as long as LOCAL);"
                       " the first END-START+1 bytes of LOCAL are written")
    @pass_app
    def overwrite(app: App, remote: str, local: Path, start: int, end: int | None) -> None:
        """Write the bytes of LOCAL over object REMOTE from byte START
        (writing past its end makes it longer).

        \b
        Example:
          snf file overwrite disks/img.raw ./patch.bin --start 4096
          snf file overwrite docs/a.txt ./fix.txt --start 10 --end 19
        """
        container, name = _object(app, remote)
        have = local.stat().st_size
        if end is None:
            count = have
        elif end < start:
            raise click.BadParameter(f"{end} is before --start {start}", param_hint="--end")
        else:
            count = end - start + 1
            if count > have:
                raise click.BadParameter(
                    f"bytes {start}-{end} are {count} bytes; {local} holds {have}",
                    param_hint="--end")
        if count == 0:
            fail(f"{local} is empty: nothing to write")
        with local.open("rb") as f:
            headers = app.client.overwrite(container, name, start, FileBody(f, 0, count))
        _changed(app, f"wrote bytes {start}-{start + count - 1} of", container, name,
                 headers, bytes=count)

    @file.command("truncate")
    @click.argument("remote")
    @click.argument("size", type=click.IntRange(0))
    @pass_app
    def truncate(app: App, remote: str, size: int) -> None:
        """Cut object REMOTE to SIZE bytes (server side; it is never made
        longer: exit 5 if it is shorter than SIZE).

        \b
        Example:
          snf file truncate logs/app.log 0
        """
        container, name = _object(app, remote)
        client = app.client
        current = client.object_info(container, name).get("Content-Length", "")
        if current.isdigit() and int(current) < size:
            raise Failed(f"{container}/{name} is {current} bytes, shorter than {size};"
                         " truncate only shortens", 5)
        headers = client.truncate(container, name, size)
        _changed(app, f"truncated to {size} bytes", container, name, headers, bytes=size)


SHARER_COLUMNS = (Column("UUID", "name"), Column("Email", "email"),
                  Column("Modified", "last_modified"))


def register_sharers(cli: click.Group) -> None:
    @cli.group(cls=SnfGroup)
    def sharer() -> None:
        """The accounts that share objects with you; browse one with
        `snf file -A <uuid> ...`.

        \b
        Example:
          snf sharer list
          snf file -A 0f1c...-uuid list shared-container
        """

    @sharer.command("list")
    @click.option("--limit", type=click.IntRange(1), help="at most this many accounts")
    @pass_app
    def sharer_list(app: App, limit: int | None) -> None:
        """List the accounts that share objects with you (-o json: as the
        storage API lists them).

        \b
        Example:
          snf sharer list
          snf -o json sharer list
        """
        found = list(app.client.sharers(limit=limit))
        if app.json:
            show(True, found)
            return
        emails = _emails(app.cloud, [str(s.get("name", "")) for s in found])
        rows = [{**s, "email": emails.get(str(s.get("name", "")), ""),
                 "last_modified": str(s.get("last_modified") or "")[:19]} for s in found]
        show(False, rows, SHARER_COLUMNS, empty="nobody shares objects with you")


def register(cli: click.Group) -> None:
    """Add ``restore``, ``append``, ``overwrite`` and ``truncate`` to the
    ``file`` group of ``cli``, and the ``sharer`` group."""
    file = cli.commands["file"]
    assert isinstance(file, click.Group)
    register_file_commands(file)
    register_sharers(cli)
