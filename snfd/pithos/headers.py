"""The object store's header and query-parameter rules (reference 2.1,
2.6, 2.15), as pure functions the HTTP layer (``api.py``) calls.

Text in requests: header values are ASCII or raw UTF-8 (Swift clients
send raw UTF-8); anything else is a 400.  Values that name things --
metadata keys and values, group names and members, sharing lists, copy
sources and destinations, ``X-Object-Manifest`` -- are also
percent-decoded (Pithos clients URL-encode non-ASCII text), strictly as
UTF-8.  ``Content-Type``, ``Content-Encoding`` and ``Content-Disposition``
are stored verbatim.

Text in replies: a value of an ``X-Account-*``, ``X-Container-*``,
``X-Object-*`` or ``Content-*`` header that is not ASCII is URL-encoded;
so is a percent-decoded value that holds a ``%`` (so that decoding the
reply gives back what was stored).  Other values are sent as they are.

Metadata keys are normalised the Pithos way: underscores become dashes
and every dash-separated word is capitalised (``X-Object-Meta-Foo-Bar``).
Limits (400 beyond them): 32 keys per request, key (after the prefix) at
most 128 bytes, value at most 256 bytes, all in UTF-8.

Dates: headers use RFC 1123 (``Last-Modified``, rounded up to the
second as Swift does), listings ISO 8601 (``2024-01-02T03:04:05.123450``,
UTC, to the five decimals of ``X-Timestamp``, as Swift writes them), Pithos
timestamps (``X-Object-Version-Timestamp``, ``X-*-Until-Timestamp``)
epoch seconds with six decimals, ``X-Timestamp`` five decimals (Swift).
"""

from __future__ import annotations

import datetime
import itertools
import math
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote_to_bytes

from twisted.web.http import datetimeToString, stringToDatetime

from snfd import errors
from snfd.pithos.model import Permissions
from snfd.pithos.rules import (
    MAX_GROUP_MEMBERS,
    MAX_GROUPS,
    MAX_HEADER_COUNT,
    MAX_HEADER_SIZE,
    MAX_META_KEYS,
    MAX_META_NAME,
    MAX_META_OVERALL,
    MAX_META_VALUE,
)
from snfd.pithos.validation import check_meta_key, check_meta_value

# Swift's limits on a Range header (``swob.Range.ranges_for_length``):
# more satisfiable ranges than this, more overlapping pairs, or this many
# ranges out of ascending order make the request "egregious" (RFC 7233
# section 6.1), which Swift answers with 416.
MAX_RANGES = 50
MAX_RANGE_OVERLAPS = 2
MAX_NONASCENDING_RANGES = 8

# The stored content headers that travel with an object's metadata.
CONTENT_HEADERS = ("Content-Encoding", "Content-Disposition", "X-Object-Manifest",
                   "X-Delete-At")
# Reply headers whose non-ASCII values are URL-encoded.
_QUOTED_FAMILIES = ("x-account-", "x-container-", "x-object-", "content-")
# Verbatim headers: stored as received, so only non-ASCII needs encoding.
_VERBATIM = ("content-type", "content-encoding", "content-disposition", "content-range",
             "content-length")
_SAFE = "/=,:@; *!'()&+$"

_GROUP_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,256}$")
_ENTRY = re.compile(r"^[^\s=;,]+$")


# -- decoding request text ------------------------------------------------------


def text(raw: bytes | str, what: str) -> str:
    """A request value as text: ASCII or UTF-8, else 400."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.BadRequest(f"{what} is not valid UTF-8.") from None


def unquoted(value: str, what: str) -> str:
    """``value`` percent-decoded, the result read as UTF-8 (400 if it is
    not).  Invalid escapes (``50%``) are kept as they are."""
    if "%" not in value:
        return value
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise errors.BadRequest(f"{what} does not decode to UTF-8.") from None


class HeaderFieldsTooLarge(errors.Fault):
    """Swift's answer to more headers than it takes (431)."""

    code, name = 431, "requestHeaderFieldsTooLarge"


