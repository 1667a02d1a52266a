"""``snf-manage``: administration of an snfd cluster.

It reads the same config file and ``SNFD_*`` environment as the daemon and
talks to the cluster database directly (no daemon needs to run).  With the
embedded default it uses the node's private PostgreSQL, starting it for the
duration of the command if the node is not running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2

from snfd import config as cfg
from snfd import plugin_loader
from snfd.cli import Interrupted, archip, cyclades, identity, networks, os_install, pithos
from snfd.cluster import store
from snfd.db import migrations
from snfd.db.embedded import EmbeddedPostgresError
from snfd.db.pool import connection_options
from snfd.tap import StartupError, load, select


class CommandError(Exception):
    """Ends the command with status 1 and this one-line message."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="snf-manage", description="Administer an snfd cluster.")
    parser.add_argument("--config", "-c", help="INI configuration file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("upgrade", help="apply pending database migrations")
    p.add_argument("--check", action="store_true",
                   help="only report pending migrations; exit 1 if any")
    p = sub.add_parser("cluster", help="show members, leader and epoch")
    p.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("config-check", help="validate the configuration and exit")
    sub.add_parser("config-example", help="print every config key, documented")

    identity.add_parsers(sub)
    pithos.add_parsers(sub)
    cyclades.add_parsers(sub)
    networks.add_parsers(sub)
    archip.add_parsers(sub)
    os_install.add_parsers(sub)

    args = parser.parse_args(argv)
    try:
        if args.command in identity.COMMANDS:
            return _with_reactor(args, "identity", identity.run)
        if args.command in pithos.COMMANDS:
            return _with_reactor(args, "pithos", pithos.run)
        if args.command in cyclades.COMMANDS:
            return _with_reactor(args, "cyclades", cyclades.run)
        if args.command in networks.COMMANDS:
            return _with_reactor(args, "cyclades", networks.run)
        if args.command in archip.COMMANDS:
            if not archip.needs_database(args):
                return archip.run_without_database(args)
            return _with_reactor(args, "identity", archip.run)
        if args.command in os_install.COMMANDS:
            return os_install.run(args)
        return _COMMANDS[args.command](args)
    except (CommandError, identity.CommandFailed, cyclades.CommandFailed, archip.CommandFailed,
            os_install.CommandFailed, pithos.CommandFailed, Interrupted,
            cfg.ConfigError,
            plugin_loader.PluginError, migrations.SchemaError, EmbeddedPostgresError,
            StartupError) as e:
        print(f"snf-manage: {e}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _database_url(config: cfg.Config) -> Iterator[str]:
    """The cluster database's DSN, starting the embedded server if needed."""
    embedded = None
    url = config.database.url
    if not url:
        from snfd.db.embedded import embedded_for_command

        embedded, url = embedded_for_command(Path(config.node.state_dir))
    try:
        yield url
    finally:
        if embedded is not None:
            embedded.stop()


@contextlib.contextmanager
def _connect(config: cfg.Config) -> Iterator[Any]:
    with _database_url(config) as url, _open(url) as conn:
        yield conn


@contextlib.contextmanager
def _open(url: str) -> Iterator[Any]:
    try:
        conn = psycopg2.connect(url, **connection_options("snf-manage"))
    except psycopg2.Error as e:
        raise CommandError(
            f"[database] url: cannot connect: {' '.join(str(e).split())}") from None
    try:
        yield conn
    finally:
        conn.close()


def _require_tables(conn: Any, plugins: dict[str, Any], name: str) -> None:
    """Refuse to run a plugin's command before its migrations are applied."""
    if name not in plugins:
        raise CommandError(f"the {name} plugin is not installed")
    with conn.cursor() as cur:
        if migrations.pending_txn(cur, [migrations.NODE_SCHEMA, plugins[name].schema]):
            raise CommandError(f"the database lacks the {name} tables; run"
                               " `snf-manage upgrade` first")
    conn.rollback()


def _with_reactor(args: argparse.Namespace, plugin: str,
                  run: Callable[[argparse.Namespace, cfg.Config, dict[str, Any], str], int],
                  ) -> int:
    """Run a command of ``plugin`` that works under a reactor of its own
    (``run(args, config, installed_plugins, dsn)``), once its tables exist."""
    config, plugins = load(args.config)
    with _database_url(config) as url:
        with _open(url) as conn:
            _require_tables(conn, plugins, plugin)
        return run(args, config, plugins, url)


def cmd_config_check(args: argparse.Namespace) -> int:
    config, plugins = load(args.config)
    select(config, plugins)
    print(f"{config.source}: OK")
    return 0


def cmd_config_example(args: argparse.Namespace) -> int:
    plugins = plugin_loader.installed()
    print(cfg.example(plugin_loader.config_keys(plugins)), end="")
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    config, plugins = load(args.config)
    chosen = plugin_loader.select(plugins, config.plugins.enabled)
    schemas = [migrations.NODE_SCHEMA] + [p.schema for p in chosen if p.schema is not None]
    with _connect(config) as conn:
        if args.check:
            with conn.cursor() as cur:
                todo = migrations.pending_txn(cur, schemas)
            conn.rollback()
            for m in todo:
                print(f"pending: {m.component} {m.version:04d}_{m.name}")
            if todo:
                return 1
            print("schema is up to date")
            return 0
        done = migrations.upgrade(conn, schemas)
    for m in done:
        print(f"applied: {m.component} {m.version:04d}_{m.name}")
    if not done:
        print("schema is up to date")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    config, _ = load(args.config)
    with _connect(config) as conn:
        with conn.cursor() as cur:
            if migrations.pending_txn(cur, [migrations.NODE_SCHEMA]):
                raise CommandError("the database has no cluster tables yet; run"
                                   " `snf-manage upgrade` first")
            members, lead = store.status_txn(cur, config.node.heartbeat_interval * 3)
        conn.rollback()
    if args.json:
        print(json.dumps({
            "leader": lead.leader, "epoch": lead.epoch,
            "leader_since": lead.since.isoformat() if lead.since else None,
            "members": [m.as_json() for m in members]}, indent=2))
        return 0
    print(f"leader: {lead.leader or '(none)'}   epoch: {lead.epoch}")
    rows = [("NODE", "ALIVE", "ADDRESS", "PLUGINS", "LAST HEARTBEAT")]
    for m in members:
        rows.append((m.id + (" *" if m.id == lead.leader else ""),
                     "yes" if m.alive else "no", m.address,
                     ",".join(m.plugins) or "-",
                     m.last_heartbeat.strftime("%Y-%m-%d %H:%M:%S")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


_COMMANDS = {
    "upgrade": cmd_upgrade,
    "cluster": cmd_cluster,
    "config-check": cmd_config_check,
    "config-example": cmd_config_example,
}


if __name__ == "__main__":
    sys.exit(main())
