"""``snf``: the user's command line for the whole cloud.

``snf login`` stores a token, the storage URL and the catalog's endpoints
in a profile of the config file (``snfd.client.config``; ``snf login``,
``logout``, ``cloud`` and ``completion`` are in ``snfd.cli.snf_login``);
``snf --cloud NAME`` picks a profile, ``snf --os-cloud NAME`` a
``clouds.yaml`` entry instead; ``snf file ...`` and ``snf container ...`` work
on the user's account (here).  Remote paths are
``container/path/to/object``; a path without a container part uses the
configured default container (``pithos``).  A remote path ending with
``/`` means "into this directory".  The other groups are in their own
modules (``COMMAND_MODULES``), over the same ``snfd.cli.snf_app.App``.

Errors end the command with one line on stderr (the server's fault
message) and an exit code that says what failed (``snfd.cli.output``);
``-o json`` prints listings and details as JSON; ``--stats`` prints the
body bytes sent and received.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import click

from snfd.cli import snf_login
from snfd.cli.snf_app import App, SnfGroup, fail, pass_app
from snfd.client import config as cfg
from snfd.client import sync as transfer
from snfd.client.pithos import DIRECTORY_TYPES, ClientError, PithosClient


def _workers(f: Any) -> Any:
    return click.option("--workers", "-w", type=click.IntRange(1, 64),
                        default=transfer.DEFAULT_WORKERS, show_default=True,
                        help="blocks transferred in parallel")(f)


@click.group(cls=SnfGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="settings file (default: $SNF_CONFIG or ~/.config/snf/config.json)")
@click.option("--cloud", "cloud_name", envvar="SNF_CLOUD",
              help="the cloud (profile) of the settings file to use (default: the current"
              " one; $SNF_CLOUD)")
@click.option("--os-cloud", "os_cloud", envvar="OS_CLOUD",
              help="log in as this clouds.yaml entry says, storing nothing ($OS_CLOUD)")
@click.option("--stats", is_flag=True, help="print the bytes sent and received at the end")
@click.option("--quiet", "-q", is_flag=True, help="no progress bars")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="listings and details as a table or as JSON")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, cloud_name: str | None,
        os_cloud: str | None, stats: bool, quiet: bool, output: str) -> None:
    """The command line of a Synnefo-style (snfd) cloud: files, servers,
    networks, volumes, images, projects and quotas.

    Exit codes: 0 done; 1 other failures; 2 a bad command line; 3 not
    found; 4 not allowed (token, permission); 5 refused (bad request, or
    the state does not allow it); 6 over quota; 7 the cloud unreachable or
    unavailable."""
    if cloud_name and os_cloud:
        # $OS_CLOUD, set for the openstack client, yields to a chosen profile.
        if ctx.get_parameter_source("os_cloud") == click.core.ParameterSource.ENVIRONMENT:
            os_cloud = None
        elif ctx.get_parameter_source("cloud_name") == click.core.ParameterSource.ENVIRONMENT:
            cloud_name = None
        else:
            fail("give --cloud or --os-cloud, not both")
    app = App(config_path, stats, quiet, output, cloud_name, os_cloud)
    ctx.obj = app
    ctx.call_on_close(app.transport.close)
    if stats:
        ctx.call_on_close(app.print_stats)


# -- login, logout, cloud, completion: snfd.cli.snf_login ---------------------

snf_login.register(cli)


# -- containers -----------------------------------------------------------------


@cli.group(cls=SnfGroup)
def container() -> None:
    """List, create and delete containers."""


def _print_containers(app: App, long: bool) -> None:
    for item in app.client.containers():
        if long:
            policy = item.get("x_container_policy") or {}
            click.echo(f"{item.get('bytes', 0):>14} {item.get('count', 0):>8}"
                       f" {str(item.get('last_modified', ''))[:19]:19}"
                       f" {policy.get('versioning', ''):5} {item['name']}")
        else:
            click.echo(item["name"])


@container.command("list")
@click.option("--long", "-l", is_flag=True, help="bytes, objects, modified, versioning")
@pass_app
def container_list(app: App, long: bool) -> None:
    """List the containers of the account.

    \b
    Examples:
      snf container list
      snf container list -l
    """
    _print_containers(app, long)


@container.command("create")
@click.argument("name")
@click.option("--versioning", type=click.Choice(["auto", "none"]))
@click.option("--quota", type=click.IntRange(0), help="bytes (0: unlimited)")
@click.option("--project", help="project uuid the container's space is charged to")
@pass_app
def container_create(app: App, name: str, versioning: str | None, quota: int | None,
                     project: str | None) -> None:
    """Create a container (or change the policy of an existing one).

    \b
    Examples:
      snf container create photos
      snf container create backups --versioning none --quota 10737418240
    """
    policy = {k: str(v) for k, v in (("Versioning", versioning), ("Quota", quota),
                                     ("Project", project)) if v is not None}
    if not app.client.create_container(name, policy=policy):
        click.echo(f"container {name} exists; policy updated", err=True)


@container.command("delete")
@click.argument("name")
@click.option("--recursive", "-r", is_flag=True, help="delete its objects too")
@pass_app
def container_delete(app: App, name: str, recursive: bool) -> None:
    """Delete a container (it must be empty unless -r).

    \b
    Examples:
      snf container delete old
      snf container delete scratch -r
    """
    app.client.delete_container(name, recursive=recursive)


@container.command("info")
@click.argument("name")
@pass_app
def container_info(app: App, name: str) -> None:
    """Show a container's headers (counts, block size, policy, meta).

    \b
    Example:
      snf container info pithos
    """
    _print_headers(app.client.container_info(name))


def _print_headers(headers: Any) -> None:
    skip = {"date", "server", "content-length", "connection", "keep-alive",
            "transfer-encoding"}
    for key in sorted(headers, key=str.lower):
        if key.lower() not in skip:
            click.echo(f"{key}: {headers[key]}")


# -- files -----------------------------------------------------------------------


@cli.group(cls=SnfGroup)
@click.option("--account", "-A", help="work on another user's account (shared objects)")
@pass_app
def file(app: App, account: str | None) -> None:
    """Upload, download, list and manage objects (container/path)."""
    app.account = account


def _target(app: App, remote: str | None, leaf: str) -> tuple[str, str]:
    """Where ``leaf`` goes for a remote path given by the user."""
    container, name = app.remote(remote or "")
    if not name or remote is None or remote.endswith("/"):
        name = f"{name.rstrip('/')}/{leaf}" if name.strip("/") else leaf
    return container, name


def _describe(result: Any, verb: str, where: str) -> str:
    blocks = getattr(result, "uploaded_blocks", getattr(result, "fetched_blocks", 0))
    return (f"{verb} {where} ({result.size} bytes; {blocks} of {result.blocks}"
            f" blocks transferred)")


@file.command()
@click.argument("local", type=click.Path(exists=True, path_type=Path))
@click.argument("remote", required=False)
@click.option("--recursive", "-r", is_flag=True, help="upload a directory tree")
@click.option("--content-type", help="default: guessed from the file name")
@click.option("--public", is_flag=True, help="publish the object")
@_workers
@pass_app
def upload(app: App, local: Path, remote: str | None, recursive: bool,
           content_type: str | None, public: bool, workers: int) -> None:
    """Upload LOCAL to REMOTE (default: the default container, same name).

    Only the blocks the server lacks are sent; after an interruption, run
    it again to send the rest.

    \b
    Examples:
      snf file upload report.pdf
      snf file upload ~/photos pithos/photos -r
      snf file upload poster.png pithos/public/poster.png --public
    """
    client = app.client
    container, name = _target(app, remote, local.resolve().name)
    headers = {"X-Object-Public": "true"} if public else {}
    if local.is_dir():
        if not recursive:
            fail(f"{local} is a directory (use -r)")
        files = sorted(p for p in local.rglob("*") if p.is_file() and not p.is_symlink())
        pairs = [(p, f"{name}/{p.relative_to(local).as_posix()}") for p in files]
    else:
        pairs = [(local, name)]
    try:
        params = client.block_params(container)
    except ClientError as e:
        if e.status != 404:
            raise
        if container != (app.settings.container or cfg.DEFAULT_CONTAINER):
            fail(f"no container {container!r} (make it: snf container create {container})")
        # A new account's default container is made by its first upload.
        client.create_container(container)
        params = client.block_params(container)
    for path, target in pairs:
        result = transfer.upload_file(
            client, path, container, target, workers=workers, progress=app.progress(),
            content_type=content_type or transfer.guess_type(path.name), headers=headers,
            block_params=params)
        click.echo(_describe(result, "uploaded", f"{container}/{target}"))


def _remote_files(client: PithosClient, container: str, prefix: str) -> Iterator[str]:
    for item in client.objects(container, prefix=prefix):
        ctype = str(item.get("content_type", "")).split(";")[0].strip()
        if ctype not in DIRECTORY_TYPES and not item["name"].endswith("/"):
            yield item["name"]


@file.command()
@click.argument("remote")
@click.argument("local", required=False, type=click.Path(path_type=Path))
@click.option("--recursive", "-r", is_flag=True, help="every object under REMOTE/")
@click.option("--version", "version", help="a version id (see `snf file versions`)")
@_workers
@pass_app
def download(app: App, remote: str, local: Path | None, recursive: bool,
             version: str | None, workers: int) -> None:
    """Download REMOTE to LOCAL (default: its name in this directory).

    Blocks that the local file already holds are not fetched; an
    interrupted download resumes from its partial file.

    \b
    Examples:
      snf file download pithos/report.pdf
      snf file download pithos/photos ~/photos -r
      snf file download pithos/notes.txt old.txt --version 1234
    """
    client = app.client
    container, name = app.remote(remote)
    leaf = PurePosixPath(name.rstrip("/")).name or container
    dest = local if local is not None else Path(leaf)
    if recursive:
        prefix = name.rstrip("/") + "/" if name.strip("/") else ""
        for obj in _remote_files(client, container, prefix):
            rel = obj[len(prefix):]
            if not transfer.safe_relpath(rel):
                click.echo(f"snf: skipping {container}/{obj}: not a safe local path", err=True)
                continue
            result = transfer.download_object(client, container, obj, dest / rel,
                                              workers=workers, progress=app.progress())
            click.echo(_describe(result, "downloaded", str(dest / rel)))
        return
    if not name:
        fail("give an object (container/name), or -r for a whole container")
    if dest.is_dir():
        dest = dest / leaf
    result = transfer.download_object(client, container, name, dest, version=version,
                                      workers=workers, progress=app.progress())
    click.echo(_describe(result, "downloaded", str(dest)))


@file.command("list")
@click.argument("path", required=False)
@click.option("--long", "-l", is_flag=True, help="size, modification time, type")
@click.option("--delimiter", "-d", help="group names up to this character (e.g. /)")
@click.option("--limit", type=click.IntRange(1), help="at most this many entries")
@pass_app
def file_list(app: App, path: str | None, long: bool, delimiter: str | None,
              limit: int | None) -> None:
    """List containers, or the objects of container[/prefix].

    \b
    Examples:
      snf file list
      snf file list pithos/photos/ -l
      snf file list pithos -d /
    """
    if path is None:
        _print_containers(app, long)
        return
    container, prefix = app.remote(path)
    for item in app.client.objects(container, prefix=prefix, delimiter=delimiter,
                                   limit=limit):
        if "subdir" in item:
            click.echo(f"{'':>14} {'':19} {item['subdir']}" if long else item["subdir"])
            continue
        shown = item["name"]
        ctype = str(item.get("content_type", "")).split(";")[0].strip()
        if ctype in DIRECTORY_TYPES:
            shown += "/"
        if long:
            flags = ("s" if item.get("x_object_sharing") else "-") + (
                "p" if item.get("x_object_public") else "-")
            click.echo(f"{item.get('bytes', 0):>14} {str(item.get('last_modified', ''))[:19]:19}"
                       f" {flags} {shown}")
        else:
            click.echo(shown)


@file.command()
@click.argument("remote")
@click.option("--version", "version", help="a version id")
@pass_app
def info(app: App, remote: str, version: str | None) -> None:
    """Show the headers of an object (or of a container).

    \b
    Examples:
      snf file info pithos/notes.txt
      snf file info pithos/notes.txt --version 1234
    """
    container, name = app.remote(remote)
    if not name:
        _print_headers(app.client.container_info(container))
    else:
        _print_headers(app.client.object_info(container, name, version))


@file.command()
@click.argument("remote")
@pass_app
def mkdir(app: App, remote: str) -> None:
    """Create a directory object (application/directory).

    \b
    Example:
      snf file mkdir pithos/photos
    """
    container, name = app.remote(remote)
    if not name.strip("/"):
        fail("give a directory path: container/dir")
    app.client.mkdir(container, name)


@file.command()
@click.argument("remote")
@click.option("--version", "version", help="a version id")
@pass_app
def cat(app: App, remote: str, version: str | None) -> None:
    """Write an object's bytes to standard output.

    \b
    Examples:
      snf file cat pithos/notes.txt
      snf file cat pithos/notes.txt --version 1234 > old.txt
    """
    container, name = app.remote(remote)
    if not name:
        fail("give an object: container/name")
    _, chunks = app.client.get_object(container, name, version)
    out = sys.stdout.buffer
    for chunk in chunks:
        out.write(chunk)
    out.flush()


def _copy(app: App, src: str, dst: str, move: bool, recursive: bool) -> None:
    container, name = app.remote(src)
    if not name:
        fail("give an object to copy: container/name")
    leaf = PurePosixPath(name.rstrip("/")).name
    dst_container, dst_name = _target(app, dst, leaf)
    app.client.copy(container, name.rstrip("/") if recursive else name, dst_container,
                    dst_name, move=move, recursive=recursive)


@file.command()
@click.argument("src")
@click.argument("dst")
@click.option("--recursive", "-r", is_flag=True, help="also every object under SRC/")
@pass_app
def copy(app: App, src: str, dst: str, recursive: bool) -> None:
    """Copy an object (server side; no data is transferred).

    \b
    Examples:
      snf file copy pithos/a.txt pithos/b.txt
      snf file copy pithos/photos backup/photos -r
    """
    _copy(app, src, dst, False, recursive)


@file.command()
@click.argument("src")
@click.argument("dst")
@click.option("--recursive", "-r", is_flag=True, help="also every object under SRC/")
@pass_app
def move(app: App, src: str, dst: str, recursive: bool) -> None:
    """Move or rename an object (server side).

    \b
    Example:
      snf file move pithos/a.txt pithos/archive/a.txt
    """
    _copy(app, src, dst, True, recursive)


@file.command()
@click.argument("remote")
@click.option("--recursive", "-r", is_flag=True, help="also every object under REMOTE/")
@pass_app
def delete(app: App, remote: str, recursive: bool) -> None:
    """Delete an object (its versions stay readable).

    \b
    Examples:
      snf file delete pithos/a.txt
      snf file delete pithos/photos -r
    """
    container, name = app.remote(remote)
    if not name.strip("/"):
        fail("give an object (container/name); `snf container delete` removes containers")
    app.client.delete(container, name.rstrip("/") if recursive else name, recursive=recursive)


@file.command()
@click.argument("remote")
@pass_app
def versions(app: App, remote: str) -> None:
    """List an object's versions: id and time (UTC).

    \b
    Examples:
      snf file versions pithos/notes.txt
      snf file restore pithos/notes.txt --version 1234
    """
    container, name = app.remote(remote)
    for vid, ts in app.client.versions(container, name):
        when = datetime.datetime.fromtimestamp(ts, datetime.UTC)
        click.echo(f"{vid:>10} {when:%Y-%m-%d %H:%M:%S}")


def _names(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@file.command()
@click.argument("remote")
@click.option("--read", help="comma-separated user uuids, owner:group or *")
@click.option("--write", help="comma-separated user uuids, owner:group or *")
@click.option("--clear", is_flag=True, help="stop sharing")
@pass_app
def share(app: App, remote: str, read: str | None, write: str | None, clear: bool) -> None:
    """Set who may read or write an object (replaces its sharing).

    \b
    Examples:
      snf file share pithos/report.pdf --read <bob's uuid>,<my uuid>:team
      snf file share pithos/report.pdf --read '*'
      snf file share pithos/report.pdf --clear
    """
    container, name = app.remote(remote)
    if clear == bool(read or write):
        fail("give --read and/or --write, or --clear")
    app.client.set_sharing(container, name, _names(read), _names(write))


@file.command()
@click.argument("remote")
@pass_app
def publish(app: App, remote: str) -> None:
    """Make an object public and print its public URL.

    \b
    Example:
      snf file publish pithos/poster.png
    """
    container, name = app.remote(remote)
    url = app.client.set_public(container, name, True)
    click.echo(url or "published (the server returned no public URL)")


@file.command()
@click.argument("remote")
@pass_app
def unpublish(app: App, remote: str) -> None:
    """Stop publishing an object (its public URL stops working).

    \b
    Example:
      snf file unpublish pithos/poster.png
    """
    container, name = app.remote(remote)
    app.client.set_public(container, name, False)


#: The modules that add command groups to ``cli`` (each has ``register(cli)``).
COMMAND_MODULES: tuple[str, ...] = ("snfd.cli.snf_account", "snfd.cli.snf_compute",
                                    "snfd.cli.snf_network", "snfd.cli.snf_sync",
                                    "snfd.cli.snf_files")


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(cli)


_register()


def main(argv: list[str] | None = None) -> None:
    """The ``snf`` console script."""
    cli.main(args=argv, prog_name="snf")


if __name__ == "__main__":
    main()