def check_header_limits(request: object) -> None:
    """Swift's limits on a request's headers, as ``/info`` advertises
    them: a value longer than ``MAX_HEADER_SIZE`` is a 400 ``Header value
    too long: <name>`` (``constraints.check_metadata``), more than
    ``MAX_HEADER_COUNT`` headers a 431 ``Too many headers`` (Swift's
    HTTP protocol)."""
    count = 0
    for name, values in request.requestHeaders.getAllRawHeaders():  # type: ignore[attr-defined]
        count += len(values)
        for value in values:
            if len(value) > MAX_HEADER_SIZE:
                shown = name.decode("latin-1")[:MAX_META_NAME]
                raise errors.BadRequest(f"Header value too long: {shown}")
    if count > MAX_HEADER_COUNT:
        raise HeaderFieldsTooLarge("Too many headers")


def header(request: object, name: str) -> str | None:
    """The request header ``name`` as text (several values joined with
    ``,``), ``None`` when absent."""
    values = request.requestHeaders.getRawHeaders(name.encode("ascii"))  # type: ignore[attr-defined]
    if values is None:
        return None
    return ",".join(text(v, f"The header {name}") for v in values)


def all_headers(request: object, *prefixes: str) -> list[tuple[str, str]]:
    """The request headers whose lowercase names start with one of
    ``prefixes``, as ``(lowercase name, text value)`` (other headers are
    not decoded, so odd bytes in them do no harm)."""
    out = []
    for name, values in request.requestHeaders.getAllRawHeaders():  # type: ignore[attr-defined]
        key = name.decode("latin-1").lower()
        if not key.startswith(prefixes):
            continue
        key = text(name, "A header name").lower()
        for v in values:
            out.append((key, text(v, f"The header {key}")))
    return out


# -- metadata -------------------------------------------------------------------


def normal_key(key: str) -> str:
    """The Pithos form of a metadata key: ``foo_bar-baz`` -> ``Foo-Bar-Baz``."""
    return "-".join(w.capitalize() for w in key.replace("_", "-").split("-"))


def meta_headers(request: object, kind: str, replacing: bool = False,
                 ) -> dict[str, str] | None:
    """The ``X-<Kind>-Meta-*`` headers of ``request`` as
    ``{"X-<Kind>-Meta-<Key>": value}`` (``kind``: Account, Container,
    Object); ``X-Remove-<Kind>-Meta-<Key>`` gives an empty value (delete),
    or, when the metadata given are ``replacing`` the old (an object's PUT
    or POST, where an empty value is kept as Swift keeps it), no entry.
    ``None`` when the request has none.  Enforces the limits."""
    prefix = f"x-{kind.lower()}-meta-"
    remove = f"x-remove-{kind.lower()}-meta-"
    meta: dict[str, str] = {}
    seen = False
    for name, value in all_headers(request, prefix, remove):
        if name.startswith(prefix):
            key, value = name[len(prefix):], value
        elif name.startswith(remove):
            key, value = name[len(remove):], ""
        else:
            continue
        seen = True
        key = unquoted(key, "A metadata key")
        if not key:
            raise errors.BadRequest("Metadata name cannot be empty")
        value = unquoted(value.strip(), f"The value of metadata {key!r}")
        check_meta_item(key, value)
        if replacing and name.startswith(remove):
            continue
        meta[f"X-{kind}-Meta-{normal_key(key)}"] = value
    if len(meta) > MAX_META_KEYS:
        raise errors.BadRequest(f"Too many metadata items; max {MAX_META_KEYS}")
    prefix_length = len(f"X-{kind}-Meta-")
    total = sum(len(k.encode("utf-8")) - prefix_length + len(v.encode("utf-8"))
                for k, v in meta.items())
    if total > MAX_META_OVERALL:
        raise errors.BadRequest(f"Total metadata too large; max {MAX_META_OVERALL}")
    return meta if seen else None


