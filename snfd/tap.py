"""``twistd snfd``: options, and the one place where the node is wired.

Everything that can be checked before the reactor runs is checked here,
synchronously (config, plugins, database reachability, schema), so that a
misconfigured node stops at once with one line naming the problem instead
of starting half-way.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

import attrs
import psycopg2
from twisted.application import service, strports
from twisted.logger import Logger
from twisted.python import usage

from snfd import config as cfg
from snfd import plugin_loader
from snfd.bus import make_bus
from snfd.clock import ClockWatch, MonotonicClock
from snfd.cluster.election import LeaderElection
from snfd.cluster.membership import Membership
from snfd.db import migrations
from snfd.db.embedded import EmbeddedPostgresError, ensure_embedded
from snfd.db.pool import Database, connection_options
from snfd.db.supervisor import EmbeddedSupervisor
from snfd.httpclient import HTTPClientPool
from snfd.interfaces import IAuthenticator, IQuotaHolder
from snfd.metrics import Metrics
from snfd.node import Node, NodeService, SharedResource
from snfd.web.drain import Drain, DrainOnStop
from snfd.web.site import Root, Site
from snfd.web.status import ClusterView, Health, MetricsPage

log = Logger(namespace="snfd.node")

_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")


class StartupError(Exception):
    """Stops the node before it starts; ``str()`` is one operator line."""


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run one snfd node.  Without --config and without a database URL the"
        " node runs the embedded default: a private PostgreSQL in the state"
        " directory, the in-process bus, every installed service plugin,"
        " listening on 127.0.0.1:8080.  Environment overrides: SNFD_STATE_DIR,"
        " SNFD_LISTEN, SNFD_DATABASE_URL, SNFD_BUS_URL, SNFD_PLUGINS"
        " (comma-separated; empty means none).  Command-line options override"
        " the environment, which overrides the file.")
    optParameters = [
        ["config", "c", None, "INI configuration file (see etc/snfd.conf.example)."],
        ["state-dir", None, None, "State directory (overrides [node] state_dir)."],
        ["listen", "l", None,
         "Endpoint(s), whitespace-separated strports descriptions"
         " (overrides [node] listen), e.g. tcp:8080:interface=127.0.0.1."],
    ]

    def overrides(self) -> dict[tuple[str, str], str]:
        out = {}
        if self["state-dir"]:
            out[("node", "state_dir")] = self["state-dir"]
        if self["listen"]:
            out[("node", "listen")] = self["listen"]
        return out


def makeService(options: Options) -> service.IService:
    from twisted.internet import reactor

    try:
        config, plugins = load(options["config"], options.overrides())
        return build(config, plugins, reactor)
    except (StartupError, cfg.ConfigError, plugin_loader.PluginError,
            migrations.SchemaError, EmbeddedPostgresError) as e:
        sys.stderr.write(f"snfd: {e}\n")
        sys.stderr.flush()
        raise SystemExit(1) from None


#: What the embedded default (no config file, no database URL) sets beyond
#: the keys' defaults: a server that names no network gets a port on the
#: public network the simulated cluster's demo content brings.
EMBEDDED_DEFAULTS: dict[tuple[str, str], str] = {
    ("cyclades", "default_server_networks"): "SNF:ANY_PUBLIC",
}


def load(config_path: str | None, overrides: dict[tuple[str, str], str] | None = None,
         ) -> tuple[cfg.Config, dict[str, Any]]:
    """Installed plugins and the validated config (for snf-manage too);
    on the embedded default, with ``EMBEDDED_DEFAULTS`` (under what the
    environment and the command line say)."""
    plugins = plugin_loader.installed()
    keys = plugin_loader.config_keys(plugins)
    config = cfg.load_config(config_path, keys, overrides=overrides)
    if config_path is None and not config.database.url:
        env = {(section, k.name): k.env for section, ks in keys.items() for k in ks}
        profile = {where: value for where, value in EMBEDDED_DEFAULTS.items()
                   if where[0] in keys and (env.get(where) or "") not in os.environ}
        if profile:
            config = cfg.load_config(None, keys, overrides={**profile, **(overrides or {})})
    return config, plugins


def open_database(config: cfg.Config, state_dir: Path) -> tuple[str, Any]:
    """The DSN of the cluster database, starting the embedded PostgreSQL when
    no URL is configured.  Returns ``(dsn, embedded_process_or_None)``."""
    url = config.database.url
    if url:
        return url, None
    pg = ensure_embedded(state_dir, log)
    return pg.dsn_for("snfd"), pg


def prepare_schema(dsn: str, schemas: list[migrations.Schema],
                   upgrade: bool) -> list[migrations.Migration]:
    """Check (or apply) the migrations of the node and its plugins."""
    try:
        conn = psycopg2.connect(dsn, **connection_options("snfd-upgrade"))
    except psycopg2.Error as e:
        raise StartupError(
            f"[database] url: cannot connect: {' '.join(str(e).split())}") from None
    try:
        if upgrade:
            return migrations.upgrade(conn, schemas)
        migrations.check(conn, schemas)
        return []
    finally:
        conn.close()


def node_schemas(plugins: list[Any]) -> list[migrations.Schema]:
    return [migrations.NODE_SCHEMA] + [p.schema for p in plugins if p.schema is not None]


def build(config: cfg.Config, installed: dict[str, Any], reactor: Any) -> NodeService:
    """Wire a node from validated config: the composition root."""
    plugins, remote = select(config, installed)
    state_dir = Path(config.node.state_dir)
    try:
        # Private: it holds credentials, the embedded database, the
        # simulated cluster's keys and (by default) the blocks.
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise StartupError(f"[node] state_dir: cannot create {state_dir}: {e.strerror}") from None
    _check_private(state_dir)
    node_id = _node_id(config, state_dir)
    listen = _endpoints(config)
    address = config.node.address or _address(listen[0])

    top = NodeService()
    dsn, embedded = open_database(config, state_dir)
    if embedded is not None:
        SharedResource("embedded-postgres", stop=embedded.stop).setServiceParent(top)
        # Added after it, so stopped before it: no restart while stopping.
        EmbeddedSupervisor(embedded, reactor).setServiceParent(top)
    try:
        _wire(top, config, plugins, remote, reactor, node_id, state_dir, listen, address,
              dsn, embedded is not None)
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    return top


def select(config: cfg.Config, installed: dict[str, Any]) -> tuple[list[Any], bool]:
    """The enabled plugins in build order, and whether the node itself
    provides the identity interfaces over HTTP (``[node] identity_url``
    with no identity plugin here)."""
    names = installed if config.plugins.enabled is None else config.plugins.enabled
    remote = bool(config.node.identity_url) and "identity" not in names
    external = REMOTE_IDENTITY if remote else ()
    return plugin_loader.select(installed, config.plugins.enabled, external), remote


def shared_resources(config: cfg.Config, reactor: Any, node_id: str, state_dir: Path,
                     address: str, dsn: str, plugins: list[Any],
                     application: str = "", clock: Any = None) -> Node:
    """The node's shared resources, built (not started); ``clock`` (the
    reactor unless given) is what services keep time with, and
    ``node.monotonic`` what they measure durations with: a
    ``MonotonicClock``, or ``clock`` itself when one is given (a test's
    ``task.Clock`` then drives both).  Membership and election schedule on
    the reactor and always measure with a ``MonotonicClock``."""
    steady = MonotonicClock()
    metrics = Metrics()
    db = Database(dsn, reactor, metrics, application_name=application or f"snfd:{node_id}",
                  min_connections=config.database.pool_min,
                  max_connections=max(config.database.pool_min, config.database.pool_max),
                  retry_window=config.database.retry_window)
    try:
        bus = make_bus(config.bus.url, reactor, metrics,
                       publish_timeout=config.bus.publish_timeout,
                       reconnect_max_delay=config.bus.reconnect_max_delay,
                       monotonic=steady, queue_type=config.bus.queue_type)
    except ValueError as e:
        raise StartupError(f"[bus] url: {e}") from None
    http = HTTPClientPool(reactor, metrics)
    membership = Membership(reactor, db, node_id, address, [p.name for p in plugins],
                            heartbeat_interval=config.node.heartbeat_interval,
                            monotonic=steady)
    election = LeaderElection(reactor, dsn, node_id, db, metrics,
                              interval=config.node.election_interval,
                              session_timeout=config.node.leader_session_timeout,
                              monotonic=steady)
    return Node(config=config, reactor=reactor, clock=clock or reactor,
                monotonic=steady if clock is None else clock, node_id=node_id,
                address=address,
                state_dir=state_dir, metrics=metrics, db=db, dsn=dsn, bus=bus,
                bus_kind="amqp" if config.bus.url else "in-process", http=http,
                membership=membership, election=election, root=Root(),
                plugins={p.name: p for p in plugins})


def build_services(node: Node, plugins: list[Any], remote: bool,
                   ) -> tuple[plugin_loader.Registry, list[tuple[Any, Any]]]:
    """Each plugin's service, built through its factory in dependency order,
    with the providers of the interfaces they offer one another."""
    registry = plugin_loader.Registry()
    if remote:
        for interface, provider in _remote_identity(node).items():
            registry.add("[node] identity_url", interface, provider)
    built = []
    for plugin in plugins:
        svc = plugin.makeService(node, node.config[plugin.name], registry.for_plugin(plugin))
        registry.add_plugin(plugin, svc)
        built.append((plugin, svc))
    return registry, built


def _wire(top: NodeService, config: cfg.Config, plugins: list[Any], remote: bool,
          reactor: Any, node_id: str, state_dir: Path, listen: list[str], address: str,
          dsn: str, embedded: bool) -> None:
    applied = prepare_schema(dsn, node_schemas(plugins),
                             upgrade=embedded or config.database.auto_upgrade)
    for m in applied:
        log.info("applied migration {component} {version:04d}_{name}",
                 component=m.component, version=m.version, name=m.name)

    node = shared_resources(config, reactor, node_id, state_dir, address, dsn, plugins)
    registry, built = build_services(node, plugins, remote)

    # Keeps the reactor's timers to their delays when the wall clock is set back.
    ClockWatch(reactor, node.monotonic).setServiceParent(top)
    SharedResource("database", start=node.db.start, stop=node.db.close).setServiceParent(top)
    SharedResource("bus", start=node.bus.start, stop=node.bus.stop).setServiceParent(top)
    SharedResource("http-client", stop=node.http.close).setServiceParent(top)
    node.membership.setServiceParent(top)

    drain = Drain(reactor, config.node.drain_grace, config.node.drain_timeout)
    mount(node, registry, built, drain)
    for plugin, svc in built:
        svc.setServiceParent(top)
        for description, factory in plugin.listeners(svc):
            try:
                strports.service(description, factory, reactor=reactor).setServiceParent(top)
            except (ValueError, KeyError, TypeError) as e:
                raise StartupError(
                    f"plugin {plugin.name}: listener {description!r}: {e}") from None
        for duty in plugin.duties(svc):
            node.election.add_duty(duty)
    node.election.setServiceParent(top)

    site = Site(node.root, reactor, node.metrics, drain)
    for description in listen:
        strports.service(description, site, reactor=reactor).setServiceParent(top)
    # Added after the listeners: stopped, and awaited, before they close.
    DrainOnStop(drain).setServiceParent(top)
    log.info("node {node} serving {address} (plugins: {plugins})", node=node_id,
             address=address, plugins=", ".join(p.name for p in plugins) or "none")
    top.node = node  # type: ignore[attr-defined]


def mount(node: Node, registry: plugin_loader.Registry,
          built: list[tuple[Any, Any]], drain: Drain | None = None) -> None:
    """Mount the node's own endpoints and every plugin's resources on
    ``node.root``; two plugins claiming one segment stop the node."""
    root = node.root
    root.mount("_health", Health(node, drain=drain))
    root.mount("_cluster", ClusterView(node, registry.get(IAuthenticator)))
    root.mount("metrics", MetricsPage(node.metrics))
    for plugin, svc in built:
        for segment, resource in dict(plugin.mounts(svc)).items():
            try:
                root.mount(segment, resource)
            except ValueError as e:
                raise StartupError(f"plugin {plugin.name}: {e}") from None


REMOTE_IDENTITY = (IAuthenticator, IQuotaHolder)


def _remote_identity(node: Node) -> dict[Any, Any]:
    """Tokens and quota over HTTP when the identity service runs elsewhere."""
    config = node.config
    if not config.node.component_token:
        raise StartupError("[node] component_token: required with identity_url")
    from snfd.identity.remote import RemoteAuthenticator
    from snfd.quota.remote import RemoteQuotaHolder

    base = config.node.identity_url.rstrip("/")
    return {
        IAuthenticator: RemoteAuthenticator(node.http, node.reactor, base + "/identity",
                                            config.node.component_token,
                                            monotonic=node.monotonic),
        IQuotaHolder: RemoteQuotaHolder(node.http, base + "/account/v1.0",
                                        config.node.component_token),
    }


@attrs.frozen
class Assembly:
    """Services built for an ``snf-manage`` command through the daemon's own
    factories, not started: ``services`` by plugin name.  The database
    pool is started; ``close()`` releases it and the HTTP pool."""

    node: Node
    services: dict[str, Any]
    providers: plugin_loader.Registry

    async def close(self) -> None:
        await self.node.http.close()
        self.node.db.close()


def assemble(config: cfg.Config, installed: dict[str, Any], reactor: Any, dsn: str,
             want: tuple[str, ...]) -> Assembly:
    """Build the services named in ``want`` (enabled in ``config``) and those
    they depend on, as the daemon would, for a command-line tool."""
    plugins, remote = select(config, installed)
    by_name = {p.name: p for p in plugins}
    for name in want:
        if name not in by_name:
            raise StartupError(f"[plugins] enabled: the {name} plugin is not enabled")
    needed = _closure([by_name[n] for n in want], plugins)
    state_dir = Path(config.node.state_dir)
    node = shared_resources(config, reactor, "snf-manage", state_dir,
                            config.node.address or _address(config.node.listen[0]), dsn, needed,
                            application="snf-manage")
    registry, built = build_services(node, needed, remote)
    node.db.start()
    return Assembly(node, {p.name: svc for p, svc in built}, registry)


def _closure(wanted: list[Any], ordered: list[Any]) -> list[Any]:
    """``wanted`` and the plugins providing what they require or use,
    transitively, in build order."""
    keep = set()
    todo = list(wanted)
    while todo:
        plugin = todo.pop()
        if plugin.name in keep:
            continue
        keep.add(plugin.name)
        interfaces = set(plugin.requires) | set(plugin.uses)
        todo += [p for p in ordered if interfaces & set(p.provides)]
    return [p for p in ordered if p.name in keep]


def _check_private(state_dir: Path) -> None:
    """Warn when other accounts may enter the state directory (one made by
    an older node, or by hand): it is not ours to chmod blindly (it may be
    a shared directory), but what it holds is the node's alone."""
    mode = state_dir.stat().st_mode & 0o777
    if mode & 0o007:
        log.warn("The state directory {path} is open to other accounts (mode {mode});"
                 " make it private: chmod 700 {path}", path=str(state_dir), mode=f"{mode:o}")


