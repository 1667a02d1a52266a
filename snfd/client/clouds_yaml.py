"""An OpenStack ``clouds.yaml`` entry as ``snf`` uses it (``snf --os-cloud
NAME``): where the cloud is and how to log in to it.

The files, in openstacksdk's order: ``clouds.yaml`` is the first that
exists of ``$OS_CLIENT_CONFIG_FILE``, ``./clouds.yaml``,
``$XDG_CONFIG_HOME/openstack/clouds.yaml``
(``~/.config/openstack/clouds.yaml``) and ``/etc/openstack/clouds.yaml``
(``.yml`` too); ``secure.yaml``, the first of ``$OS_CLIENT_SECURE_FILE``
and ``secure.yaml``/``.yml`` in the same directories.  Only those two
files are read.  ``secure.yaml``'s entry (typically the secrets kept
apart) is merged into ``clouds.yaml``'s as openstacksdk's
``merge_clouds`` does: a mapping in both (``auth``) key by key, any other
value of ``secure.yaml`` replacing ``clouds.yaml``'s; an entry in one of
them only is taken as it is.  Unlike openstacksdk, which skips a file it
may not read or cannot parse, either file unreadable or not YAML is an
error naming it.

An entry logs in with a password (``auth_type`` ``password`` or
``v3password``, or none: ``auth.username`` and ``auth.password``), a
token (``token``/``v3token``: ``auth.token``), or an application
credential (``v3applicationcredential``, or ``applicationcredential``:
``auth.application_credential_secret`` with
``auth.application_credential_id``, or with
``auth.application_credential_name`` and ``auth.username``; the id wins
when both are given, as in keystoneauth).  ``auth.auth_url`` is the
identity API, ``<base>/identity/v3``: the cloud's base URL is what comes
before ``/identity``.  A snfd cloud has one domain (``Default``); a user
domain naming another is refused.  What ``snf`` does not use
(``region_name``, ``project_*``: a password or token login is scoped to
the user's base project, an application credential's to its own;
``interface`` ...) is ignored; vendor profiles (``clouds-public.yaml``,
``profile``), ``clouds.json``, ``cacert``/``verify`` and an application
credential named with ``auth.user_id`` are not supported.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from snfd.client.config import ConfigError

#: The ``auth_type`` values of a password, a token and an application
#: credential login.
PASSWORD_TYPES = frozenset({"password", "v3password"})
TOKEN_TYPES = frozenset({"token", "v3token"})
APP_CREDENTIAL_TYPES = frozenset({"v3applicationcredential", "applicationcredential"})


@attrs.frozen
class OsCloud:
    """One entry: the cloud's base ``url`` and the login: ``token`` set for
    a token login, ``app_credential_secret`` for an application
    credential (with ``app_credential_id``, or ``app_credential_name`` and
    ``username``), else a password login (``username``, ``password``,
    which may be empty); ``sources`` the files the entry comes from,
    ``clouds.yaml`` first."""

    name: str
    url: str
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    token: str = attrs.field(default="", repr=False)
    app_credential_id: str = ""
    app_credential_name: str = ""
    app_credential_secret: str = attrs.field(default="", repr=False)
    sources: tuple[Path, ...] = ()


def _paths(stem: str, variable: str, environ: Mapping[str, str] | None,
           cwd: Path | None) -> list[Path]:
    """``stem.yaml``/``.yml`` in the search directories, after
    ``$variable`` when it is set."""
    env = os.environ if environ is None else environ
    config_home = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    directories = [cwd or Path.cwd(), config_home / "openstack", Path("/etc/openstack")]
    paths = [d / f"{stem}{suffix}" for d in directories for suffix in (".yaml", ".yml")]
    explicit = env.get(variable)
    if explicit:
        paths.insert(0, Path(explicit).expanduser())
    return paths


def search_paths(environ: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> list[Path]:
    """Where ``clouds.yaml`` is looked for, first first (module docstring)."""
    return _paths("clouds", "OS_CLIENT_CONFIG_FILE", environ, cwd)


def secure_search_paths(environ: Mapping[str, str] | None = None,
                        cwd: Path | None = None) -> list[Path]:
    """Where ``secure.yaml`` is looked for, first first (module docstring)."""
    return _paths("secure", "OS_CLIENT_SECURE_FILE", environ, cwd)


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


def merge(base: Mapping[Any, Any], over: Mapping[Any, Any]) -> dict[Any, Any]:
    """``base`` updated with ``over``: a key whose value is a mapping in
    both is merged (recursively), any other value of ``over`` replaces
    ``base``'s (openstacksdk's ``merge_clouds``).  Neither is changed."""
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        merged[key] = (merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping)
                       else value)
    return merged


def find(name: str, environ: Mapping[str, str] | None = None,
         cwd: Path | None = None) -> OsCloud:
    """The entry ``name``: the first ``clouds.yaml``'s with the first
    ``secure.yaml``'s merged into it (module docstring).

    @raise ConfigError: neither file, a file unreadable or not YAML, no
        such entry, or an entry ``snf`` cannot use; ``str()`` says which
        and where.
    """
    files = _read_files(environ, cwd)
    having = [(path, clouds[name]) for path, clouds in files
              if isinstance(clouds.get(name), dict)]
    if not having:
        known = ", ".join(sorted({str(k) for _, clouds in files for k in clouds})) or "none"
        raise ConfigError(f"{_names(p for p, _ in files)}: no cloud {name!r} (clouds: {known})")
    entry: dict[Any, Any] = {}
    for _, part in having:
        entry = merge(entry, part)
    sources = tuple(path for path, _ in having)
    try:
        return _entry(name, entry, sources)
    except ConfigError as e:
        raise ConfigError(f"{_names(sources)}: cloud {name!r}: {e}") from None


def _read_files(environ: Mapping[str, str] | None,
                cwd: Path | None) -> list[tuple[Path, dict[Any, Any]]]:
    """The first ``clouds.yaml`` and the first ``secure.yaml`` found, in
    that order, each with its ``clouds`` mapping.

    @raise ConfigError: neither exists, or one is unreadable, not YAML or
        has no ``clouds`` mapping (a ``secure.yaml`` may be empty or
        have no ``clouds``: it adds nothing).
    """
    searched = search_paths(environ, cwd)
    clouds_path = _first(searched)
    secure_path = _first(secure_search_paths(environ, cwd))
    if clouds_path is None and secure_path is None:
        raise ConfigError(f"no clouds.yaml (looked for {', '.join(map(str, searched))})")
    files = []
    if clouds_path is not None:
        files.append((clouds_path, _clouds(clouds_path, optional=False)))
    if secure_path is not None:
        files.append((secure_path, _clouds(secure_path, optional=True)))
    return files


def _first(paths: list[Path]) -> Path | None:
    """The first of ``paths`` that is a file, if any."""
    return next((path for path in paths if path.is_file()), None)


def _clouds(path: Path, optional: bool) -> dict[Any, Any]:
    """The ``clouds`` mapping of the file ``path`` (``optional``: ``{}``
    when the file is empty or has no ``clouds`` key).

    @raise ConfigError: unreadable, not YAML, or no ``clouds`` mapping.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not YAML ({' '.join(str(e).split())})") from None
    empty = document is None or (isinstance(document, dict) and "clouds" not in document)
    if optional and empty:
        return {}
    clouds = document.get("clouds") if isinstance(document, dict) else None
    if not isinstance(clouds, dict):
        raise ConfigError(f"{path}: no 'clouds' mapping")
    return clouds