def check_meta_item(key: str, value: str) -> None:
    """400 unless a metadata key and value are within the limits."""
    if len(key.encode("utf-8")) > MAX_META_NAME:
        raise errors.BadRequest(f"Metadata name too long: {key[:40]}...; max {MAX_META_NAME}")
    if len(value.encode("utf-8")) > MAX_META_VALUE:
        raise errors.BadRequest(f"Metadata value longer than {MAX_META_VALUE}: {key[:40]}")
    if "\x00" in key or "\x00" in value:
        raise errors.BadRequest("Metadata may not hold NUL characters.")
    check_meta_key(key)
    check_meta_value(key, value)


def group_headers(request: object) -> dict[str, tuple[str, ...]] | None:
    """``X-Account-Group-<name>: member,member`` headers as
    ``{name (lowercase): members}``; an empty value gives ``()`` (delete
    the group).  ``None`` when the request has none."""
    prefix = "x-account-group-"
    groups: dict[str, tuple[str, ...]] = {}
    seen = False
    for name, value in all_headers(request, prefix):
        seen = True
        group = unquoted(name[len(prefix):], "A group name").lower()
        if not group:
            continue
        if not _GROUP_NAME.match(group):
            raise errors.BadRequest(f"Bad group name {group[:40]!r}.")
        members = unquoted(value, f"The members of group {group!r}").replace(" ", "")
        listed = tuple(dict.fromkeys(m for m in members.split(",") if m))
        for m in listed:
            if not _ENTRY.match(m):
                raise errors.BadRequest(f"Bad group member {m[:60]!r}.")
        if len(listed) > MAX_GROUP_MEMBERS:
            raise errors.BadRequest(
                f"A group has at most {MAX_GROUP_MEMBERS} members ({group!r}).")
        groups[group] = listed
    if len(groups) > MAX_GROUPS:
        raise errors.BadRequest(f"An account has at most {MAX_GROUPS} groups.")
    return groups if seen else None


def policy_headers(request: object) -> dict[str, str] | None:
    """``X-Container-Policy-<key>`` headers as ``{key (lowercase): value}``
    (the backend checks keys and values); ``None`` when there are none."""
    prefix = "x-container-policy-"
    policy = {name[len(prefix):]: value.strip() for name, value in all_headers(request, prefix)
              if len(name) > len(prefix)}
    return policy or None


def content_meta(request: object) -> dict[str, str]:
    """The stored content headers given with an object write:
    ``Content-Encoding``, ``Content-Disposition`` (verbatim) and
    ``X-Object-Manifest`` (percent-decoded ``container/prefix``) and
    ``X-Delete-At`` (as ``snfd.pithos.expiry`` left it)."""
    out: dict[str, str] = {}
    for name in ("Content-Encoding", "Content-Disposition"):
        value = header(request, name)
        if value is not None:
            out[name] = value.strip()
    manifest = header(request, "X-Object-Manifest")
    if manifest is not None:
        manifest = unquoted(manifest.strip(), "X-Object-Manifest").lstrip("/")
        if manifest and "/" not in manifest:
            raise errors.BadRequest("X-Object-Manifest must be <container>/<prefix>.")
        out["X-Object-Manifest"] = manifest
    delete_at = header(request, "X-Delete-At")
    if delete_at is not None:  # checked by snfd.pithos.expiry
        out["X-Delete-At"] = delete_at.strip()
    for name, value in out.items():
        if "\x00" in value or len(value.encode("utf-8")) > 1024:
            raise errors.BadRequest(f"Bad {name} header.")
    return out


# -- sharing and public ---------------------------------------------------------


