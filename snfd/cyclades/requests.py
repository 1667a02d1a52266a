"""Compute requests as typed values: what the JSON bodies of the compute
API (reference/synnefo-apis.md 3.1) may say, checked, before anything
happens (400, or 413 past a size limit, with the reference's messages).

``parse_create`` turns the ``server`` object of ``POST /servers`` into a
``CreateRequest``; ``parse_action`` turns the body of ``POST
/servers/<id>/action`` into one of the action values (``Start``,
``Reboot``, ``Resize``...); the ``check_*`` functions check the smaller
bodies (names, metadata, tags).  Nothing here does I/O: the effect path
(``snfd.cyclades.servers``) receives these values, never raw dicts.

Deliberate choices where the reference leaves room:

- ``networks``: absent, ``[]``, ``"auto"`` -> the default networks
  (``CreateRequest.networks`` None).  ``[]`` counts as "no preference"
  because OpenStack clients below microversion 2.37 send it when no
  network was named.  ``"none"`` -> no NIC.  Otherwise a list of
  ``{"uuid"[, "fixed_ip"]}`` or ``{"port"}`` (``NicRequest``).
- ``security_groups``: absent (the project's default group), or
  ``[{"name"}]`` entries naming the groups of the server's new ports.
- ``min_count``/``max_count`` other than 1 -> 400 (one server per request;
  Nova's dialect takes them first, ``parse_counts``).
- ``block_device_mapping_v2``: only the one mapping that boots an image on
  a local disk (what ``openstack server create --image`` sends) stands
  for ``imageRef``; volumes in ``block_device_mapping_v2`` (``BlockDevice``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Protocol

import attrs
import re2

from snfd import errors

MAX_NAME = 255
#: The longest ``?name=`` pattern, and the memory RE2 may spend on one.
MAX_NAME_PATTERN = 255
NAME_PATTERN_MEMORY = 1 << 20
MAX_META_KEY = 50
MAX_META_VALUE = 500
MAX_TAGS = 50
MAX_TAG = 60
MAX_USER_DATA = 64 * 1024
#: "Not given" in a request whose None means "clear it".
KEEP: Any = object()
TRUSTED_CERTIFICATES_REFUSED = (
    "trusted_image_certificates: image signature verification is not offered by this"
    " cloud (images are not signed).")
#: Nova's device tags (on networks and block devices, 2.32 and 2.42)
DEVICE_TAGS_REFUSED = ("Device tags are not supported: no metadata service or config drive"
                       " shows them to the guest.")
FIREWALL_PROFILES = ("ENABLED", "DISABLED", "PROTECTED")
#: Actions the reference names that this cloud does not offer (501), and
#: those only administrators may take (403); both once the server exists.
UNSUPPORTED_ACTIONS = ("changePassword", "confirmResize", "revertResize",
                       "os-getVNCConsole", "os-getSPICEConsole",
                       "os-getRDPConsole", "os-getSerialConsole")
ADMIN_ACTIONS = ("suspend", "resume")


class CreateLimits(Protocol):
    """The operator's limits a create request is checked against
    (``snfd.cyclades.servers.ComputeSettings`` has them)."""

    @property
    def max_metadata(self) -> int: ...

    @property
    def max_personality(self) -> int: ...

    @property
    def max_personality_size(self) -> int: ...


@attrs.frozen
class PersonalityFile:
    """A file to inject: ``contents`` is base64 text; ``owner``, ``group``
    and ``mode`` as given (None: not given)."""

    path: str
    contents: str
    owner: str | None = None
    group: str | None = None
    mode: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The entry as snf-image reads it (keys only when given)."""
        out: dict[str, Any] = {"path": self.path, "contents": self.contents}
        for key in ("owner", "group", "mode"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@attrs.frozen
class NicRequest:
    """One entry of a server's ``networks``: a network (and maybe the
    IPv4 address on it), or an existing port."""

    network_id: int | None = None
    port_id: int | None = None
    fixed_ip: str | None = None


@attrs.frozen
class CreateRequest:
    """A validated ``POST /servers`` body."""

    name: str
    flavor_id: int
    image_id: str
    metadata: dict[str, str]
    personality: tuple[PersonalityFile, ...]
    networks: tuple[NicRequest, ...] | None   # None: the default networks
    project: str | None
    key_names: tuple[str, ...]
    user_data: str | None
    admin_pass: str | None
    tags: tuple[str, ...]
    shared_to_project: bool
    access_ipv4: str = ""
    access_ipv6: str = ""
    #: the backends (cluster names) of the availability zone asked for;
    #: ``None``: any (the API layer resolves the zone)
    hosts: tuple[str, ...] | None = None
    #: the server group (``snfd.cyclades.server_groups``) it joins, by id
    #: (the API layer resolves the ``group`` scheduler hint)
    server_group: str | None = None
    #: the security groups (names or ids) of its new ports; None: the
    #: project's default group
    security_groups: tuple[str, ...] | None = None
    #: its volumes (``block_device_mapping_v2``); a boot one replaces
    #: ``image_id`` (then "")
    block_devices: tuple[BlockDevice, ...] = ()
    #: its description (Nova's, from 2.19); None: none
    description: str | None = None


def check_description(value: Any) -> str | None:
    """A server's ``description``: None, or text of at most 255 printable
    characters (Nova's rule), or 400."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise errors.BadRequest(f"description must be text of at most {MAX_NAME} characters.")
    if not all(c.isprintable() or c in "\t\n\r" for c in value):
        raise errors.BadRequest("description holds characters that are not printable.")
    return value


def check_access_ip(value: Any, version: int) -> str:
    """An ``accessIPv4``/``accessIPv6`` value: an address of that version,
    or ``""`` (unset); 400 otherwise."""
    key = f"accessIPv{version}"
    if value is None or value == "":
        return ""
    try:
        address = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        address = None
    if address is None or address.version != version:
        raise errors.BadRequest(f"{key} must be an IPv{version} address.")
    return str(address)


# -- actions ---------------------------------------------------------------------

@attrs.frozen
class Start:
    """``start`` / ``os-start``."""


@attrs.frozen
class Stop:
    """``shutdown`` / ``os-stop``."""


@attrs.frozen
class Reboot:
    """``reboot``; ``hard``: type HARD (no clean shutdown first)."""

    hard: bool = False


@attrs.frozen
class Resize:
    """``resize`` to the flavor ``flavor_id``."""

    flavor_id: int


@attrs.frozen
class Console:
    """``console`` of type ``vnc`` (the only one offered)."""


@attrs.frozen
class Firewall:
    """``firewallProfile``: one of ``FIREWALL_PROFILES`` for the NIC whose
    id reads as ``nic`` (the value as given; None: none named)."""

    profile: str
    nic: object = None


@attrs.frozen
class Reassign:
    """``reassign``: None keeps the server's project / sharing."""

    project: str | None = None
    shared_to_project: bool | None = None


@attrs.frozen
class Rescue:
    """``rescue`` from the rescue image ``image_ref`` ("default": none named)."""

    image_ref: str = "default"


@attrs.frozen
class Unrescue:
    """``unrescue``."""


@attrs.frozen
class Lock:
    """``lock`` (``locked`` true) and ``unlock``: Nova's server lock."""

    locked: bool


@attrs.frozen
class ResetState:
    """``os-resetState`` (administrators): record the server as ``error``
    or ``active`` without asking Ganeti."""

    state: str


@attrs.frozen
class InjectNetworkInfo:
    """``injectNetworkInfo`` (administrators): nothing to do here, as in
    Nova with ports (guests take their network settings by DHCP)."""


@attrs.frozen
class TriggerCrashDump:
    """``trigger_crash_dump`` (Nova 2.17): an NMI to the guest."""


@attrs.frozen
class Restore:
    """``restore``: undo a soft delete (there is none here: 409)."""


@attrs.frozen
class AddFloatingIp:
    """``addFloatingIp``: attach the caller's floating IP ``address``
    (``fixed_address``: the server's address it stands for, None: any)."""

    address: str
    fixed_address: str | None = None


@attrs.frozen
class SecurityGroupChange:
    """``addSecurityGroup``/``removeSecurityGroup``: put the server's ports
    in the group ``name`` (a name or an id), or take them out."""

    name: str
    add: bool


@attrs.frozen
class RemoveFloatingIp:
    """``removeFloatingIp``: detach the floating IP ``address``."""

    address: str


@attrs.frozen
class Migrate:
    """Administrators' moves of a server to another Ganeti node of its
    cluster: ``os-migrateLive`` (``kind`` live-migration), ``migrate``
    (migration: Ganeti's failover) and ``evacuate`` (evacuation: a
    failover that ignores the disks' consistency, for a failed node).
    ``host``: the compute host (backend) named, None: any.  ``force``
    (Nova 2.29, 2.30: skip the scheduler's check of the host) changes
    nothing here: Ganeti's own checks always run in its job."""

    kind: str
    host: str | None = None
    force: bool = False


#: Nova's booleans as text in action bodies (``parameter_types.boolean``).
_TRUE_TEXT = frozenset({"true", "1", "on", "yes"})
_FALSE_TEXT = frozenset({"false", "0", "off", "no"})


def _boolean(args: dict[str, Any], key: str, name: str) -> bool:
    value = args[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE_TEXT | _FALSE_TEXT:
        return value.lower() in _TRUE_TEXT
    raise errors.BadRequest(f"{name}: {key} must be true or false.")


def _migrate(name: str, args: Any, version: tuple[int, int] = (2, 1)) -> Migrate:
    """The body of ``os-migrateLive``, ``migrate`` or ``evacuate`` as Nova's
    schema at microversion ``version`` takes it (400 otherwise):
    ``os-migrateLive`` needs ``block_migration`` (a boolean; from 2.25 also
    ``"auto"``) and, before 2.25, ``disk_over_commit`` (refused from 2.25),
    and takes ``force`` from 2.30; ``migrate`` takes nothing before 2.56,
    then ``host``; ``evacuate`` takes ``host`` and ``adminPass``,
    ``onSharedStorage`` before 2.14 and ``force`` from 2.29."""
    if args is not None and not isinstance(args, dict):
        raise errors.BadRequest(f"{name} takes an object or null.")
    args = args or {}
    if name == "os-migrateLive":
        allowed = {"host", "block_migration"}
        allowed |= {"disk_over_commit"} if version < (2, 25) else set()
        allowed |= {"force"} if version >= (2, 30) else set()
    elif name == "migrate":
        allowed = {"host"} if version >= (2, 56) else set()
    else:
        allowed = {"host", "adminPass"}
        allowed |= {"onSharedStorage"} if version < (2, 14) else set()
        allowed |= {"force"} if version >= (2, 29) else set()
    unknown = set(args) - allowed
    if unknown:
        raise errors.BadRequest(f"Unknown {name} field {sorted(unknown)[0][:40]!r}"
                                f" (at microversion {version[0]}.{version[1]}).")
    if name == "os-migrateLive":
        for key in sorted(allowed & {"block_migration", "disk_over_commit"}):
            if key not in args:
                raise errors.BadRequest(f"os-migrateLive needs {key}.")
            if not (key == "block_migration" and version >= (2, 25)
                    and args[key] == "auto"):
                _boolean(args, key, name)
    force = _boolean(args, "force", name) if "force" in args else False
    host = args.get("host")
    if host is not None and (not isinstance(host, str) or not host or len(host) > 255):
        raise errors.BadRequest("host must be a compute host's name or null.")
    kind = {"os-migrateLive": "live-migration", "migrate": "migration",
            "evacuate": "evacuation"}[name]
    return Migrate(kind, host, force)


@attrs.frozen
class Rebuild:
    """``rebuild``: reinstall the server's disk from image ``image_id``
    (Ganeti's reinstall); the name, metadata (None: kept), access
    addresses (None: kept), admin password (None: a new one) and files
    to inject, as given."""

    image_id: str
    name: str | None = None
    metadata: dict[str, str] | None = None
    admin_pass: str | None = None
    personality: tuple[PersonalityFile, ...] = ()
    access_ipv4: str | None = None
    access_ipv6: str | None = None
    #: the new description (``KEEP``: unchanged; None: none)
    description: Any = KEEP
    #: the keypair whose key the new disk gets (``KEEP``: the server's;
    #: None: no key)
    key_name: Any = KEEP
    #: the new user data for the guest (``KEEP``: none is kept here, so
    #: none is given again; None: none)
    user_data: Any = KEEP


#: What a ``rebuild`` body may hold (Nova 2.1's schema); a dialect adds
#: its later microversions' keys (``REBUILD_KEYS_SINCE``).
REBUILD_KEYS = frozenset({"imageRef", "name", "metadata", "adminPass", "personality",
                          "accessIPv4", "accessIPv6", "OS-DCF:diskConfig",
                          "preserve_ephemeral"})


def parse_rebuild(args: Any, limits: CreateLimits, strong_password: bool = True,
                  keys: frozenset[str] = REBUILD_KEYS) -> Rebuild:
    """The ``rebuild`` object of an action body (400 for any key not in
    ``keys``: Nova 2.1's schema, or a later microversion's)."""
    if not isinstance(args, dict):
        raise errors.BadRequest('rebuild needs an object with "imageRef".')
    unknown = set(args) - keys
    if unknown:
        raise errors.BadRequest(f"Unknown rebuild field {sorted(unknown)[0][:40]!r}"
                                " (at this microversion).")
    if args.get("trusted_image_certificates") is not None:
        raise errors.BadRequest(TRUSTED_CERTIFICATES_REFUSED)
    if args.get("imageRef") in (None, ""):
        raise errors.BadRequest("rebuild needs an imageRef.")
    if args.get("OS-DCF:diskConfig", "MANUAL") not in ("AUTO", "MANUAL"):
        raise errors.BadRequest("OS-DCF:diskConfig must be AUTO or MANUAL.")
    if not isinstance(args.get("preserve_ephemeral", False), bool):
        raise errors.BadRequest("preserve_ephemeral must be true or false.")
    admin_pass = args.get("adminPass")
    if admin_pass is not None:
        admin_pass = (check_password(admin_pass) if strong_password
                      else _text(admin_pass, "adminPass", 255))
    return Rebuild(
        image_id=ref_id(args["imageRef"], "imageRef"),
        name=check_name(args["name"]) if "name" in args else None,
        metadata=(check_metadata(args["metadata"], limits.max_metadata)
                  if "metadata" in args else None),
        admin_pass=admin_pass,
        personality=check_personality(args.get("personality"), limits.max_personality,
                                      limits.max_personality_size),
        access_ipv4=check_access_ip(args["accessIPv4"], 4) if "accessIPv4" in args else None,
        access_ipv6=check_access_ip(args["accessIPv6"], 6) if "accessIPv6" in args else None,
        description=check_description(args["description"]) if "description" in args else KEEP,
        key_name=(KEEP if "key_name" not in args else None if args["key_name"] is None
                  else _text(args["key_name"], "key_name", 255)),
        user_data=_user_data(args["user_data"]) if "user_data" in args else KEEP)


@attrs.frozen
class Unsupported:
    """An action of the reference this cloud refuses: 501, or 403 with
    ``admin_only``."""

    name: str
    admin_only: bool = False


@attrs.frozen
class CreateImage:
    """``createImage`` (and ``createBackup``, with ``backup``:
    ``(backup_type, rotation)``): the name and metadata of the image;
    ``snfd.cyclades.server_images`` checks them."""

    name: Any
    metadata: Any = None
    backup: tuple[str, int] | None = None


Action = (Start | Stop | Reboot | Resize | Console | Firewall | Reassign | Rescue | Lock
          | Unrescue | ResetState | Restore | InjectNetworkInfo | AddFloatingIp | RemoveFloatingIp
          | SecurityGroupChange | TriggerCrashDump | CreateImage
          | Migrate | Unsupported)


def parse_action(body: Mapping[str, Any], version: tuple[int, int] = (2, 1)) -> Action:
    """The action of a ``POST /servers/<id>/action`` body (a JSON object
    with exactly one action key), or 400; ``version``: the request's Nova
    microversion (the moves' arguments change with it)."""
    if len(body) != 1:
        raise errors.BadRequest("An action request has exactly one action.")
    name, args = next(iter(body.items()))
    args = args if isinstance(args, dict) else {}
    if name in ("start", "os-start"):
        return Start()
    if name in ("shutdown", "os-stop"):
        return Stop()
    if name == "reboot":
        reboot_type = str(args.get("type", "SOFT")).upper()
        if reboot_type not in ("SOFT", "HARD"):
            raise errors.BadRequest("The reboot type must be SOFT or HARD.")
        return Reboot(hard=reboot_type == "HARD")
    if name == "resize":
        if "flavorRef" not in args:
            raise errors.BadRequest("resize needs a flavorRef.")
        return Resize(flavor_ref(args["flavorRef"]))
    if name == "console":
        if args.get("type") != "vnc":
            raise errors.BadRequest('The console type must be "vnc".')
        return Console()
    if name == "firewallProfile":
        profile = args.get("profile")
        if profile not in FIREWALL_PROFILES:
            raise errors.BadRequest(
                f"The firewall profile must be one of {', '.join(FIREWALL_PROFILES)}.")
        return Firewall(str(profile), args.get("nic"))
    if name == "reassign":
        return parse_reassign(args)
    if name == "rescue":
        image_ref = args.get("rescue_image_ref")
        return Rescue("default" if image_ref is None else str(image_ref))
    if name == "unrescue":
        return Unrescue()
    if name in ("lock", "unlock"):
        return Lock(name == "lock")
    if name == "os-resetState":
        state = args.get("state")
        if state not in ("error", "active"):
            raise errors.BadRequest('os-resetState needs a state: "error" or "active".')
        return ResetState(str(state))
    if name == "restore":
        return Restore()
    if name == "trigger_crash_dump":
        return TriggerCrashDump()
    if name == "injectNetworkInfo":
        return InjectNetworkInfo()
    if name == "addFloatingIp":
        fixed = args.get("fixed_address")
        return AddFloatingIp(ip_address(args.get("address"), "address"),
                             None if fixed is None else ip_address(fixed, "fixed_address"))
    if name in ("addSecurityGroup", "removeSecurityGroup"):
        group = args.get("name")
        if not isinstance(group, str) or not 0 < len(group) <= 255:
            raise errors.BadRequest(f"{name} needs the name of a security group.")
        return SecurityGroupChange(group, name == "addSecurityGroup")
    if name == "removeFloatingIp":
        return RemoveFloatingIp(ip_address(args.get("address"), "address"))
    if name in ("os-migrateLive", "migrate", "evacuate"):
        return _migrate(name, body[name], version)
    if name == "createImage":
        if not isinstance(body[name], dict):
            raise errors.BadRequest("createImage needs an object with a name.")
        return CreateImage(args.get("name"), args.get("metadata"))
    if name == "createBackup":
        return _backup(body[name])
    if name in UNSUPPORTED_ACTIONS:
        return Unsupported(name)
    if name in ADMIN_ACTIONS:
        return Unsupported(name, admin_only=True)
    raise errors.BadRequest(f"Unknown action {name[:60]!r}.")


def _backup(args: Any) -> CreateImage:
    """``createBackup {name, backup_type, rotation, metadata}``: all but
    the metadata required; ``rotation`` a whole number >= 0 (digits as
    text too, as Nova takes it)."""
    if not isinstance(args, dict):
        raise errors.BadRequest("createBackup needs an object with name, backup_type and"
                                " rotation.")
    kind, rotation = args.get("backup_type"), args.get("rotation")
    if not isinstance(kind, str) or not kind or len(kind) > 255:
        raise errors.BadRequest("createBackup needs a backup_type (text, like 'daily').")
    if isinstance(rotation, str) and rotation.isdigit():
        rotation = int(rotation)
    if not isinstance(rotation, int) or isinstance(rotation, bool) or rotation < 0:
        raise errors.BadRequest("createBackup needs a rotation: a whole number >= 0.")
    return CreateImage(args.get("name"), args.get("metadata"), (kind, rotation))


def ip_address(value: Any, what: str) -> str:
    """An IPv4 or IPv6 address in a body (its canonical text), or 400."""
    try:
        if isinstance(value, str):
            return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    raise errors.BadRequest(f"{what} must be an IP address, not {str(value)[:40]!r}.")


def parse_reassign(args: Mapping[str, Any]) -> Reassign:
    """The arguments of ``reassign``: ``project`` (text), ``shared_to_project``
    (true or false), each optional."""
    project = args.get("project")
    if project is not None:
        project = _text(project, "project", 255)
    shared = args.get("shared_to_project")
    if shared is not None and not isinstance(shared, bool):
        raise errors.BadRequest("shared_to_project must be true or false.")
    return Reassign(project, shared)


# -- values --------------------------------------------------------------------------

def _text(value: Any, what: str, limit: int, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise errors.BadRequest(f"{what} must be a non-empty string.")
    if len(value) > limit:
        raise errors.BadRequest(f"{what} is longer than {limit} characters.")
    if "\x00" in value:
        raise errors.BadRequest(f"{what} holds a NUL character.")
    return value


def check_name(value: Any) -> str:
    """A server name (1..255 characters), or 400."""
    return _text(value, "The server name", MAX_NAME)


class NameFilter(Protocol):
    """A compiled ``?name=`` pattern (``parse_name_filter``)."""

    def search(self, text: str) -> Any: ...


def parse_name_filter(pattern: str) -> NameFilter:
    """The ``?name=`` filter of a server listing: a regular expression
    searched in the name, as Nova does, compiled by RE2, whose search time
    is linear in the name (no backtracking, so no pattern can stall the
    reactor).  Patterns over ``MAX_NAME_PATTERN`` characters, those RE2
    refuses (invalid, or backreferences and lookaround, which only a
    backtracking engine offers) and those needing over
    ``NAME_PATTERN_MEMORY`` bytes are 400."""
    if len(pattern) > MAX_NAME_PATTERN:
        raise errors.BadRequest(
            f"The name filter is longer than {MAX_NAME_PATTERN} characters.")
    options = re2.Options()
    options.max_mem = NAME_PATTERN_MEMORY
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error:
        raise errors.BadRequest(
            "The name filter is not a regular expression this cloud supports"
            " (RE2 syntax, without backreferences or lookaround, of bounded"
            " size).") from None


def ref_id(value: Any, what: str) -> str:
    """The id in a reference: the value itself or the last segment of a
    link (``.../flavors/3``)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise errors.BadRequest(f"{what} is required (an id or a link).")
    text = str(value).strip().rstrip("/")
    if not text:
        raise errors.BadRequest(f"{what} is required (an id or a link).")
    return text.rsplit("/", 1)[-1]


def flavor_ref(value: Any) -> int:
    """A flavor reference as a flavor id, or 400."""
    text = ref_id(value, "flavorRef")
    if not text.isdigit() or len(text) > 9:
        raise errors.BadRequest(f"flavorRef {text[:40]!r} is not a flavor id.")
    return int(text)


def check_metadata(value: Any, limit: int | None = None,
                   max_value: int | None = None) -> dict[str, str]:
    """Server metadata: string keys (1..50 chars) and values (<= 500, or
    ``max_value`` when that is less: Nova's dialect allows 255), at most
    ``limit`` items (None: any number; the effect path checks the merged
    result)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.BadRequest("metadata must be an object of strings.")
    out: dict[str, str] = {}
    for key, item in value.items():
        _text(key, "A metadata key", MAX_META_KEY)
        if not isinstance(item, str):
            raise errors.BadRequest(f"The value of metadata key {key!r} must be a string.")
        _text(item, f"The value of metadata key {key!r}",
              min(MAX_META_VALUE, max_value or MAX_META_VALUE), required=False)
        out[key] = item
    if limit is not None and len(out) > limit:
        raise errors.BadRequest(f"A server may have at most {limit} metadata items.")
    return out


def check_tags(value: Any) -> tuple[str, ...]:
    """Server tags: at most 50 strings of 1..60 characters without '/' or ','."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise errors.BadRequest("tags must be a list of strings.")
    out: list[str] = []
    for tag in value:
        check_tag(tag)
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise errors.BadRequest(f"A server may have at most {MAX_TAGS} tags.")
    return tuple(out)


def check_tag(tag: Any) -> str:
    """One tag, or 400."""
    _text(tag, "A tag", MAX_TAG)
    if "/" in tag or "," in tag:
        raise errors.BadRequest("A tag may not hold '/' or ','.")
    return str(tag)


def check_personality(value: Any, max_files: int,
                      max_size: int) -> tuple[PersonalityFile, ...]:
    """Files to inject: ``[{path, contents (base64 text of at most
    ``max_size`` characters), owner?, group?, mode?}]``, at most
    ``max_files`` (413 past either limit, as the reference)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise errors.BadRequest("personality must be a list of files.")
    if len(value) > max_files:
        raise errors.OverLimit(f"At most {max_files} personality files are allowed.")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise errors.BadRequest("Each personality item must be an object.")
        path = _text(item.get("path"), "A personality path", 1024)
        contents = item.get("contents")
        if not isinstance(contents, str):
            raise errors.BadRequest(f"The contents of {path} must be base64 text.")
        if len(contents) > max_size:
            raise errors.OverLimit(
                f"The contents of {path} are longer than {max_size} bytes of base64.")
        try:
            base64.b64decode(contents, validate=True)
        except (binascii.Error, ValueError):
            raise errors.BadRequest(f"The contents of {path} are not valid base64.") from None
        owner = group = None
        if item.get("owner") is not None:
            owner = _text(item["owner"], f"The owner of {path}", 64)
        if item.get("group") is not None:
            group = _text(item["group"], f"The group of {path}", 64)
        mode = item.get("mode")
        if mode is not None:
            if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
                raise errors.BadRequest(f"The mode of {path} must be an integer 0..4095.")
        out.append(PersonalityFile(path, contents, owner, group, mode))
    return tuple(out)


def check_password(value: Any) -> str:
    """An admin password: >= 10 characters with upper and lower case
    letters and a digit."""
    if not isinstance(value, str):
        raise errors.BadRequest("adminPass must be a string.")
    if (len(value) < 10 or len(value) > 255 or not re.search(r"[A-Z]", value)
            or not re.search(r"[a-z]", value) or not re.search(r"[0-9]", value)):
        raise errors.BadRequest(
            "adminPass must be at least 10 characters long and hold upper and lower"
            " case letters and digits.")
    return value


def _nic_requests(value: Any) -> tuple[NicRequest, ...] | None:
    """A server's ``networks`` (Nova's and Synnefo's forms) checked: None
    for the defaults (absent, ``"auto"``, ``[]``), ``()`` for ``"none"``."""
    if value is None or value == "auto" or value == []:
        return None
    if value == "none":
        return ()
    if not isinstance(value, list):
        raise errors.BadRequest('networks must be a list, "auto" or "none".')
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise errors.BadRequest("Each network must be an object with a uuid or a port.")
        if "tag" in item:
            raise errors.BadRequest(DEVICE_TAGS_REFUSED)
        port, uuid = item.get("port"), item.get("uuid")
        fixed = item.get("fixed_ip")
        if port is not None:
            if uuid is not None or fixed is not None:
                raise errors.BadRequest("A network entry names a port or a network, not both.")
            out.append(NicRequest(port_id=_ref(port, "port")))
            continue
        if uuid is None:
            raise errors.BadRequest("Each network must have a uuid or a port.")
        if fixed is not None:
            try:
                fixed = str(ipaddress.IPv4Address(fixed))
            except (ValueError, TypeError):
                raise errors.BadRequest(f"Invalid fixed IP address {str(fixed)[:40]!r}.") \
                    from None
        out.append(NicRequest(network_id=_ref(uuid, "network"), fixed_ip=fixed))
    return tuple(out)


def check_security_groups(value: Any) -> tuple[str, ...] | None:
    """A create request's ``security_groups``: absent (None: the project's
    default group), or ``[{"name": <name or id>}, ...]``: the names."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 50:
        raise errors.BadRequest("security_groups must be a list of {\"name\"} objects.")
    names = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"name"} \
                or not isinstance(item["name"], str) or not 0 < len(item["name"]) <= 255:
            raise errors.BadRequest("Each security group must be an object with a name.")
        names.append(item["name"])
    return tuple(dict.fromkeys(names))


def _ref(value: Any, what: str) -> int:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not text.isdigit() or len(text) > 18:
        raise errors.BadRequest(f"Invalid {what} id {str(value)[:40]!r}.")
    return int(text)


def _count(body: Mapping[str, Any], key: str) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value) != "1":
        raise errors.BadRequest(f"{key} must be 1: one server is created per request.")


def parse_counts(body: Any) -> tuple[int, int, bool]:
    """Nova's multiple create: ``min_count`` and ``max_count`` (positive
    integers or their text; absent: 1 and ``min_count``), and whether the
    answer is ``return_reservation_id``'s; 400 for anything else."""
    if not isinstance(body, dict):
        raise errors.BadRequest('The request needs a "server" object.')

    def count(key: str, default: int) -> int:
        value = body.get(key)
        if value is None:
            return default
        if (isinstance(value, bool) or not isinstance(value, int | str)
                or not re.fullmatch(r"[0-9]{1,6}", str(value)) or int(value) < 1):
            raise errors.BadRequest(f"{key} must be a positive integer.")
        return int(value)

    low = count("min_count", 1)
    high = count("max_count", low)
    if low > high:
        raise errors.BadRequest("min_count must not be more than max_count.")
    reservation = body.get("return_reservation_id", False)
    if isinstance(reservation, str) and reservation.lower() in ("true", "false", "1", "0"):
        reservation = reservation.lower() in ("true", "1")
    if not isinstance(reservation, bool):
        raise errors.BadRequest("return_reservation_id must be true or false.")
    return low, high, reservation


@attrs.frozen
class BlockDevice:
    """A volume of a new server from ``block_device_mapping_v2``: its boot
    disk (``boot``) made from an image, a snapshot or an existing volume
    (``source``, ``uuid``), or an existing volume attached with it.
    ``size`` in GiB (None: its source's, or the flavor's disk for a boot
    volume)."""

    source: str
    uuid: str
    boot: bool
    size: int | None = None
    delete_on_termination: bool = False


_BDM_SOURCES = ("image", "volume", "snapshot")


def _block_devices(body: Mapping[str, Any]) -> tuple[str | None, tuple[BlockDevice, ...]]:
    """``block_device_mapping_v2``: the image of a boot entry that only says
    "boot from this image on a local disk" (what ``openstack server create
    --image`` sends), and the volumes to make or attach."""
    if body.get("block_device_mapping"):
        raise errors.BadRequest("block_device_mapping (v1) is not supported: use"
                                " block_device_mapping_v2.")
    mapping = body.get("block_device_mapping_v2")
    if not mapping:
        return None, ()
    if not isinstance(mapping, list) or not all(isinstance(b, dict) for b in mapping):
        raise errors.BadRequest("block_device_mapping_v2 must be a list of objects.")
    image: str | None = None
    devices: list[BlockDevice] = []
    for bdm in mapping:
        if "tag" in bdm:
            raise errors.BadRequest(DEVICE_TAGS_REFUSED)
        source = bdm.get("source_type")
        destination = bdm.get("destination_type")
        boot_index = bdm.get("boot_index")
        boot = str(boot_index) == "0"
        uuid = bdm.get("uuid")
        if source not in _BDM_SOURCES or destination not in (None, "local", "volume"):
            raise errors.BadRequest("block_device_mapping_v2: source_type must be image,"
                                    " volume or snapshot, destination_type local or volume"
                                    " (blank, swap and ephemeral disks are not supported).")
        if not isinstance(uuid, str) or not uuid:
            raise errors.BadRequest("block_device_mapping_v2: uuid is required.")
        if boot_index not in (None, -1, "-1") and not boot:
            raise errors.BadRequest("block_device_mapping_v2: boot_index must be 0 (the"
                                    " boot disk) or none (-1).")
        if destination in (None, "local"):
            if source != "image" or not boot:
                raise errors.BadRequest("block_device_mapping_v2: a local disk is only the"
                                        " boot disk from an image.")
            image = uuid
            continue
        if source != "volume" and not boot:
            raise errors.BadRequest("block_device_mapping_v2: a volume other than the boot"
                                    " disk must be an existing one (source_type volume).")
        size = bdm.get("volume_size")
        if size is not None:
            if isinstance(size, str) and size.isdigit():
                size = int(size)
            if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
                raise errors.BadRequest("block_device_mapping_v2: volume_size must be a"
                                        " positive number of GiB.")
        delete = bdm.get("delete_on_termination", False)
        if isinstance(delete, str) and delete.lower() in ("true", "1", "yes", "false", "0",
                                                          "no"):
            delete = delete.lower() in ("true", "1", "yes")
        if not isinstance(delete, bool):
            raise errors.BadRequest("block_device_mapping_v2: delete_on_termination must be"
                                    " true or false.")
        devices.append(BlockDevice(source=source, uuid=uuid, boot=boot, size=size,
                                   delete_on_termination=delete))
    boots = [d for d in devices if d.boot] + ([image] if image else [])
    if len(boots) > 1:
        raise errors.BadRequest("block_device_mapping_v2 has more than one boot disk.")
    if image is not None and body.get("imageRef") not in (None, "", image):
        raise errors.BadRequest("imageRef and block_device_mapping_v2 name different images.")
    return image, tuple(devices)


def _key_names(body: Mapping[str, Any]) -> tuple[str, ...]:
    names: list[str] = []
    key_name = body.get("key_name")
    if key_name is not None:
        names.append(_text(key_name, "key_name", 255))
    more = body.get("SNF:key_names")
    if more is not None:
        if not isinstance(more, list):
            raise errors.BadRequest("SNF:key_names must be a list of keypair names.")
        names += [_text(n, "A key name", 255) for n in more]
    return tuple(dict.fromkeys(names))


def _user_data(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_USER_DATA:
        raise errors.BadRequest(f"user_data must be base64 text of at most"
                                f" {MAX_USER_DATA} characters.")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise errors.BadRequest("user_data is not valid base64.") from None
    return value


def parse_create(body: Any, limits: CreateLimits,
                 strong_password: bool = True) -> CreateRequest:
    """Validate the ``server`` object of a create request (400/413).
    ``strong_password``: an ``adminPass`` must pass ``check_password``
    (Synnefo's rule); else any text of 1..255 characters (Nova's)."""
    if not isinstance(body, dict):
        raise errors.BadRequest('The request needs a "server" object.')
    name = check_name(body.get("name"))
    if "flavorRef" not in body:
        raise errors.BadRequest("flavorRef is required.")
    flavor_id = flavor_ref(body.get("flavorRef"))
    boot_image, devices = _block_devices(body)
    boot_volume = any(d.boot for d in devices)
    if body.get("imageRef") in (None, "") and boot_image is None and not boot_volume:
        raise errors.BadRequest("imageRef is required, or a boot volume in"
                                " block_device_mapping_v2.")
    if boot_volume and body.get("imageRef") not in (None, "") and not any(
            d.boot and d.source == "image" and d.uuid == body.get("imageRef")
            for d in devices):
        raise errors.BadRequest("imageRef and the boot volume's source differ.")
    image_id = "" if boot_volume else ref_id(body.get("imageRef") or boot_image, "imageRef")
    _count(body, "min_count")
    _count(body, "max_count")
    metadata = check_metadata(body.get("metadata"), limits.max_metadata)
    personality = check_personality(body.get("personality"), limits.max_personality,
                                    limits.max_personality_size)
    nics = _nic_requests(body.get("networks"))
    security_groups = check_security_groups(body.get("security_groups"))
    project = body.get("project")
    if project is not None:
        project = _text(project, "project", 255)
    key_names = _key_names(body)
    user_data = _user_data(body.get("user_data"))
    admin_pass = body.get("adminPass")
    if admin_pass is not None:
        admin_pass = (check_password(admin_pass) if strong_password
                      else _text(admin_pass, "adminPass", 255))
    shared = body.get("shared_to_project", False)
    if not isinstance(shared, bool):
        raise errors.BadRequest("shared_to_project must be true or false.")
    if body.get("trusted_image_certificates") is not None:
        raise errors.BadRequest(TRUSTED_CERTIFICATES_REFUSED)
    return CreateRequest(
        description=check_description(body.get("description")),
        name=name, flavor_id=flavor_id, image_id=image_id, metadata=metadata,
        personality=personality, networks=nics, project=project, key_names=key_names,
        user_data=user_data, admin_pass=admin_pass, tags=check_tags(body.get("tags")),
        shared_to_project=shared, access_ipv4=check_access_ip(body.get("accessIPv4"), 4),
        access_ipv6=check_access_ip(body.get("accessIPv6"), 6), security_groups=security_groups,
        block_devices=devices)
