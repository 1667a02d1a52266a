"""The node's configuration: one INI file, validated against declared keys.

Every section and key is declared (``Key``); anything undeclared, a value of
the wrong type or a missing required value raises ``ConfigError`` whose text
is one line naming the file, the section and the key.  The core sections are
declared here; each plugin declares its own section through
``ISnfdPlugin.config_keys``.

A *family* of sections (declared as ``"prefix:*"``, e.g. ``"oidc:*"``)
validates every section named ``[prefix:NAME]`` against the same keys:
several configured things of one kind (OpenID Connect providers), each in
a section of its own.

Precedence, highest first: command-line options, environment variables
(``SNFD_*``), the file, the declared defaults.  A secret key ``k`` may be
given as ``k_file = /path`` instead: the file's content (stripped) is used.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

REQUIRED: Any = object()


class ConfigError(Exception):
    """A configuration problem; ``str()`` is one line meant for an operator."""

    def __init__(self, where: str, section: str, key: str | None, problem: str):
        self.where, self.section, self.key, self.problem = where, section, key, problem
        name = f"[{section}] {key}" if key else f"[{section}]"
        super().__init__(f"{where}: {name}: {problem}")


# -- value types: each parses text or raises ValueError with a reason ------

def text(value: str) -> str:
    return value.strip()


def integer(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {value.strip()!r}") from None


def positive_integer(value: str) -> int:
    n = integer(value)
    if n < 1:
        raise ValueError(f"expected an integer >= 1, got {n}")
    return n


def number(value: str) -> float:
    try:
        n = float(value.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {value.strip()!r}") from None
    if n < 0 or n != n or n == float("inf"):
        raise ValueError(f"expected a finite number >= 0, got {value.strip()!r}")
    return n


_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}


def quantity(value: str) -> int:
    """A count or a size with a binary unit: ``1024``, ``10G``, ``512MiB``."""
    t = value.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1] if t and t[-1] in _UNITS else ""
    digits = t[: len(t) - len(unit)]
    if not digits.isdigit():
        raise ValueError(f"expected a count or a size like 10G, got {value.strip()!r}")
    return int(digits) * _UNITS[unit]


def boolean(value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"expected yes/no/true/false/on/off/1/0, got {value.strip()!r}")


def names(value: str) -> tuple[str, ...]:
    """Comma- or whitespace-separated words; empty text is an empty tuple."""
    return tuple(w for w in value.replace(",", " ").split() if w)


def descriptions(value: str) -> tuple[str, ...]:
    """Whitespace-separated strports descriptions (they contain commas and
    colons, never spaces)."""
    return tuple(value.split())


def networks(value: str) -> tuple[str, ...]:
    """Comma- or whitespace-separated IP addresses or networks
    (``10.0.0.0/24``); empty text is an empty tuple."""
    import ipaddress

    found = names(value)
    for n in found:
        try:
            ipaddress.ip_network(n, strict=False)
        except ValueError:
            raise ValueError(f"expected IP addresses or networks, got {n!r}") from None
    return found


def one_of(*choices: str) -> Callable[[str], str]:
    """One of ``choices`` (matched without regard to case)."""
    def parse(value: str) -> str:
        v = value.strip().lower()
        if v not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value.strip()!r}")
        return v
    return parse


def path(value: str) -> Path:
    v = value.strip()
    if not v:
        raise ValueError("expected a path, got an empty value")
    return Path(v).expanduser()


@attrs.frozen
class Key:
    """One declared configuration key.

    ``parse`` turns the text into a value or raises ``ValueError`` with the
    reason.  ``default`` is used when the key is absent (``REQUIRED``: it
    must be given).  ``env`` names an environment variable that overrides
    the file.  ``secret`` allows ``<name>_file``.
    """

    name: str
    parse: Callable[[str], Any]
    default: Any = REQUIRED
    doc: str = ""
    env: str | None = None
    secret: bool = False
    shown: str | None = None  # the default as documented, when it varies


@attrs.frozen
class Section:
    """The validated values of one section, by attribute or by item."""

    name: str
    values: Mapping[str, Any]

    def __getattr__(self, key: str) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raise AttributeError(f"[{self.name}] has no key {key!r}") from None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


@attrs.frozen
class Config:
    """The whole validated configuration."""

    source: str
    sections: Mapping[str, Section]

    def __getitem__(self, name: str) -> Section:
        return self.sections[name]

    @property
    def node(self) -> Section:
        return self.sections["node"]

    @property
    def database(self) -> Section:
        return self.sections["database"]

    @property
    def bus(self) -> Section:
        return self.sections["bus"]

    @property
    def plugins(self) -> Section:
        return self.sections["plugins"]


def _default_state_dir() -> str:
    if os.geteuid() == 0:
        return "/var/lib/snfd"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "snfd")


def _listen(value: str) -> tuple[str, ...]:
    found = descriptions(value)
    if not found:
        raise ValueError("expected at least one endpoint, e.g. tcp:8080:interface=127.0.0.1")
    for d in found:
        kind = d.split(":", 1)[0]
        if kind not in ("tcp", "ssl", "tls", "unix", "tcp6"):
            raise ValueError(
                f"unsupported endpoint {d!r}: use tcp:PORT[:interface=ADDR],"
                " ssl:PORT[:interface=ADDR] or unix:PATH")
    return found


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip()
        if v and v.split(":", 1)[0] not in schemes:
            raise ValueError(
                f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}"
                " (or empty for the embedded default)")
        return v
    return parse


CORE_KEYS: dict[str, Sequence[Key]] = {
    "node": (
        Key("id", text, "", "This node's unique name in the cluster; empty: generated"
            " once and kept in <state_dir>/node-id."),
        Key("state_dir", path, _default_state_dir(),
            "Where the node keeps its state (node id, embedded PostgreSQL).",
            env="SNFD_STATE_DIR",
            shown="/var/lib/snfd as root, else $XDG_STATE_HOME/snfd"),
        Key("listen", _listen, ("tcp:8080:interface=127.0.0.1",),
            "Whitespace-separated endpoints of the HTTP site: tcp:PORT:interface=ADDR"
            " and/or ssl:PORT:interface=ADDR (certificate from tls_certificate/tls_key).",
            env="SNFD_LISTEN"),
        Key("tls_certificate", text, "", "PEM certificate (chain) for ssl: endpoints."),
        Key("tls_key", text, "", "PEM private key for ssl: endpoints."),
        Key("address", text, "", "Base URL other nodes and clients use to reach this"
            " node; empty: derived from the first listen endpoint."),
        Key("drain_grace", number, 0.0,
            "Seconds a stopping node answers /_health with 503 before it closes"
            " its listeners, so a load balancer stops sending it requests"
            " (with haproxy checking every 0.5 s, fall 2: 2)."),
        Key("drain_timeout", number, 30.0,
            "Seconds a stopping node waits for requests in flight to finish."),
        Key("heartbeat_interval", number, 5.0,
            "Seconds between membership heartbeats; a node missing 3 is shown dead."),
        Key("election_interval", number, 0.2,
            "Seconds between leader-lock attempts and leader pings."),
        Key("identity_url", _url("http", "https"), "",
            "Base URL of a node running the identity service, for a node that does"
            " not run it: tokens and quota go there over HTTP (needs component_token)."),
        Key("component_token", text, "",
            "This node's component token (`snf-manage component-add NAME`), used"
            " with identity_url.", secret=True),
        Key("leader_session_timeout", number, 2.0,
            "idle_session_timeout (seconds) of the leader's lock session: a frozen"
            " leader loses leadership after this long."),
        Key("cluster_trusted", networks, (),
            "IP addresses or networks whose callers may read /_cluster without an"
            " administrator's token; empty: administrators only.  Never list the"
            " address a reverse proxy connects from (127.0.0.1 behind a proxy on"
            " the same host): every client would be trusted.",
            env="SNFD_CLUSTER_TRUSTED"),
    ),
    "database": (
        Key("url", _url("postgresql", "postgres"), "",
            "libpq URL of the cluster's PostgreSQL; empty: a private PostgreSQL"
            " in <state_dir>/postgres.", env="SNFD_DATABASE_URL", secret=True),
        Key("pool_min", positive_integer, 3, "Connections the pool opens at start."),
        Key("pool_max", positive_integer, 10, "Most connections the pool holds."),
        Key("auto_upgrade", boolean, False,
            "Apply pending migrations at start (always on for the embedded default)."),
        Key("retry_window", number, 30.0,
            "Seconds an interaction keeps retrying while the database is unreachable."),
    ),
    "bus": (
        Key("url", _url("amqp", "amqps"), "",
            "AMQP URL of the RabbitMQ broker, or the URLs of a cluster's"
            " brokers separated by spaces (tried in turn); empty: the"
            " in-process bus.",
            env="SNFD_BUS_URL", secret=True),
        Key("queue_type", one_of("classic", "quorum"), "classic",
            "Type of the queues the node declares: quorum for queues"
            " replicated across a RabbitMQ cluster (a queue keeps the type it"
            " was first made with)."),
        Key("publish_timeout", number, 30.0,
            "Seconds a publish waits for the broker's confirm before failing."),
        Key("reconnect_max_delay", number, 30.0,
            "Longest pause between reconnection attempts."),
    ),
    "plugins": (
        Key("enabled", names, None,
            "Comma-separated service plugins to run; absent: every installed one;"
            " empty: none.", env="SNFD_PLUGINS"),
    ),
}


def load_config(
    path: str | None,
    plugin_keys: Mapping[str, Sequence[Key]],
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, str], str] | None = None,
) -> Config:
    """Read, validate and type the configuration.

    @param path: the INI file, or ``None`` for defaults only.
    @param plugin_keys: every installed plugin's name and declared keys
        (sections of installed but disabled plugins are still validated).
    @param environ: the environment (``os.environ`` when ``None``).
    @param overrides: command-line values by ``(section, key)``.
    @raise ConfigError: on the first problem found.
    """
    environ = os.environ if environ is None else environ
    declared: dict[str, Sequence[Key]] = dict(CORE_KEYS)
    for name, keys in plugin_keys.items():
        if name in declared:
            raise ConfigError("plugins", name, None,
                              "a plugin uses the name of a core section")
        declared[name] = keys
    families = {name[:-2]: keys for name, keys in declared.items() if name.endswith(":*")}

    where = path or "defaults"
    parser = configparser.ConfigParser(interpolation=None, default_section="\x00")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f, source=path)
        except OSError as e:
            raise ConfigError(path, "file", None, f"cannot read: {e.strerror}") from None
        except configparser.Error as e:
            raise ConfigError(path, "file", None,
                              " ".join(str(e).split())) from None

    members = {s for s in parser.sections() if s not in declared}
    members |= {s for s, _ in (overrides or {}) if s not in declared and ":" in s}
    for section in sorted(members):
        family, _, member = section.partition(":")
        if family not in families:
            known = ", ".join(sorted(n.replace(":*", ":NAME") for n in declared))
            raise ConfigError(where, section, None,
                              f"unknown section (known: {known})")
        if not _MEMBER.match(member):
            raise ConfigError(where, section, None,
                              f"expected [{family}:NAME] with NAME of letters, digits,"
                              " '-' or '_'")

    sections = {}
    for name, keys in declared.items():
        if name.endswith(":*"):
            continue
        raw = dict(parser.items(name)) if parser.has_section(name) else {}
        sections[name] = _section(where, name, keys, raw, environ, overrides or {})
    for name in sorted(members):
        raw = dict(parser.items(name)) if parser.has_section(name) else {}
        sections[name] = _section(where, name, families[name.partition(":")[0]], raw,
                                  environ, overrides or {})
    return Config(source=where, sections=sections)


_MEMBER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _section(
    where: str,
    name: str,
    keys: Iterable[Key],
    raw: dict[str, str],
    environ: Mapping[str, str],
    overrides: Mapping[tuple[str, str], str],
) -> Section:
    by_name = {k.name: k for k in keys}
    for given in raw:
        base = given[:-5] if given.endswith("_file") else None
        if given in by_name or (base in by_name and by_name[base].secret):
            continue
        raise ConfigError(where, name, given, "unknown key")

    values: dict[str, Any] = {}
    for key in by_name.values():
        origin, value = where, None
        if key.name in raw:
            value = raw[key.name]
        if key.secret and f"{key.name}_file" in raw:
            if value is not None:
                raise ConfigError(where, name, key.name,
                                  f"give either {key.name} or {key.name}_file, not both")
            value = _read_secret(where, name, key.name, raw[f"{key.name}_file"])
        if key.env and key.env in environ:
            origin, value = f"environment {key.env}", environ[key.env]
        if (name, key.name) in overrides:
            origin, value = "command line", overrides[(name, key.name)]
        if value is None:
            if key.default is REQUIRED:
                raise ConfigError(where, name, key.name, "required but not set")
            values[key.name] = key.default
            continue
        try:
            values[key.name] = key.parse(value)
        except ValueError as e:
            raise ConfigError(origin, name, key.name, str(e)) from None
    return Section(name=name, values=values)


def _read_secret(where: str, section: str, key: str, filename: str) -> str:
    try:
        with open(filename.strip(), encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise ConfigError(where, section, f"{key}_file",
                          f"cannot read {filename.strip()}: {e.strerror}") from None


def example(plugin_keys: Mapping[str, Sequence[Key]] | None = None) -> str:
    """An INI text documenting every key with its default, commented out."""
    out = ["# snfd configuration: every key, with its default (commented out).",
           "# Secret keys may also be given as <key>_file = /path/to/file.", ""]
    all_keys = dict(CORE_KEYS)
    # Plugins in name order: the plugin scan's order differs between machines.
    all_keys.update(sorted((plugin_keys or {}).items()))
    for name, keys in all_keys.items():
        if name.endswith(":*"):
            out.append(f"# One section per name, e.g. [{name[:-2]}:NAME]:")
            out.append(f"#[{name[:-2]}:NAME]")
        else:
            out.append(f"[{name}]")
        for key in keys:
            for line in _wrap(key.doc):
                out.append(f"# {line}")
            extra = []
            if key.env:
                extra.append(f"environment: {key.env}")
            if key.secret:
                extra.append(f"secret: also {key.name}_file")
            if extra:
                out.append(f"# ({'; '.join(extra)})")
            shown = key.shown if key.shown is not None else _show(key.default)
            out.append(f"#{key.name} = {shown}")
            out.append("")
    return "\n".join(out)


def _show(value: Any) -> str:
    if value is REQUIRED:
        return "(required)"
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return " ".join(value)
    return str(value)


def _wrap(doc: str, width: int = 76) -> list[str]:
    lines, line = [], ""
    for word in doc.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    return lines