def parse_sharing(value: str) -> Permissions:
    """``X-Object-Sharing: read=a,b;write=c`` as ``Permissions``.

    Spaces are dropped and entries lowercased; ``*`` absorbs the rest of
    its list; an empty value means no sharing.  400 on bad syntax.
    """
    value = unquoted(value, "X-Object-Sharing").replace(" ", "").lower()
    lists: dict[str, list[str]] = {"read": [], "write": []}
    for part in value.split(";"):
        if not part:
            continue
        kind, eq, entries = part.partition("=")
        if not eq or kind not in lists:
            raise errors.BadRequest(
                f"Bad X-Object-Sharing part {part[:60]!r}: use read=...;write=...")
        for entry in entries.split(","):
            if not entry:
                continue
            if not _ENTRY.match(entry):
                raise errors.BadRequest(f"Bad X-Object-Sharing entry {entry[:60]!r}.")
            if entry not in lists[kind]:
                lists[kind].append(entry)
    for kind, listed in lists.items():
        if "*" in listed:
            lists[kind] = ["*"]
    return Permissions(read=tuple(lists["read"]), write=tuple(lists["write"]))


def format_sharing(p: Permissions) -> str:
    """The reply form of ``X-Object-Sharing``: ``read=a,b;write=c``."""
    parts = []
    if p.read:
        parts.append("read=" + ",".join(p.read))
    if p.write:
        parts.append("write=" + ",".join(p.write))
    return ";".join(parts)


def parse_public(value: str) -> bool:
    """``X-Object-Public``: ``true`` publishes, ``false`` or empty
    withdraws; anything else is a 400."""
    v = value.strip().lower()
    if v == "true":
        return True
    if v in ("false", ""):
        return False
    raise errors.BadRequest("X-Object-Public must be true or false.")


# -- reply headers --------------------------------------------------------------


def reply_value(name: str, value: str) -> bytes:
    """The wire form of a reply header value (see the module docstring)."""
    lower = name.lower()
    if lower.startswith(_QUOTED_FAMILIES):
        verbatim = lower in _VERBATIM
        if not value.isascii() or (not verbatim and "%" in value):
            value = quote(value, safe=_SAFE)
    return value.encode("utf-8")


def reply_name(name: str) -> bytes:
    """A reply header name; a non-ASCII metadata key is URL-encoded."""
    if name.isascii() and "%" not in name:
        return name.encode("ascii")
    return quote(name, safe="-_").encode("ascii")


# -- dates ----------------------------------------------------------------------


def http_seconds(t: float) -> int:
    """The whole second an HTTP date shows for time ``t``: rounded up, as
    Swift's ``Timestamp.ceil()`` (so that a date read back from
    ``Last-Modified`` is never before the write)."""
    # X-Timestamp's five decimals decide, so that both tell one story.
    return math.ceil(round(t, 5))


def http_date(t: float) -> str:
    """RFC 1123 (``Tue, 15 Nov 1994 08:12:31 GMT``) of ``t`` rounded up
    to the second (``http_seconds``)."""
    return datetimeToString(http_seconds(t)).decode("ascii")


def parse_http_date(value: str | None) -> int | None:
    """Epoch seconds of an HTTP date (RFC 1123, RFC 850 or asctime);
    ``None`` for an absent or unreadable one (which is then ignored)."""
    if not value:
        return None
    try:
        return int(stringToDatetime(value.encode("ascii", "replace")))
    except (ValueError, IndexError, KeyError, OverflowError):
        return None


