"""An OpenStack ``clouds.yaml`` entry as ``snf`` uses it (``snf --os-cloud
NAME``): where the cloud is and how to log in to it.

The file is the first that exists of ``$OS_CLIENT_CONFIG_FILE``,
``./clouds.yaml``, ``$XDG_CONFIG_HOME/openstack/clouds.yaml``
(``~/.config/openstack/clouds.yaml``) and ``/etc/openstack/clouds.yaml``
(``.yml`` too), the order of openstacksdk; only that file is read.

An entry logs in with a password (``auth_type`` ``password`` or
``v3password``, or none: ``auth.username`` and ``auth.password``) or a
token (``token``/``v3token``: ``auth.token``).  ``auth.auth_url`` is the
identity API, ``<base>/identity/v3``: the cloud's base URL is what comes
before ``/identity``.  A snfd cloud has one domain (``Default``); a user
domain naming another is refused.  What ``snf`` does not use (``region_name``,
``project_*``: the token is scoped to the user's base project; ``interface``
...) is ignored; ``secure.yaml``, vendor profiles, ``cacert``/``verify`` and
application credentials are not supported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from snfd.client.config import ConfigError

#: The ``auth_type`` values of a password and of a token login.
PASSWORD_TYPES = frozenset({"password", "v3password"})
TOKEN_TYPES = frozenset({"token", "v3token"})


@attrs.frozen
class OsCloud:
    """One entry: the cloud's base ``url`` and the login (``password`` set
    for a password login, else ``token``); ``source`` the file."""

    name: str
    url: str
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    token: str = attrs.field(default="", repr=False)
    source: Path | None = None


def search_paths(environ: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> list[Path]:
    """Where ``clouds.yaml`` is looked for, first first (module docstring)."""
    env = os.environ if environ is None else environ
    config_home = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    directories = [cwd or Path.cwd(), config_home / "openstack", Path("/etc/openstack")]
    paths = [d / f"clouds{suffix}" for d in directories for suffix in (".yaml", ".yml")]
    explicit = env.get("OS_CLIENT_CONFIG_FILE")
    if explicit:
        paths.insert(0, Path(explicit).expanduser())
    return paths


def base_url(auth_url: str) -> str:
    """The cloud's base URL of an identity ``auth_url``
    (``<base>/identity/v3``, or ``<base>/identity``).

    @raise ConfigError: ``auth_url`` is not of that form.
    """
    url = auth_url.strip().rstrip("/")
    if url.endswith("/v3"):
        url = url[:-3]
    if not url.endswith("/identity") or "://" not in url:
        raise ConfigError(f"auth_url {auth_url!r} is not a snfd identity URL"
                          " (<base>/identity/v3)")
    return url[:-len("/identity")]


def find(name: str, environ: Mapping[str, str] | None = None,
         cwd: Path | None = None) -> OsCloud:
    """The entry ``name`` of the first ``clouds.yaml`` found.

    @raise ConfigError: no file, no such entry, or an entry ``snf`` cannot
        use; ``str()`` says which and where.
    """
    searched = search_paths(environ, cwd)
    for path in searched:
        if path.is_file():
            break
    else:
        raise ConfigError(f"no clouds.yaml (looked for {', '.join(map(str, searched))})")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not YAML ({' '.join(str(e).split())})") from None
    clouds = document.get("clouds") if isinstance(document, dict) else None
    if not isinstance(clouds, dict):
        raise ConfigError(f"{path}: no 'clouds' mapping")
    entry = clouds.get(name)
    if not isinstance(entry, dict):
        known = ", ".join(sorted(str(k) for k in clouds)) or "none"
        raise ConfigError(f"{path}: no cloud {name!r} (clouds: {known})")
    try:
        return _entry(name, entry, path)
    except ConfigError as e:
        raise ConfigError(f"{path}: cloud {name!r}: {e}") from None


def _entry(name: str, entry: dict[Any, Any], path: Path) -> OsCloud:
    auth = entry.get("auth") or {}
    if not isinstance(auth, dict):
        raise ConfigError("'auth' must be a mapping")

    def text(key: str, where: Mapping[Any, Any] = auth) -> str:
        value = where.get(key)
        if value is None:
            return ""
        if not isinstance(value, str | int):
            raise ConfigError(f"{key!r} must be a string")
        return str(value)

    url = base_url(text("auth_url") or _missing("auth.auth_url"))
    auth_type = text("auth_type", entry) or ("token" if "token" in auth else "password")
    if auth_type in TOKEN_TYPES:
        return OsCloud(name=name, url=url, token=text("token") or _missing("auth.token"),
                       source=path)
    if auth_type not in PASSWORD_TYPES:
        raise ConfigError(f"auth_type {auth_type!r} is not supported"
                          " (password, v3password, token, v3token)")
    domain_id, domain_name = text("user_domain_id"), text("user_domain_name")
    if domain_id.lower() not in ("", "default") or domain_name.lower() not in ("", "default"):
        raise ConfigError("a snfd cloud has one user domain, Default")
    return OsCloud(name=name, url=url, username=text("username") or _missing("auth.username"),
                   password=text("password"), source=path)


def _missing(key: str) -> str:
    raise ConfigError(f"{key} is missing")


__all__ = ["OsCloud", "base_url", "find", "search_paths"]
