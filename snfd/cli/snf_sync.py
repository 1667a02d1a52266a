"""``snf sync`` (also ``snf file sync``): a folder and a container path
kept equal, once or, with ``--watch``, for as long as it runs
(``snfd.client.sync`` for a pass, ``snfd.client.watch`` for the watching).

Each action is printed as it starts (``upload  path``); with ``-o json``
every line is a JSON object (``{"event": "upload", "path": ...}``, then
``{"event": "pass", ...}`` with what the pass did and the body bytes it
moved), flushed at once, for scripts and logs.  SIGTERM ends a watch
cleanly (the state is saved; a partial download stays to be resumed).
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from snfd.cli.output import exit_code
from snfd.cli.snf_app import App, BarProgress, Failed, pass_app
from snfd.client import sync as transfer
from snfd.client.pithos import ClientError
from snfd.client.watch import PassResult, Timing, Watcher


def _line(app: App, event: str, **fields: Any) -> None:
    if app.json:
        click.echo(json.dumps({"event": event, **fields}, sort_keys=True))
    else:
        words = " ".join(f"{k}={v}" for k, v in fields.items())
        click.echo(f"{event:<13} {words}", err=event != "pass")
    sys.stdout.flush()


class _Actions(BarProgress):
    """Progress bars as for a transfer; each action as a line (JSON with
    ``-o json``)."""

    def __init__(self, app: App):
        super().__init__(not app.quiet and sys.stderr.isatty())
        self.app = app

    def action(self, action: transfer.Action) -> None:
        if self.app.json:
            _line(self.app, action.kind, path=action.path)
        else:
            super().action(action)
            sys.stdout.flush()


def _report(app: App, report: transfer.SyncReport) -> None:
    for action in report.skipped:
        click.echo(f"skipped {action.kind} {action.path}", err=True)
    for action, why in report.failed:
        click.echo(f"snf: {action.kind} {action.path}: {why}", err=True)


def _on_pass(app: App, result: PassResult) -> None:
    report = result.report
    if app.json:
        _line(app, "pass", done=len(report.done), failed=[
            {"kind": a.kind, "path": a.path, "error": why} for a, why in report.failed],
            held=report.held, sent=result.sent, received=result.received)
    else:
        _report(app, report)
        if report.done or report.failed:
            click.echo(f"synced: {len(report.done)} done, {len(report.failed)} failed;"
                       f" sent {result.sent} bytes, received {result.received} bytes",
                       err=True)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(0)


@click.command("sync")
@click.argument("localdir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("remote")
@click.option("--direction", type=click.Choice(["both", "up", "down"]), default="both",
              show_default=True, help="up: only change remote objects; down: only local files")
@click.option("--no-delete", is_flag=True, help="never delete, only copy")
@click.option("--dry-run", "-n", is_flag=True, help="only print what would be done")
@click.option("--watch", "-W", is_flag=True,
              help="keep running: sync again whenever either side changes")
@click.option("--interval", type=click.FloatRange(0.1), default=Timing().interval,
              show_default=True, help="with --watch: seconds between looks at the"
              " container, after a change")
@click.option("--max-interval", type=click.FloatRange(0.1), default=Timing().max_interval,
              show_default=True, help="with --watch: the longest, after quiet looks")
@click.option("--workers", "-w", type=click.IntRange(1, 64),
              default=transfer.DEFAULT_WORKERS, show_default=True,
              help="blocks transferred in parallel")
@pass_app
def sync_command(app: App, localdir: Path, remote: str, direction: str, no_delete: bool,
                 dry_run: bool, watch: bool, interval: float, max_interval: float,
                 workers: int) -> None:
    """Make LOCALDIR and CONTAINER[/PREFIX] hold the same files.

    A file changed on one side since the last sync is copied to the other
    (only the blocks that differ travel); a file deleted on one side and
    unchanged on the other is deleted there; a change wins over a
    deletion; when both sides changed, the local file is renamed
    "name (conflict).ext" and both are kept on both sides.  The last
    synced state is in LOCALDIR/.snf-sync.json: a sync killed at any point
    loses nothing, and the next run finishes it.

    With --watch it keeps running: local changes are seen at once
    (inotify), remote ones by looking at the container every --interval
    seconds, less often while nothing changes.  etc/systemd/snf-sync@.service
    runs it as a user service.

    \b
    Examples:
      snf sync ~/Documents pithos/Documents
      snf sync ~/Documents pithos/Documents --watch
      snf -o json sync ~/photos photos --direction up --no-delete
    """
    container, prefix = app.remote(remote)
    client = app.client
    progress = _Actions(app)
    options: dict[str, Any] = {"direction": direction, "delete": not no_delete,
                               "workers": workers, "progress": progress}
    if dry_run:
        report = transfer.sync(client, localdir, container, prefix, dry_run=True, **options)
        for action in report.done:
            progress.action(action)
        _report(app, report)
        return
    try:
        client.container_info(container)
    except ClientError as e:
        if e.status != 404:
            raise
        client.create_container(container)
    if not watch:
        before = (client.transport.counters.sent, client.transport.counters.received)
        report = transfer.sync(client, localdir, container, prefix, **options)
        result = PassResult(report, client.transport.counters.sent - before[0],
                            client.transport.counters.received - before[1])
        if app.json:
            _on_pass(app, result)
        else:
            _report(app, report)
        if report.failed:
            raise click.exceptions.Exit(1)
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        Watcher(client, localdir, container, prefix,
                timing=Timing(interval=interval, max_interval=max(interval, max_interval)),
                on_pass=lambda result: _on_pass(app, result),
                on_wait=lambda why: _line(app, "waiting", why=why), **options).run()
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None
    except ClientError as e:
        raise Failed(str(e), exit_code(e.status)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def register(cli: click.Group) -> None:
    cli.add_command(sync_command)
    file_group = cli.commands["file"]
    assert isinstance(file_group, click.Group)
    file_group.add_command(sync_command)