def iso_date(t: float) -> str:
    """ISO 8601 in UTC with microseconds, as Swift lists ``last_modified``
    (its timestamps have five decimals, as ``X-Timestamp``)."""
    d = datetime.datetime.fromtimestamp(round(t, 5), datetime.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%f")


def timestamp(t: float) -> str:
    """A Pithos timestamp header value: epoch seconds, six decimals."""
    return f"{t:.6f}"


def x_timestamp(t: float) -> str:
    """Swift's ``X-Timestamp``: epoch seconds, five decimals."""
    return f"{t:.5f}"


# -- ranges and conditions ------------------------------------------------------


def parse_ranges(value: str | None, size: int) -> list[tuple[int, int]] | None:
    """The satisfiable ranges of a ``Range`` header as ``[(start, end)]``
    (end exclusive), in the order given; ranges that overlap or touch
    are coalesced (RFC 7233 section 4.1), the result then in ascending
    order, so no byte is sent twice.

    ``None`` means "send the whole object": no header, a unit other than
    ``bytes`` or bad syntax (RFC 7233 lets a server ignore such headers,
    and Swift does).  416 with ``Content-Range: bytes */<size>`` when no
    range is satisfiable, and, as Swift answers them, for egregious
    requests: more than ``MAX_RANGES`` satisfiable ranges, more than
    ``MAX_RANGE_OVERLAPS`` overlapping pairs, or ``MAX_NONASCENDING_RANGES``
    or more ranges out of ascending order.
    """
    if value is None:
        return None
    unit, eq, spec = value.strip().partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    specs = [s.strip() for s in spec.split(",") if s.strip()]
    if not specs:
        return None
    parsed: list[tuple[int | None, int | None]] = []
    for s in specs:
        first, dash, last = s.partition("-")
        first, last = first.strip(), last.strip()
        if not dash or (first and not first.isdigit()) or (last and not last.isdigit()):
            return None
        if not first and not last:
            return None
        a = int(first) if first else None
        b = int(last) if last else None
        if a is not None and b is not None and b < a:
            return None
        parsed.append((a, b))
    ranges = []
    for a, b in parsed:
        if a is None:
            assert b is not None
            if b == 0 or size == 0:
                continue
            ranges.append((max(0, size - b), size))
        elif a < size:
            ranges.append((a, size if b is None else min(b + 1, size)))
    unsatisfiable = {"Content-Range": f"bytes */{size}"}
    if not ranges:
        raise errors.RangeNotSatisfiable(
            "None of the requested ranges is within the object.", headers=unsatisfiable)
    if _egregious(ranges):
        raise errors.RangeNotSatisfiable(
            f"Too many ranges (at most {MAX_RANGES}), overlapping ranges or ranges"
            " out of order.", headers=unsatisfiable)
    return _coalesced(ranges)


def _egregious(ranges: list[tuple[int, int]]) -> bool:
    """Swift's test for a Range header not worth serving (RFC 7233
    section 6.1), except that ranges which share any byte count as
    overlapping (Swift misses identical ones, so ``0-,0-,...`` passed)."""
    if len(ranges) > MAX_RANGES:
        return True
    overlaps = sum(1 for (s1, e1), (s2, e2) in itertools.combinations(ranges, 2)
                   if s1 < e2 and s2 < e1)
    if overlaps > MAX_RANGE_OVERLAPS:
        return True
    ascending = all(a <= b for a, b in itertools.pairwise(ranges))
    return not ascending and len(ranges) >= MAX_NONASCENDING_RANGES


def _coalesced(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` with those that overlap or touch merged, in ascending
    order; as given when none do."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return ranges if len(merged) == len(ranges) else merged


def _tags(value: str) -> set[str]:
    """The entity tags of an ``If-Match``/``If-None-Match`` list, each
    stripped of its quotes (``swob.normalize_etag``); ``W/`` tags are
    kept as given, so they never match."""
    out = set()
    for t in value.split(","):
        t = t.strip()
        if len(t) > 1 and t.startswith('"') and t.endswith('"'):
            t = t[1:-1]
        if t:
            out.add(t)
    return out


def etag_matches(value: str, etag: str | None) -> bool:
    """Whether an ``If-Match``/``If-None-Match`` list names ``etag``
    (``*`` names any existing object, ``etag=None`` is "no object"), as
    ``swob.Match`` does."""
    if etag is None:
        return False
    tags = _tags(value)
    return "*" in tags or etag.strip('"') in tags


def check_preconditions(request: object, etag: str | None, mtime: float | None,
                        reading: bool) -> None:
    """Swift's evaluation of the conditional headers against the
    resource's ``etag`` and ``mtime`` (``None``: not known), in
    ``swob.Response._get_conditional_response_status``'s order, each
    header on its own (not RFC 7232's precedence):

    1. ``If-None-Match`` naming the resource (or ``*``): 304 when
       ``reading`` (GET/HEAD, with ``ETag``/``Last-Modified``), else 412;
    2. ``If-Match`` not naming it: 412;
    3. ``If-Modified-Since`` at or after ``Last-Modified`` (the time
       rounded up to the second, ``http_date``): 304 when ``reading``;
    4. ``If-Unmodified-Since`` before it: 412.

    Unreadable dates are ignored.
    """
    not_modified: dict[str, str] = {}
    if etag is not None:
        not_modified["ETag"] = etag
    if mtime is not None:
        not_modified["Last-Modified"] = http_date(mtime)
    if_none = header(request, "If-None-Match")
    if if_none is not None and etag_matches(if_none, etag):
        if reading:
            raise errors.NotModified("Not modified.", headers=not_modified)
        raise errors.PreconditionFailed("The resource matches If-None-Match.")
    if_match = header(request, "If-Match")
    if if_match is not None and not etag_matches(if_match, etag):
        raise errors.PreconditionFailed("The resource does not match If-Match.")
    if mtime is None:
        return
    last = http_seconds(mtime)
    since = parse_http_date(header(request, "If-Modified-Since"))
    if reading and since is not None and last <= since:
        raise errors.NotModified("Not modified.", headers=not_modified)
    since = parse_http_date(header(request, "If-Unmodified-Since"))
    if since is not None and last > since:
        raise errors.PreconditionFailed("The resource was modified since then.")


def if_range_holds(request: object, etag: str, mtime: float) -> bool:
    """Whether a ``Range`` is to be honoured given ``If-Range`` (an ETag
    or a date; absent: yes)."""
    value = header(request, "If-Range")
    if value is None:
        return True
    value = value.strip()
    date = parse_http_date(value) if not value.startswith(('"', "W/")) else None
    if date is not None:
        return http_seconds(mtime) == date
    # An entity tag (quoted or, as Pithos ETags are sent, bare); weak never.
    return not value.startswith("W/") and value.strip('"') == etag.strip('"')


# -- formats and paths ----------------------------------------------------------


def listing_format(given: str | None, accept: str | None, default: str = "text") -> str:
    """``json``, ``xml`` or ``text``: the ``format`` parameter ``given``,
    else the ``Accept`` header (``application/json``, ``application/xml``,
    ``text/xml``, ``text/plain``), else ``default``."""
    if given:
        f = given.strip().lower()
        if f == "json":
            return "json"
        if f == "xml":
            return "xml"
        if f in ("text", "plain"):
            return "text"
        return default
    if accept:
        kinds = [a.split(";")[0].strip().lower() for a in accept.split(",")]
        for k in kinds:
            if k == "application/json":
                return "json"
            if k in ("application/xml", "text/xml"):
                return "xml"
            if k == "text/plain":
                return "text"
    return default


def split_object_path(value: str, what: str) -> tuple[str, str]:
    """``/<container>/<object>`` (leading slash optional, percent-encoded)
    as ``(container, object)``; 400 when one is missing."""
    path = unquoted(value.strip(), what).lstrip("/")
    container, slash, name = path.partition("/")
    if not container or not slash or not name:
        raise errors.BadRequest(f"{what} must be /<container>/<object>.")
    return container, name


def content_disposition(kind: str, name: str) -> str:
    """``Content-Disposition`` for ``disposition-type``: ``kind`` with the
    object's base name as the file name (RFC 6266; ``filename*`` for
    names that are not plain ASCII)."""
    base = name.rstrip("/").rsplit("/", 1)[-1] or name
    if base.isascii() and base.isprintable() and '"' not in base and "\\" not in base:
        return f'{kind}; filename="{base}"'
    return f"{kind}; filename*=UTF-8''{quote(base, safe='')}"


def join_values(values: Iterable[str]) -> str:
    return ",".join(values)
