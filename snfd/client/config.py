"""The settings of ``snf``: one JSON file per user, holding one or more
named clouds (profiles) and which one is current.

The file is ``$SNF_CONFIG`` if set, else ``$XDG_CONFIG_HOME/snf/config.json``
(``~/.config/snf/config.json``).  It holds tokens, so it is written with
mode 0600 (replaced atomically, never readable by others even for a
moment) and its directory is created with mode 0700.  A change (``save``,
``update``) reads the file again under a lock (``<file>.lock``) and
replaces only what it changes, so that two ``snf`` runs working on two
profiles do not undo each other.

Its format::

    {"current": "default",
     "clouds": {"default": {<Settings>}, "work": {<Settings>}}}

The first format, one cloud's ``Settings`` as the whole object, is read
as the profile ``default`` (made current) and written in the format above
the next time the file is changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs

DEFAULT_CONTAINER = "pithos"
#: The profile of the first format, and the one used when none is current.
DEFAULT_PROFILE = "default"
#: A profile's name.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")

_T = TypeVar("_T")


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


def check_name(name: str) -> str:
    """``name`` if it may name a profile (letters, digits, ``._-``, at
    most 64, starting with a letter or digit).

    @raise ConfigError: it may not.
    """
    if not _NAME.match(name):
        raise ConfigError(f"{name!r} cannot name a cloud (letters, digits, '.', '_', '-')")
    return name


@attrs.define
class Profiles:
    """Every cloud of the file by name, and the current one's name
    (``""``: none).  ``legacy``: read from the first, one-cloud format."""

    current: str = ""
    clouds: dict[str, Settings] = attrs.Factory(dict)
    legacy: bool = False

    def selected(self, name: str | None = None) -> str:
        """The profile a run uses: ``name`` when given, else the current
        one, else ``default``."""
        return name or self.current or DEFAULT_PROFILE

    def as_json(self) -> dict[str, Any]:
        return {"current": self.current,
                "clouds": {name: s.as_json() for name, s in sorted(self.clouds.items())}}

    @classmethod
    def from_json(cls, value: Any) -> Profiles:
        if not isinstance(value, dict):
            raise ConfigError("the config file must hold a JSON object")
        if "clouds" not in value:
            return cls(current=DEFAULT_PROFILE,
                       clouds={DEFAULT_PROFILE: Settings.from_json(value)}, legacy=True)
        clouds, current = value["clouds"], value.get("current", "")
        if not isinstance(clouds, dict):
            raise ConfigError("'clouds' must map names to settings")
        if not isinstance(current, str):
            raise ConfigError("'current' must be a string")
        found = {}
        for name, item in clouds.items():
            try:
                found[check_name(name)] = Settings.from_json(item)
            except ConfigError as e:
                raise ConfigError(f"cloud {name!r}: {e}") from None
        return cls(current=current if current in found else "", clouds=found)


def default_path() -> Path:
    """Where the settings live (see the module docstring)."""
    explicit = os.environ.get("SNF_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "snf" / "config.json"


def load_profiles(path: Path | None = None) -> Profiles:
    """Every profile in ``path``; none when the file does not exist.

    @raise ConfigError: the file exists but is not a valid settings file.
    """
    path = path or default_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Profiles()
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    try:
        return Profiles.from_json(json.loads(text))
    except (ValueError, ConfigError) as e:
        raise ConfigError(f"{path}: {e}") from None


def load(path: Path | None = None, name: str | None = None) -> Settings:
    """The settings of profile ``name`` (default: the current one) in
    ``path``; defaults when the file or the profile does not exist.

    @raise ConfigError: the file exists but is not a valid settings file.
    """
    profiles = load_profiles(path)
    return profiles.clouds.get(profiles.selected(name)) or Settings()


def update(change: Callable[[Profiles], _T], path: Path | None = None) -> _T:
    """Read the file again, apply ``change`` to its profiles and write them
    (the new format, mode 0600, atomically), all under the file's lock;
    ``change``'s answer."""
    path = path or default_path()
    with _locked(path):
        profiles = load_profiles(path)
        answer = change(profiles)
        _write(profiles, path)
    return answer


def save(settings: Settings, path: Path | None = None, name: str | None = None) -> Path:
    """Store ``settings`` as profile ``name`` (default: the current one, or
    ``default``), leaving the others as they are; the profile becomes the
    current one when none is.  Returns the path."""
    path = path or default_path()

    def change(profiles: Profiles) -> None:
        selected = check_name(profiles.selected(name))
        profiles.clouds[selected] = settings
        if not profiles.current:
            profiles.current = selected

    update(change, path)
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(profiles: Profiles, path: Path) -> None:
    """Write ``profiles`` to ``path`` (mode 0600, atomically)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600 already; the chmod covers odd umasks.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(profiles.as_json(), f, indent=2, sort_keys=True)
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
