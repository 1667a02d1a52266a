"""What every ``snf`` command shares: the run's state (``App``: the
cloud's settings, from a profile of the config file or a ``clouds.yaml``
entry, transport, the object-store client, the other APIs' ``Cloud``,
``-o json``), one-line failures with meaningful exit codes (``Failed``,
``SnfGroup``: ``snfd.cli.output.exit_code``) and progress bars.

Command groups live in modules of their own (``snfd.cli.snf`` for files
and login, ``snf_account``, ``snf_compute``, ``snf_network``) and take
``pass_app``; ``snfd.cli.snf`` assembles them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from snfd.cli.output import exit_code
from snfd.client import clouds_yaml
from snfd.client import config as cfg
from snfd.client import sync as transfer
from snfd.client.cloud import Cloud
from snfd.client.pithos import (
    ClientError,
    Login,
    PithosClient,
    Transport,
    login_app_credential,
    login_password,
    login_token,
)


class Failed(click.ClickException):
    """Ends the command: ``snf: <message>`` on stderr, status ``code``
    (1 unless an API's status says more: ``snfd.cli.output.exit_code``)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.exit_code = code  # type: ignore[misc]  # click's class default is 1

    def show(self, file: Any = None) -> None:
        click.echo(f"snf: {self.format_message()}", err=True)


def fail(message: str) -> NoReturn:
    raise Failed(message)


class SnfGroup(click.Group):
    """Turns client, config and file errors into one-line failures, with
    the exit code of the HTTP status (``snfd.cli.output.exit_code``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as e:
            raise Failed(str(e), exit_code(e.status)) from None
        except cfg.ConfigError as e:
            raise Failed(f"config: {e}") from None
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            raise Failed(f"{where}{e.strerror or e}") from None


class BarProgress(transfer.Progress):
    """Rich progress bars on stderr (none when quiet or not a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def start(self, label: str, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                             TransferSpeedColumn(), TimeRemainingColumn(),
                             console=Console(stderr=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task(label, total=total)

    def advance(self, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, nbytes)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def action(self, action: transfer.Action) -> None:
        click.echo(f"{action.kind:<13} {action.path}")


class StatusLine:
    """A spinner with a status text and, when known, a percentage, on
    stderr while something is awaited (``App.status``); silent when
    ``enabled`` is false (``-q``, or stderr is not a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def update(self, text: str, percent: Any = None) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                      BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                      console=Console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task("", total=100)
        done = percent if isinstance(percent, int) and 0 <= percent <= 100 else 0
        self._progress.update(self._task, description=text, completed=done)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None



def login_entry(transport: Transport, entry: clouds_yaml.OsCloud,
                ask_password: Callable[[], str]) -> Login:
    """Log in as a ``clouds.yaml`` entry says: its token, its application
    credential, else its user's password (``ask_password()`` when the
    entry has none)."""
    if entry.token:
        return login_token(transport, entry.url, entry.token)
    if entry.app_credential_secret:
        return login_app_credential(
            transport, entry.url, entry.app_credential_secret,
            credential_id=entry.app_credential_id, name=entry.app_credential_name,
            username=entry.username)
    return login_password(transport, entry.url, entry.username,
                          entry.password or ask_password())

class App:
    """The state of one ``snf`` run: settings, transport, client.

    The settings are those of one cloud (profile) of the config file: the
    ``--cloud`` one (``cloud_name``), else the current one; or, with
    ``--os-cloud`` (``os_cloud``), those a login as that ``clouds.yaml``
    entry gives, kept in memory only.
    """

    def __init__(self, config_path: Path | None, stats: bool, quiet: bool,
                 output: str = "table", cloud_name: str | None = None,
                 os_cloud: str | None = None):
        self.config_path = config_path
        self.stats = stats
        self.quiet = quiet
        #: ``-o json``: listings and details as JSON (``snfd.cli.output``).
        self.json = output == "json"
        #: ``--cloud``/``$SNF_CLOUD``: the profile of this run (None: the current one).
        self.cloud_name = cloud_name or None
        #: ``--os-cloud``/``$OS_CLOUD``: a clouds.yaml entry instead of a profile.
        self.os_cloud = os_cloud or None
        self.transport = Transport()
        self._settings: cfg.Settings | None = None
        self._profiles: cfg.Profiles | None = None
        self.account: str | None = None

    @property
    def profiles(self) -> cfg.Profiles:
        """The config file's clouds, as read once in this run."""
        if self._profiles is None:
            self._profiles = cfg.load_profiles(self.config_path)
        return self._profiles

    @property
    def profile(self) -> str:
        """The name of the profile this run uses."""
        return self.profiles.selected(self.cloud_name)

    @property
    def settings(self) -> cfg.Settings:
        if self._settings is None:
            if self.os_cloud:
                self._settings = self.os_cloud_login(self.os_cloud)
            else:
                found = self.profiles.clouds.get(self.profile)
                if found is None and self.cloud_name:
                    fail(f"no cloud named {self.cloud_name!r} (see `snf cloud list`;"
                         f" `snf login --cloud {self.cloud_name} ...` makes it)")
                self._settings = found or cfg.Settings()
        return self._settings

    def save(self) -> Path | None:
        """Store the settings in their profile; None (nothing written) when
        they come from ``--os-cloud``."""
        if self.os_cloud:
            click.echo("snf: not stored: --os-cloud logs in again every run"
                       " (`snf login --os-cloud NAME` stores a profile)", err=True)
            return None
        return cfg.save(self.settings, self.config_path, self.profile)

    def os_cloud_login(self, name: str) -> cfg.Settings:
        """Log in as the ``clouds.yaml`` entry ``name`` says (a password
        it lacks: ``$SNF_PASSWORD``, else asked); the settings, not stored."""
        entry = clouds_yaml.find(name)
        found = login_entry(self.transport, entry, lambda: os.environ.get(
            "SNF_PASSWORD") or click.prompt(f"Password of {entry.username} ({name})",
                                            hide_input=True, err=True))
        return cfg.Settings(url=entry.url, token=found.token, user=found.user,
                            email=found.email or entry.username,
                            storage_url=found.storage_url, endpoints=dict(found.endpoints))

    @property
    def cloud(self) -> Cloud:
        """The other APIs (compute, network, account ...), logged in."""
        return Cloud(self.transport, self.settings)

    @property
    def client(self) -> PithosClient:
        s = self.settings
        if not s.token or not s.storage_url:
            fail("not logged in: run `snf login --url URL --user EMAIL` first")
        client = PithosClient(self.transport, s.storage_url, s.token)
        return client.for_account(self.account) if self.account else client

    def status(self) -> StatusLine:
        """A status line for a wait (stop it when done)."""
        return StatusLine(not self.quiet and sys.stderr.isatty())

    def progress(self) -> BarProgress:
        return BarProgress(not self.quiet and sys.stderr.isatty())

    def remote(self, value: str) -> tuple[str, str]:
        """``(container, name)`` of a remote path (``name`` may be "")."""
        value = value.lstrip("/")
        container, _, name = value.partition("/")
        if not container:
            container = self.settings.container or cfg.DEFAULT_CONTAINER
        return container, name

    def print_stats(self) -> None:
        c = self.transport.counters
        click.echo(f"sent {c.sent} bytes, received {c.received} bytes"
                   f" in {c.requests} requests", err=True)


pass_app = click.make_pass_decorator(App)


__all__ = ["App", "BarProgress", "Failed", "SnfGroup", "StatusLine", "fail", "pass_app"]
