"""What the object store accepts before it stores anything: names,
metadata, attributes, sharing entries, groups and container policies.

Pure rules, no I/O: each ``check_*`` raises ``errors.BadRequest`` with a
message for the user, each ``checked_*`` returns the value as stored.  The
limits are ``snfd.pithos.rules``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from snfd import errors
from snfd.pithos.model import ANYONE, VERSIONING, Permissions
from snfd.pithos.rules import (
    MAX_ACCOUNT_NAME,
    MAX_CONTAINER_NAME,
    MAX_GROUP_MEMBERS,
    MAX_META_KEYS,
    MAX_OBJECT_NAME,
)
from snfd.pithos.store import MetaFilter

POLICY_KEYS = ("quota", "versioning", "project")

USER_META = "x-object-meta-"
"""The prefix of user metadata keys, lowercased."""
OBJECT_META_PREFIX = "X-Object-Meta-"
# Content headers a metadata replacement (POST without ?update) replaces
# along with the user meta; other stored keys (SLO markers) stay.
_CONTENT_HEADERS = frozenset({"content-encoding", "content-disposition", "x-object-manifest",
                              "x-delete-at"})


# -- names --------------------------------------------------------------------

def check_account_name(name: str) -> None:
    """``BadRequest`` unless ``name`` is a valid account name."""
    _check_name("Account", name, MAX_ACCOUNT_NAME, slash=False)


def check_container_name(name: str) -> None:
    """``BadRequest`` unless ``name`` is a valid container name."""
    _check_name("Container", name, MAX_CONTAINER_NAME, slash=False)


def check_object_name(name: str) -> None:
    """``BadRequest`` unless ``name`` is a valid object name."""
    _check_name("Object", name, MAX_OBJECT_NAME, slash=True)


def check_path(account: str, container: str, name: str) -> None:
    """``BadRequest`` unless the three names of an object path are valid."""
    check_account_name(account)
    check_container_name(container)
    check_object_name(name)


# What XML 1.0 cannot hold, even as a character reference: C0 controls
# other than tab, LF and CR, surrogates, U+FFFE and U+FFFF.
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def check_new_container_name(name: str) -> None:
    """``BadRequest`` unless ``name`` is valid for a container to be
    created: ``check_container_name``, and no character an XML listing
    cannot show."""
    check_container_name(name)
    _check_listable("Container", name)


def check_new_object_name(name: str) -> None:
    """``BadRequest`` unless ``name`` is valid for an object to be
    written: ``check_object_name``, and no character an XML listing
    cannot show.  (Names stored before this rule stay readable and
    deletable: reads use ``check_object_name``.)"""
    check_object_name(name)
    _check_listable("Object", name)


def check_new_path(account: str, container: str, name: str) -> None:
    """``BadRequest`` unless an object may be written at this path (see
    ``check_new_object_name``)."""
    check_path(account, container, name)
    _check_listable("Object", name)


def _check_listable(kind: str, name: str) -> None:
    bad = XML_FORBIDDEN.search(name)
    if bad is not None:
        raise errors.BadRequest(
            f"{kind} name holds the character U+{ord(bad.group()):04X}, which XML"
            " listings cannot hold.")


def _check_name(kind: str, name: str, limit: int, slash: bool) -> None:
    if not isinstance(name, str) or not name:
        raise errors.BadRequest(f"{kind} name is empty.")
    if len(name) > limit:
        raise errors.BadRequest(f"{kind} name is longer than {limit} characters.")
    if "\x00" in name:
        raise errors.BadRequest(f"{kind} name contains a NUL character.")
    if not slash and "/" in name:
        raise errors.BadRequest(f"{kind} name contains '/'.")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.BadRequest(f"{kind} name is not valid Unicode.") from None


# -- metadata and attributes --------------------------------------------------

def is_user_meta(key: str) -> bool:
    """Whether an object attribute key is user metadata (X-Object-Meta-*)."""
    return key.lower().startswith(USER_META)


def replaceable(key: str) -> bool:
    """Whether a metadata replacement replaces the stored object key ``key``
    (user metadata and content headers do; SLO markers stay)."""
    return is_user_meta(key) or key.lower() in _CONTENT_HEADERS


def check_meta(meta: Mapping[str, str], prefix: str) -> None:
    """``BadRequest`` unless ``meta`` (as it would be stored) holds at most
    ``MAX_META_KEYS`` keys starting with ``prefix`` and only text without
    NUL characters."""
    count = sum(1 for k in meta if k.lower().startswith(prefix.lower()))
    if count > MAX_META_KEYS:
        raise errors.BadRequest(
            f"Too many metadata keys ({count}; at most {MAX_META_KEYS}).")
    _check_text_items(meta, "Metadata keys and values must be text.",
                      "Metadata may not contain NUL characters.")
    for key in meta:
        check_meta_key(key)


# The characters of an HTTP token (RFC 9110 5.6.2), which header names are.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def check_meta_key(key: str) -> None:
    """``BadRequest`` unless the metadata key ``key`` can be sent back as
    a header name: its ASCII characters are token characters (no
    spaces, controls, ``:`` or separators); other characters are sent
    URL-encoded."""
    for c in key:
        if c.isascii() and c not in _TOKEN:
            raise errors.BadRequest(
                f"Metadata key {key[:40]!r} holds {c!r}, which header names may not hold.")


def check_meta_value(key: str, value: str) -> None:
    """``BadRequest`` if a metadata value holds control characters (other
    than tab), which header values may not hold."""
    for c in value:
        if (c < " " and c != "\t") or c == "\x7f":
            raise errors.BadRequest(
                f"The value of metadata {key[:40]!r} holds the control character {c!r}.")


def check_attributes(attributes: Mapping[str, str]) -> dict[str, str]:
    """The attributes of one domain other than ``pithos`` as stored: at
    most ``MAX_META_KEYS`` keys, non-empty text keys and text values
    without NUL characters; ``BadRequest`` otherwise."""
    if len(attributes) > MAX_META_KEYS:
        raise errors.BadRequest(
            f"Too many attributes ({len(attributes)}; at most {MAX_META_KEYS}).")
    _check_text_items(attributes, "Attribute keys must be non-empty text, values text.",
                      "Attributes may not contain NUL characters.")
    return dict(attributes)


def _check_text_items(items: Mapping[str, str], not_text: str, nul: str) -> None:
    """``BadRequest(not_text)`` unless every key is non-empty text and every
    value text; ``BadRequest(nul)`` if any holds a NUL character."""
    for key, value in items.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise errors.BadRequest(not_text)
        if "\x00" in key or "\x00" in value:
            raise errors.BadRequest(nul)


def merged_meta(old: Mapping[str, str], meta: Mapping[str, str], replace: bool,
                replaceable: Callable[[str], bool] = lambda key: True,
                keep_empty: bool = False) -> dict[str, str]:
    """``meta`` applied to ``old``: ``replace`` drops every replaceable key
    first; an empty value deletes its key, unless ``keep_empty`` (an
    object's metadata, whose empty values Swift keeps)."""
    if replace:
        out = {k: v for k, v in old.items() if not replaceable(k)}
        out.update({k: v for k, v in meta.items() if v != "" or keep_empty})
        return out
    out = dict(old)
    for key, value in meta.items():
        if value == "" and not keep_empty:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def meta_key(key: str) -> str:
    """A metadata key as stored: underscores become dashes and every
    dash-separated word is capitalised."""
    return "-".join(w.capitalize() for w in key.strip().replace("_", "-").split("-"))


def parse_meta_filters(filters: Sequence[str]) -> list[MetaFilter]:
    """The reference's ``meta`` listing filters: ``key``, ``!key`` and
    ``key<op>value`` with ``op`` one of ``= != <= >= < >``; keys are user
    metadata keys (normalised as ``meta_key``)."""
    out = []
    for raw in filters:
        f = raw.strip()
        if not f:
            continue
        if f.startswith("!") and not f.startswith("!="):
            out.append(MetaFilter(OBJECT_META_PREFIX + meta_key(f[1:]), "not"))
            continue
        for i, ch in enumerate(f):
            two = f[i:i + 2]
            if two in ("!=", "<=", ">="):
                op = two
            elif ch in "=<>":
                op = ch
            else:
                continue
            key = f[:i].strip()
            if not key:
                raise errors.BadRequest(f"Bad meta filter {raw!r}.")
            out.append(MetaFilter(OBJECT_META_PREFIX + meta_key(key), op,
                                  f[i + len(op):].strip()))
            break
        else:
            out.append(MetaFilter(OBJECT_META_PREFIX + meta_key(f), "has"))
    return out


# -- sharing, groups, policies ------------------------------------------------

def _clean_entries(entries: Sequence[str]) -> tuple[str, ...]:
    out: set[str] = set()
    cleaned = ["".join(str(raw).split()).lower() for raw in entries]
    if ANYONE in cleaned:
        return (ANYONE,)
    for raw, entry in zip(entries, cleaned, strict=True):
        if not entry:
            continue
        if entry == "*":
            return ("*",)
        if (any(c in entry for c in ",;=/\x00") or entry.count(":") > 1
                or entry.startswith(":") or entry.endswith(":")):
            raise errors.BadRequest(f"Bad sharing entry {raw!r}.")
        out.add(entry)
    return tuple(sorted(out))


def checked_permissions(permissions: Permissions) -> Permissions:
    """Sharing as stored: entries without spaces, lowercased, ``ANYONE``
    or else ``*`` absorbing the rest of its list; ``BadRequest`` on bad
    syntax and for ``ANYONE`` in a write list (nobody writes without a
    token)."""
    write = _clean_entries(permissions.write)
    if ANYONE in write:
        raise errors.BadRequest(f"{ANYONE} may only be given to read.")
    return Permissions(_clean_entries(permissions.read), write)


def checked_groups(groups: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Groups as stored: names lowercased, members cleaned as sharing
    entries (user ids only, at most ``MAX_GROUP_MEMBERS``); an empty
    member list stays empty (it deletes the group)."""
    out = {}
    for raw, members in groups.items():
        name = raw.strip().lower()
        if not name or any(c in name for c in ",;=:/\x00") or len(name) > 256:
            raise errors.BadRequest(f"Bad group name {raw!r}.")
        cleaned = _clean_entries(members)
        if any(":" in m or m == "*" for m in cleaned):
            raise errors.BadRequest(f"Group {raw!r}: members must be user ids.")
        if len(cleaned) > MAX_GROUP_MEMBERS:
            raise errors.BadRequest(
                f"Group {raw!r} has {len(cleaned)} members; at most {MAX_GROUP_MEMBERS}.")
        out[name] = cleaned
    return out


def checked_policy(policy: Mapping[str, str]) -> dict[str, str | None]:
    """Container policy keys as stored (``None``: back to the default)."""
    out: dict[str, str | None] = {}
    for key, raw in policy.items():
        k = key.strip().lower()
        value = (raw or "").strip()
        if k not in POLICY_KEYS:
            raise errors.BadRequest(f"Unknown container policy {key!r}"
                                    f" (known: {', '.join(POLICY_KEYS)}).")
        if not value:
            out[k] = None
        elif k == "quota":
            try:
                quota = int(value)
            except ValueError:
                quota = -1
            if quota < 0:
                raise errors.BadRequest(f"Bad quota policy {raw!r} (bytes, 0 = unlimited).")
            out[k] = str(quota)
        elif k == "versioning":
            if value.lower() not in VERSIONING:
                raise errors.BadRequest(
                    f"Bad versioning policy {raw!r} (one of {', '.join(VERSIONING)}).")
            out[k] = value.lower()
        else:
            if "\x00" in value or len(value) > 256:
                raise errors.BadRequest(f"Bad project policy {raw!r}.")
            out[k] = value
    return out


__all__ = ["OBJECT_META_PREFIX", "POLICY_KEYS", "USER_META", "XML_FORBIDDEN",
           "check_account_name", "check_attributes", "check_container_name", "check_meta",
           "check_new_container_name", "check_new_object_name", "check_new_path",
           "check_object_name", "check_path", "checked_groups", "checked_permissions",
           "checked_policy", "is_user_meta", "merged_meta", "meta_key", "parse_meta_filters",
           "replaceable"]