def _names(paths: Iterable[Path]) -> str:
    """The files, for the start of an error message."""
    return " + ".join(map(str, paths))


def _entry(name: str, entry: dict[Any, Any], sources: tuple[Path, ...]) -> OsCloud:
    """The login of the (merged) ``entry``.

    @raise ConfigError: what ``snf`` cannot use in it (one line, without
        the files).
    """
    auth = entry.get("auth") or {}
    if not isinstance(auth, dict):
        raise ConfigError("'auth' must be a mapping")
    url = base_url(_text(auth, "auth_url") or _missing("auth.auth_url"))
    auth_type = _text(entry, "auth_type") or ("token" if "token" in auth else "password")
    if auth_type in TOKEN_TYPES:
        return OsCloud(name=name, url=url, token=_text(auth, "token") or _missing("auth.token"),
                       sources=sources)
    if auth_type in APP_CREDENTIAL_TYPES:
        return _app_credential(name, url, auth, sources)
    if auth_type not in PASSWORD_TYPES:
        raise ConfigError(f"auth_type {auth_type!r} is not supported (password, v3password,"
                          " token, v3token, v3applicationcredential)")
    _check_domain(auth)
    return OsCloud(name=name, url=url,
                   username=_text(auth, "username") or _missing("auth.username"),
                   password=_text(auth, "password"), sources=sources)


def _app_credential(name: str, url: str, auth: dict[Any, Any],
                    sources: tuple[Path, ...]) -> OsCloud:
    """An application credential login: the secret with the credential's
    id, else with its name and the user's name (keystoneauth's rule).

    @raise ConfigError: the secret, or both the id and the name, or the
        user of a name, is missing; a user domain other than Default.
    """
    secret = (_text(auth, "application_credential_secret")
              or _missing("auth.application_credential_secret"))
    credential_id = _text(auth, "application_credential_id")
    if credential_id:
        return OsCloud(name=name, url=url, app_credential_id=credential_id,
                       app_credential_secret=secret, sources=sources)
    credential_name = (_text(auth, "application_credential_name")
                       or _missing("auth.application_credential_id (or _name)"))
    _check_domain(auth)
    return OsCloud(name=name, url=url, app_credential_name=credential_name,
                   username=_text(auth, "username") or _missing("auth.username"),
                   app_credential_secret=secret, sources=sources)


def _text(where: Mapping[Any, Any], key: str) -> str:
    """The string (or number) ``where[key]``; "" when absent or null.

    @raise ConfigError: another type.
    """
    value = where.get(key)
    if value is None:
        return ""
    if not isinstance(value, str | int):
        raise ConfigError(f"{key!r} must be a string")
    return str(value)


def _check_domain(auth: Mapping[Any, Any]) -> None:
    """@raise ConfigError: ``auth`` names a user domain other than Default."""
    domain_id, domain_name = _text(auth, "user_domain_id"), _text(auth, "user_domain_name")
    if domain_id.lower() not in ("", "default") or domain_name.lower() not in ("", "default"):
        raise ConfigError("a snfd cloud has one user domain, Default")


def _missing(key: str) -> str:
    raise ConfigError(f"{key} is missing")


__all__ = ["OsCloud", "base_url", "find", "merge", "search_paths", "secure_search_paths"]