def _node_id(config: cfg.Config, state_dir: Path) -> str:
    node_id = config.node.id
    if not node_id:
        stored = state_dir / "node-id"
        if stored.exists():
            node_id = stored.read_text().strip()
        else:
            host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:32] or "node"
            node_id = f"{host}-{secrets.token_hex(3)}"
            tmp = stored.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(node_id + "\n")
            os.replace(tmp, stored)
    if not _NODE_ID.match(node_id):
        raise StartupError(
            f"[node] id: {node_id!r} must be 1-48 letters, digits, '.', '_' or '-'")
    return node_id


def _endpoints(config: cfg.Config) -> list[str]:
    """The listen descriptions, with the configured certificate filled into
    ``ssl:`` endpoints that do not name their own."""
    out = []
    for d in config.node.listen:
        if d.startswith(("ssl:", "tls:")):
            d = "ssl:" + d.split(":", 1)[1]
            if "privateKey=" not in d:
                cert, key = config.node.tls_certificate, config.node.tls_key
                if not cert or not key:
                    raise StartupError(
                        f"[node] tls_certificate: required for the TLS endpoint {d!r}")
                for name, p in (("tls_certificate", cert), ("tls_key", key)):
                    if not os.access(p, os.R_OK):
                        raise StartupError(f"[node] {name}: cannot read {p}")
                d += f":privateKey={_escape(key)}:certKey={_escape(cert)}"
        out.append(d)
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def _address(description: str) -> str:
    parts = description.split(":")
    kind = parts[0]
    if kind == "unix":
        return f"http+unix://{parts[1]}"
    port = parts[1] if len(parts) > 1 else "80"
    host = "127.0.0.1"
    for p in parts[2:]:
        if p.startswith("interface="):
            host = p.split("=", 1)[1] or host
    if host in ("0.0.0.0", "::"):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if kind in ('ssl', 'tls') else 'http'}://{host}:{port}"
