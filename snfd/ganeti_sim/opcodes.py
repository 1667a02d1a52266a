"""Opcodes as the simulated cluster writes them: parameters, forms, errors.

A Ganeti job is a list of opcodes; each opcode is a JSON object with an
``OP_ID`` and its parameters.  Real Ganeti 3.0 writes the same opcode in
three shapes, and the simulator reproduces each (measured on a real
cluster, see reference/ganeti.md Part B section 7):

* *submitted* (``submitted_input``): what the RAPI handler filled in, as the
  queue daemon first writes it: the common parameters first (``dry_run``
  when the handler sets it, ``priority``, ``depends``, ``comment``,
  ``reason``, ``OP_ID``), then the opcode's own parameters that have a
  value, in definition order;
* *loaded* (``loaded_input``): the same keys as rewritten by the job process
  when it starts, own parameters first and the common ones last;
* *expanded* (``expanded_input``): once the opcode runs, every parameter of
  its definition is present (``None`` where unset) and ``debug_level`` is
  added.

``rapi_op`` gives the opcode as ``GET /2/jobs/<id>`` shows it: common
parameters first, ``None`` values dropped except ``depends`` and
``comment``.

Failures are ``OpError``s; their ``result()`` is the ``opresult`` entry
``[error class, [message, ecode]]`` (or ``[error class, [message]]`` for the
errors real Ganeti raises without an error code).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

# Ganeti's error codes (the second element of an OpPrereqError's args).
ECODE_RESOLVER = "resolver_error"
ECODE_NORES = "insufficient_resources"
ECODE_TEMP_NORES = "temp_insufficient_resources"
ECODE_INVAL = "wrong_input"
ECODE_STATE = "wrong_state"
ECODE_NOENT = "unknown_entity"
ECODE_EXISTS = "already_exists"
ECODE_NOTUNIQUE = "resource_not_unique"
ECODE_FAULT = "internal_error"
ECODE_ENVIRON = "environment_error"

# Per-opcode statuses, and the terminal ones.
OP_STATUSES = ("queued", "waiting", "canceling", "running", "canceled", "success", "error")
FINAL_STATUSES = frozenset({"success", "error", "canceled"})

_REQUIRED = object()   # a parameter without a default
_FILLED = object()     # not set at submission; filled with ``default`` on expansion

# Definition order, default, and whether the default is filled in only at
# expansion (True) or already at submission (False).  A default of None
# means "unset": the parameter is left out of the submitted form.
_Field = tuple[str, Any, bool]

FIELDS: dict[str, tuple[_Field, ...]] = {
    "OP_INSTANCE_CREATE": (
        ("instance_name", _REQUIRED, False),
        ("force_variant", False, False),
        ("wait_for_sync", True, False),
        ("name_check", True, False),
        ("ignore_ipolicy", False, False),
        ("opportunistic_locking", False, False),
        ("beparams", {}, False),
        ("disks", _REQUIRED, False),
        ("disk_template", _REQUIRED, False),
        ("group_name", None, False),
        ("file_driver", None, False),
        ("file_storage_dir", None, False),
        ("hvparams", {}, False),
        ("hypervisor", None, False),
        ("iallocator", None, False),
        ("identify_defaults", False, False),
        ("ip_check", True, False),
        ("conflicts_check", True, False),
        ("mode", _REQUIRED, False),
        ("nics", _REQUIRED, False),
        ("no_install", None, False),
        ("osparams", {}, False),
        ("osparams_private", None, False),
        ("osparams_secret", None, False),
        ("os_type", None, False),
        ("pnode", None, False),
        ("pnode_uuid", None, False),
        ("snode", None, False),
        ("snode_uuid", None, False),
        ("source_handshake", None, False),
        ("source_instance_name", None, False),
        ("source_shutdown_timeout", 120, False),
        ("source_x509_ca", None, False),
        ("src_node", None, False),
        ("src_node_uuid", None, False),
        ("src_path", None, False),
        ("compress", "none", False),
        ("start", True, False),
        ("forthcoming", False, False),
        ("commit", False, False),
        ("tags", [], False),
        ("instance_communication", False, False),
        ("helper_startup_timeout", 300, True),
        ("helper_shutdown_timeout", 7200, True),
    ),
    "OP_INSTANCE_REMOVE": (
        ("instance_name", _REQUIRED, False),
        ("instance_uuid", None, False),
        ("shutdown_timeout", 120, False),
        ("ignore_failures", False, False),
    ),
    "OP_INSTANCE_STARTUP": (
        ("instance_name", _REQUIRED, False),
        ("instance_uuid", None, False),
        ("force", False, False),
        ("ignore_offline_nodes", False, False),
        ("hvparams", {}, False),
        ("beparams", {}, False),
        ("no_remember", False, False),
        ("startup_paused", False, False),
        ("shutdown_timeout", 120, False),
    ),
    "OP_INSTANCE_SHUTDOWN": (
        ("instance_name", _REQUIRED, False),
        ("instance_uuid", None, False),
        ("force", False, False),
        ("ignore_offline_nodes", False, False),
        ("timeout", 120, False),
        ("no_remember", False, False),
        ("admin_state_source", "admin", True),
    ),
    "OP_INSTANCE_REBOOT": (
        ("instance_name", _REQUIRED, False),
        ("instance_uuid", None, False),
        ("shutdown_timeout", 120, False),
        ("ignore_secondaries", False, False),
        ("reboot_type", _REQUIRED, False),
    ),
    "OP_INSTANCE_REINSTALL": (
        ("instance_name", _REQUIRED, False),
        ("instance_uuid", None, False),
        ("force_variant", False, False),
        ("os_type", None, False),
        ("osparams", None, False),
        ("osparams_private", None, False),
        ("osparams_secret", None, False),
    ),
    "OP_INSTANCE_MIGRATE": (
        ("instance_name", _REQUIRED, False),
        ("instance_uuid", None, False),
        ("mode", None, False),
        ("live", None, False),
        ("target_node", None, False),
        ("target_node_uuid", None, False),
        ("allow_runtime_changes", True, False),
        ("ignore_ipolicy", False, False),
        ("cleanup", False, False),
        ("iallocator", None, False),
        ("allow_failover", False, False),
        ("ignore_hvversions", False, False),
    ),
    "OP_INSTANCE_FAILOVER": (
        ("instance_name", _REQUIRED, False),
        ("instance_uuid", None, False),
        ("shutdown_timeout", 120, False),
        ("ignore_consistency", False, False),
        ("target_node", None, False),
        ("target_node_uuid", None, False),
        ("ignore_ipolicy", False, False),
        ("cleanup", False, False),
        ("iallocator", None, False),
    ),
    "OP_INSTANCE_SET_PARAMS": (
        ("instance_name", _REQUIRED, False),
        ("instance_uuid", None, False),
        ("force", False, False),
        ("force_variant", False, False),
        ("ignore_ipolicy", False, False),
        ("nics", [], False),
        ("disks", [], False),
        ("beparams", {}, False),
        ("runtime_mem", None, False),
        ("hvparams", {}, False),
        ("disk_template", None, False),
        ("ext_params", {}, False),
        ("file_driver", None, False),
        ("file_storage_dir", None, False),
        ("pnode", None, False),
        ("pnode_uuid", None, False),
        ("remote_node", None, False),
        ("remote_node_uuid", None, False),
        ("iallocator", None, False),
        ("os_name", None, False),
        ("osparams", {}, False),
        ("osparams_private", None, False),
        ("wait_for_sync", True, False),
        ("offline", None, False),
        ("conflicts_check", True, False),
        ("hotplug", False, False),
        ("hotplug_if_possible", False, False),
        ("instance_communication", None, False),
    ),
    "OP_TAGS_SET": (
        ("kind", _REQUIRED, False),
        ("tags", _REQUIRED, False),
        ("name", None, False),
    ),
    "OP_TAGS_DEL": (
        ("kind", _REQUIRED, False),
        ("tags", _REQUIRED, False),
        ("name", None, False),
    ),
    "OP_INSTANCE_QUERY_DATA": (
        ("use_locking", False, False),
        ("instances", [], False),
        ("static", False, False),
    ),
    "OP_OS_DIAGNOSE": (
        ("output_fields", _REQUIRED, False),
        ("names", [], False),
    ),
    "OP_NETWORK_ADD": (
        ("network_name", _REQUIRED, False),
        ("network", _REQUIRED, False),
        ("gateway", None, False),
        ("network6", None, False),
        ("gateway6", None, False),
        ("mac_prefix", None, False),
        ("add_reserved_ips", None, False),
        ("conflicts_check", True, False),
        ("tags", [], False),
    ),
    "OP_NETWORK_REMOVE": (
        ("network_name", _REQUIRED, False),
        ("force", False, False),
    ),
    "OP_NETWORK_CONNECT": (
        ("group_name", _REQUIRED, False),
        ("network_name", _REQUIRED, False),
        ("network_mode", _REQUIRED, False),
        ("network_link", _REQUIRED, False),
        ("network_vlan", "", False),
        ("conflicts_check", True, False),
    ),
    "OP_NETWORK_DISCONNECT": (
        ("group_name", _REQUIRED, False),
        ("network_name", _REQUIRED, False),
    ),
}

# The opcode's own name for its "Object OpXxx doesn't support..." errors.
CLASS_NAMES = {
    "OP_INSTANCE_CREATE": "OpInstanceCreate",
    "OP_INSTANCE_REMOVE": "OpInstanceRemove",
    "OP_INSTANCE_STARTUP": "OpInstanceStartup",
    "OP_INSTANCE_SHUTDOWN": "OpInstanceShutdown",
    "OP_INSTANCE_REBOOT": "OpInstanceReboot",
    "OP_INSTANCE_SET_PARAMS": "OpInstanceSetParams",
    "OP_INSTANCE_REINSTALL": "OpInstanceReinstall",
    "OP_INSTANCE_MIGRATE": "OpInstanceMigrate",
    "OP_INSTANCE_FAILOVER": "OpInstanceFailover",
    "OP_TAGS_SET": "OpTagsSet",
    "OP_TAGS_DEL": "OpTagsDel",
    "OP_INSTANCE_QUERY_DATA": "OpInstanceQueryData",
    "OP_OS_DIAGNOSE": "OpOsDiagnose",
    "OP_NETWORK_ADD": "OpNetworkAdd",
    "OP_NETWORK_REMOVE": "OpNetworkRemove",
    "OP_NETWORK_CONNECT": "OpNetworkConnect",
    "OP_NETWORK_DISCONNECT": "OpNetworkDisconnect",
}

# Which parameter names the opcode in its job summary, e.g. INSTANCE_CREATE(vm1).
_SUMMARY_FIELD = {
    "OP_INSTANCE_CREATE": "instance_name",
    "OP_INSTANCE_REMOVE": "instance_name",
    "OP_INSTANCE_STARTUP": "instance_name",
    "OP_INSTANCE_SHUTDOWN": "instance_name",
    "OP_INSTANCE_REBOOT": "instance_name",
    "OP_INSTANCE_SET_PARAMS": "instance_name",
    "OP_INSTANCE_REINSTALL": "instance_name",
    "OP_INSTANCE_MIGRATE": "instance_name",
    "OP_INSTANCE_FAILOVER": "instance_name",
    "OP_TEST_DELAY": "duration",
    "OP_NETWORK_ADD": "network_name",
    "OP_NETWORK_REMOVE": "network_name",
    "OP_NETWORK_CONNECT": "network_name",
    "OP_NETWORK_DISCONNECT": "network_name",
}

_COMMON_SUBMITTED = ("dry_run", "priority", "depends", "comment", "reason", "OP_ID")
_COMMON_EXPANDED = ("dry_run", "debug_level", "priority", "depends", "comment", "reason",
                    "OP_ID")
_KEEP_NULL = frozenset({"depends", "comment"})

DISK_TEMPLATES = ("diskless", "file", "sharedfile", "plain", "drbd", "blockdev", "rbd", "ext",
                  "gluster")
REBOOT_TYPES = ("soft", "hard", "full")
MIGRATION_MODES = ("live", "non-live")
#: Ganeti 3.0's hypervisor types (``Hypervisor`` in ``src/Ganeti/Types.hs``):
#: an op naming another fails validation.
HYPERVISOR_TYPES = ("kvm", "xen-pvm", "chroot", "xen-hvm", "lxc", "fake")
CREATE_MODES = ("create", "import", "remote-import")
TAG_KINDS = ("cluster", "instance", "node", "nodegroup", "network")


class OpError(Exception):
    """An opcode failed: ``error_class`` (e.g. ``OpPrereqError``), a
    message and Ganeti's error code (None for errors raised without one)."""

    def __init__(self, error_class: str, message: str, ecode: str | None = None):
        super().__init__(error_class, message, ecode)
        self.error_class = error_class
        self.message = message
        self.ecode = ecode

    def result(self) -> list[Any]:
        """The op's ``result`` entry: ``[class, [message, ecode]]``."""
        args: list[Any] = [self.message]
        if self.ecode is not None:
            args.append(self.ecode)
        return [self.error_class, args]


