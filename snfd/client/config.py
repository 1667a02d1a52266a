"""The settings of ``snf``: one JSON file per user.

The file is ``$SNF_CONFIG`` if set, else ``$XDG_CONFIG_HOME/snf/config.json``
(``~/.config/snf/config.json``).  It holds a token, so it is written with
mode 0600 (replaced atomically, never readable by others even for a
moment) and its directory is created with mode 0700.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import attrs

DEFAULT_CONTAINER = "pithos"


class ConfigError(Exception):
    """The config file is unreadable or malformed; ``str()`` says how."""


@attrs.define
class Settings:
    """What ``snf login`` stores.

    ``url`` is the cloud's base URL (the identity API is at
    ``<url>/identity/v3``); ``storage_url`` the object-store endpoint of the
    user's account (``.../object-store/v1/<uuid>``) from the catalog;
    ``container`` the container of remote paths given without one;
    ``endpoints`` every public endpoint of the catalog by service type
    (``compute``, ``network``, ``image``, ``volumev3``, ``account`` ...).
    """

    url: str = ""
    token: str = ""
    user: str = ""
    email: str = ""
    storage_url: str = ""
    container: str = DEFAULT_CONTAINER
    endpoints: dict[str, str] = attrs.Factory(dict)

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Settings:
        if not isinstance(value, dict):
            raise ConfigError("the config file must hold a JSON object")
        known = {f.name for f in attrs.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, item in value.items():
            if key == "endpoints":
                if not isinstance(item, dict) or not all(
                        isinstance(k, str) and isinstance(v, str) for k, v in item.items()):
                    raise ConfigError("'endpoints' must map service types to URLs")
                kwargs[key] = dict(item)
            elif key in known:
                if not isinstance(item, str):
                    raise ConfigError(f"{key!r} must be a string")
                kwargs[key] = item
        return cls(**kwargs)


def default_path() -> Path:
    """Where the settings live (see the module docstring)."""
    explicit = os.environ.get("SNF_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "snf" / "config.json"


def load(path: Path | None = None) -> Settings:
    """The settings in ``path``; defaults when the file does not exist.

    @raise ConfigError: the file exists but is not a valid settings file.
    """
    path = path or default_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    try:
        return Settings.from_json(json.loads(text))
    except (ValueError, ConfigError) as e:
        raise ConfigError(f"{path}: {e}") from None


def save(settings: Settings, path: Path | None = None) -> Path:
    """Write ``settings`` to ``path`` (mode 0600, atomically); returns the path."""
    path = path or default_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600 already; the chmod covers odd umasks.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(settings.as_json(), f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