def prereq(message: str, ecode: str | None = None) -> OpError:
    """An ``OpPrereqError``: the checks failed and nothing was changed."""
    return OpError("OpPrereqError", message, ecode)


class BodyError(Exception):
    """A RAPI request body or query that Ganeti rejects with 400 before
    any job exists; ``str()`` is the message (before HTML escaping)."""


def _validation_error(op_id: str, field: str) -> BodyError:
    # Ganeti shows the repr of its (message, ecode) tuple here.
    return BodyError(
        f"Invalid body parameters: (\"Parameter '{op_id}.{field}' fails validation\","
        f" '{ECODE_INVAL}')")


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_name(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _is_list_of_dicts(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, dict) for x in v)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _maybe(check: Any) -> Any:
    return lambda v: v is None or check(v)


def _one_of(values: tuple[str, ...]) -> Any:
    return lambda v: v in values


def _is_timeout(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _is_mod_list(v: Any) -> bool:
    """NIC/disk modifications: ``[[action, params]]`` or ``[[action, id, params]]``."""
    if not isinstance(v, list):
        return False
    for item in v:
        if not isinstance(item, list) or len(item) not in (2, 3):
            return False
        if not isinstance(item[-1], dict):
            return False
    return True


def _is_depends(v: Any) -> bool:
    if v is None:
        return True
    if not isinstance(v, list):
        return False
    for dep in v:
        if not (isinstance(dep, list) and len(dep) == 2 and _is_int(dep[0])
                and _is_str_list(dep[1])
                and all(s in FINAL_STATUSES for s in dep[1])):
            return False
    return True


# Type checks for parameters a client may pass; anything not listed is
# accepted as any JSON value.
_CHECKS: dict[str, Any] = {
    "instance_name": _is_name,
    "force_variant": _is_bool,
    "wait_for_sync": _is_bool,
    "name_check": _is_bool,
    "ignore_ipolicy": _is_bool,
    "opportunistic_locking": _is_bool,
    "beparams": _is_dict,
    "hvparams": _is_dict,
    "osparams": _is_dict,
    "osparams_private": _maybe(_is_dict),
    "osparams_secret": _maybe(_is_dict),
    "ext_params": _is_dict,
    "identify_defaults": _is_bool,
    "ip_check": _is_bool,
    "conflicts_check": _is_bool,
    "no_install": _maybe(_is_bool),
    "os_type": _maybe(_is_name),
    "os_name": _maybe(_is_name),
    "pnode": _maybe(_is_name),
    "snode": _maybe(_is_name),
    "iallocator": _maybe(_is_name),
    "hypervisor": _maybe(_one_of(HYPERVISOR_TYPES)),
    "group_name": _maybe(_is_name),
    "start": _is_bool,
    "forthcoming": _is_bool,
    "commit": _is_bool,
    "tags": _is_str_list,
    "instance_communication": _maybe(_is_bool),
    "force": _is_bool,
    "ignore_offline_nodes": _is_bool,
    "no_remember": _is_bool,
    "startup_paused": _is_bool,
    "timeout": _is_timeout,
    "shutdown_timeout": _is_timeout,
    "source_shutdown_timeout": _is_timeout,
    "ignore_secondaries": _is_bool,
    "ignore_failures": _is_bool,
    "reboot_type": _one_of(REBOOT_TYPES),
    "hotplug": _is_bool,
    "hotplug_if_possible": _is_bool,
    "runtime_mem": _maybe(_is_int),
    "offline": _maybe(_is_bool),
    "dry_run": _is_bool,
    "depends": _is_depends,
    "use_locking": _is_bool,
    "static": _is_bool,
    "kind": _one_of(TAG_KINDS),
    "name": _maybe(_is_name),
    "mode": _maybe(_one_of(MIGRATION_MODES)),
    "live": _maybe(_is_bool),
    "target_node": _maybe(_is_name),
    "allow_runtime_changes": _is_bool,
    "cleanup": _is_bool,
    "allow_failover": _is_bool,
    "ignore_hvversions": _is_bool,
    "ignore_consistency": _is_bool,
}

NIC_MODES = ("bridged", "routed", "openvswitch")
NETWORK_OPS = frozenset({"OP_NETWORK_ADD", "OP_NETWORK_REMOVE", "OP_NETWORK_CONNECT",
                         "OP_NETWORK_DISCONNECT"})


def _is_ipv4_network(v: Any) -> bool:
    try:
        ipaddress.IPv4Network(v)
    except (TypeError, ValueError):
        return False
    return isinstance(v, str)


def _is_ipv4(v: Any) -> bool:
    try:
        ipaddress.IPv4Address(v)
    except (TypeError, ValueError):
        return False
    return isinstance(v, str)


def _is_ipv6_network(v: Any) -> bool:
    try:
        ipaddress.IPv6Network(v)
    except (TypeError, ValueError):
        return False
    return isinstance(v, str)


def _is_ipv6(v: Any) -> bool:
    try:
        ipaddress.IPv6Address(v)
    except (TypeError, ValueError):
        return False
    return isinstance(v, str)


_NETWORK_CHECKS: dict[str, Any] = {
    "network_name": _is_name,
    "network": _is_ipv4_network,
    "gateway": _maybe(_is_ipv4),
    "network6": _maybe(_is_ipv6_network),
    "gateway6": _maybe(_is_ipv6),
    "mac_prefix": _maybe(lambda v: isinstance(v, str)),
    "add_reserved_ips": _maybe(lambda v: isinstance(v, list) and all(_is_ipv4(x) for x in v)),
    "group_name": _is_name,
    "network_mode": _one_of(NIC_MODES),
    "network_link": _is_name,
    "network_vlan": lambda v: isinstance(v, str),
    "tags": lambda v: isinstance(v, list) and all(_is_name(x) for x in v),
}

_CREATE_CHECKS: dict[str, Any] = {
    "mode": _one_of(CREATE_MODES),
    "disk_template": _one_of(DISK_TEMPLATES),
    "disks": _is_list_of_dicts,
    "nics": _is_list_of_dicts,
}

_SET_PARAMS_CHECKS: dict[str, Any] = {
    "nics": _is_mod_list,
    "disks": _is_mod_list,
    "disk_template": _maybe(_one_of(DISK_TEMPLATES)),
}


def fill(op_id: str, params: dict[str, Any], *, dry_run: bool | None = None,
         depends: Any = None) -> dict[str, Any]:
    """The submitted opcode for ``op_id`` with the client's ``params``.

    Defaults that real Ganeti sets at submission are added; ``dry_run`` is
    included only when the RAPI handler passes it (not None).  Raises
    ``BodyError`` for an unknown parameter, a missing required one or a
    value of the wrong type, with Ganeti's 400 message.
    """
    fields = FIELDS[op_id]
    known = {name for name, _, _ in fields}
    for key in params:
        if key not in known and key not in ("dry_run", "depends", "priority", "comment"):
            raise BodyError(
                f"Invalid body parameters: Object {CLASS_NAMES[op_id]} doesn't support"
                f" the parameter '{key}'")
    checks = dict(_CHECKS)
    if op_id == "OP_INSTANCE_CREATE":
        checks.update(_CREATE_CHECKS)
    elif op_id == "OP_INSTANCE_SET_PARAMS":
        checks.update(_SET_PARAMS_CHECKS)
    elif op_id.startswith("OP_NETWORK_"):
        checks.update(_NETWORK_CHECKS)
    own: dict[str, Any] = {}
    for name, default, filled_later in fields:
        if name in params:
            value = params[name]
        elif default is _REQUIRED:
            raise _validation_error(op_id, name)
        elif default is None or filled_later:
            continue
        else:
            value = _copy(default)
        check = checks.get(name)
        if check is not None and not check(value):
            raise _validation_error(op_id, name)
        if value is None:
            continue
        own[name] = value
    if "dry_run" in params:
        dry_run = params["dry_run"]
    if dry_run is not None and not _is_bool(dry_run):
        raise _validation_error(op_id, "dry_run")
    depends = params.get("depends", depends)
    if not _is_depends(depends):
        raise _validation_error(op_id, "depends")
    submitted: dict[str, Any] = {}
    if dry_run is not None:
        submitted["dry_run"] = dry_run
    submitted["priority"] = 0
    submitted["depends"] = depends
    submitted["comment"] = params.get("comment")
    submitted["reason"] = []
    submitted["OP_ID"] = op_id
    submitted.update(own)
    return submitted


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def add_reason(op: dict[str, Any], source: str | None, detail: str, source_ns: int,
               job_id: int, index: int, received_ns: int) -> None:
    """Set the reason trail as Ganeti records it: who submitted the job
    (``gnt:library:rlib2:<handler>`` or ``gnt:client:gnt-instance``), then
    the opcode itself (``gnt:opcode:<name>`` with ``job=N;index=i``).

    ``source`` None leaves the first entry out, as for the ops RAPI's
    reinstall handler builds itself (they carry only ``gnt:opcode:...``)."""
    opname = op["OP_ID"][3:].lower()
    trail: list[list[Any]] = [] if source is None else [[source, detail, source_ns]]
    trail.append([f"gnt:opcode:{opname}", f"job={job_id};index={index}", received_ns])
    op["reason"] = trail


def _own_keys(op: dict[str, Any]) -> list[str]:
    return [k for k in op if k not in _COMMON_EXPANDED]


def submitted_input(op: dict[str, Any]) -> dict[str, Any]:
    """``op`` in the queue daemon's key order (common parameters first)."""
    out = {k: op[k] for k in _COMMON_EXPANDED if k in op}
    for k in _own_keys(op):
        out[k] = op[k]
    return out


def loaded_input(op: dict[str, Any]) -> dict[str, Any]:
    """``op`` as the job process first rewrites it: own parameters first,
    then the common ones."""
    out = {k: op[k] for k in _own_keys(op)}
    for k in _COMMON_EXPANDED:
        if k in op:
            out[k] = op[k]
    return out


def expanded_input(op: dict[str, Any]) -> dict[str, Any]:
    """``op`` with every parameter of its definition (defaults, None where
    unset), ``dry_run`` (None if the handler did not set it) and
    ``debug_level``, in the job process's key order."""
    out: dict[str, Any] = {}
    for name, default, _ in FIELDS.get(op["OP_ID"], ()):
        if name in op:
            out[name] = op[name]
        elif default is _REQUIRED or default is None:
            out[name] = None
        else:
            out[name] = _copy(default)
    for k in _own_keys(op):
        out.setdefault(k, op[k])
    out["dry_run"] = op.get("dry_run")
    out["debug_level"] = op.get("debug_level", 0)
    for k in ("priority", "depends", "comment", "reason", "OP_ID"):
        out[k] = op.get(k)
    return out


def rapi_op(op: dict[str, Any]) -> dict[str, Any]:
    """The opcode as ``GET /2/jobs/<id>`` shows it."""
    out: dict[str, Any] = {}
    for k in _COMMON_EXPANDED:
        if k in op and (op[k] is not None or k in _KEEP_NULL):
            out[k] = op[k]
    for k in _own_keys(op):
        if op[k] is not None:
            out[k] = op[k]
    return out


def summary(op: dict[str, Any]) -> str:
    """The job summary entry, e.g. ``INSTANCE_CREATE(vm1)`` or ``TAGS_SET``."""
    op_id = str(op.get("OP_ID", ""))
    short = op_id[3:] if op_id.startswith("OP_") else op_id
    field = _SUMMARY_FIELD.get(op_id)
    if field is None or op.get(field) is None:
        return short
    value = op[field]
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = float(value)
    return f"{short}({value})"


_TAG_RE = re.compile(r"^[\w.+*/:@-]+$")
MAX_TAG_LEN = 128
MAX_TAGS_PER_OBJ = 4096


def check_tag(tag: Any) -> None:
    """Raise Ganeti's ``TagError`` for a tag it would refuse."""
    if not isinstance(tag, str):
        raise OpError("TagError", f"Invalid tag type (not a string): {tag!r}")
    if len(tag) > MAX_TAG_LEN:
        raise OpError("TagError", f"Tag too long (>{MAX_TAG_LEN} characters)")
    if not tag:
        raise OpError("TagError", "Tags cannot be empty")
    if not _TAG_RE.match(tag):
        raise OpError("TagError", "Tag contains invalid characters")


def job_status(op_statuses: list[str]) -> str:
    """A job's status from its ops' statuses, as Ganeti derives it: the
    first op that failed or was cancelled decides; success only when every
    op succeeded; otherwise the state of the op in progress."""
    status = "queued"
    for s in op_statuses:
        if s == "success":
            continue
        if s in ("waiting", "running"):
            status = s
        elif s in ("canceling", "error", "canceled"):
            return s
    if op_statuses and all(s == "success" for s in op_statuses):
        return "success"
    return status
