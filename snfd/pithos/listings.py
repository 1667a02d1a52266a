"""The object store's listings in the three formats of the API (reference
2.2-2.5): JSON, XML and plain text, as ``Reply`` values.

``accounts`` (the top level: accounts sharing with the caller),
``containers`` (an account), ``objects`` (a container), ``versions`` and
``hashmap`` (an object), ``blocks`` (the hashes of a block upload) and
``bulk_summary`` (Swift's bulk delete).  A text listing is one name per
line, 204 when empty (Swift and Pithos); JSON and XML always answer 200.
Pure functions of what the backend returned: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from snfd.pithos import headers as hdr
from snfd.pithos.hashmap import HASH_ALGORITHM
from snfd.pithos.model import ContainerInfo, ObjectInfo, Sharer, Subdir
from snfd.pithos.requests import Reply
from snfd.pithos.validation import XML_FORBIDDEN

JSON = "application/json; charset=utf-8"
XML = "application/xml; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'

Headers = list[tuple[str, str]]


def json_reply(value: Any, code: int = 200, headers: Headers | None = None) -> Reply:
    return Reply(code, headers or [], json.dumps(value).encode("utf-8"), JSON)


def xml_reply(body: str, code: int = 200, headers: Headers | None = None) -> Reply:
    return Reply(code, headers or [], (_XML_HEAD + body).encode("utf-8"), XML)


def text_lines(lines: Sequence[str], headers: Headers) -> Reply:
    """A text listing; 204 when empty (Swift and Pithos)."""
    if not lines:
        return Reply(204, headers)
    return Reply(200, headers, "".join(f"{n}\n" for n in lines).encode("utf-8"), TEXT)


def _xml_safe(value: Any) -> str:
    """``value`` as text XML 1.0 can hold: characters it cannot (in names
    stored before ``validation.check_new_object_name`` refused them)
    become U+FFFD; JSON listings give such names exactly."""
    return XML_FORBIDDEN.sub("\ufffd", str(value))


def _x(tag: str, value: Any) -> str:
    return f"<{tag}>{escape(_xml_safe(value))}</{tag}>"


def _attr(value: Any) -> str:
    return quoteattr(_xml_safe(value))


# -- the three levels -----------------------------------------------------------


def accounts(sharers: Sequence[Sharer], fmt: str) -> Reply:
    """The top level: the accounts sharing something with the caller."""
    if fmt == "json":
        return json_reply([{"name": s.name, "last_modified": hdr.iso_date(s.mtime)}
                           for s in sharers])
    if fmt == "xml":
        items = "".join(f"<account>{_x('name', s.name)}"
                        f"{_x('last_modified', hdr.iso_date(s.mtime))}</account>"
                        for s in sharers)
        return xml_reply(f"<accounts>{items}</accounts>")
    return text_lines([s.name for s in sharers], [])


def containers(account: str, found: Sequence[ContainerInfo | Subdir], owner: bool,
               until: float | None, fmt: str, headers: Headers) -> Reply:
    """An account's containers (and, with a delimiter, the subdirs they
    roll up into: ``{"subdir": ...}``, ``<subdir name="..."/>`` as Swift
    writes them); their policies only for the ``owner``."""
    if fmt == "json":
        return json_reply([{"subdir": c.name} if isinstance(c, Subdir)
                           else container_entry(c, owner, until) for c in found],
                          headers=headers)
    if fmt == "xml":
        items = "".join(f"<subdir name={_attr(c.name)} />" if isinstance(c, Subdir)
                        else _container_xml(c, owner, until) for c in found)
        return xml_reply(f"<account name={_attr(account)}>{items}</account>",
                         headers=headers)
    return text_lines([c.name for c in found], headers)


def container_entry(c: ContainerInfo, owner: bool, until: float | None) -> dict[str, Any]:
    """A container as a JSON listing shows it."""
    entry: dict[str, Any] = {"name": c.name, "count": c.count, "bytes": c.bytes,
                             "last_modified": hdr.iso_date(c.mtime)}
    if until is not None:
        entry["x_container_until_timestamp"] = hdr.timestamp(c.until or until)
    if owner:
        entry["x_container_policy"] = {"quota": str(c.policy.quota),
                                       "versioning": c.policy.versioning,
                                       "project": c.policy.project}
    return entry


def _container_xml(c: ContainerInfo, owner: bool, until: float | None) -> str:
    entry = container_entry(c, owner, until)
    policy = entry.pop("x_container_policy", None)
    inner = "".join(_x(k, v) for k, v in entry.items())
    if policy is not None:
        inner += "<x_container_policy>" + "".join(
            _x("key", k) + _x("value", v) for k, v in policy.items()
        ) + "</x_container_policy>"
    return f"<container>{inner}</container>"


def objects(container: str, entries: Sequence[ObjectInfo | Subdir], user: str,
            public_link: Callable[[str], str], fmt: str, headers: Headers) -> Reply:
    """A container's objects (and virtual directories) as ``user`` sees
    them; ``public_link(token)`` is the URL of a public object."""
    if fmt == "json":
        return json_reply([{"subdir": e.name} if isinstance(e, Subdir)
                           else object_entry(e, user, public_link) for e in entries],
                          headers=headers)
    if fmt == "xml":
        items = []
        for e in entries:
            if isinstance(e, Subdir):
                items.append(f"<subdir name={_attr(e.name)}>{_x('name', e.name)}"
                             "</subdir>")
            else:
                items.append("<object>" + "".join(
                    _x(k, v) for k, v in object_entry(e, user, public_link).items())
                    + "</object>")
        return xml_reply(f"<container name={_attr(container)}>{''.join(items)}"
                         "</container>", headers=headers)
    return text_lines([e.name for e in entries], headers)


def object_entry(info: ObjectInfo, user: str,
                 public_link: Callable[[str], str]) -> dict[str, Any]:
    """An object as a JSON listing shows it."""
    entry: dict[str, Any] = {
        "name": info.name,
        "hash": info.checksum or info.hash,
        "bytes": info.size,
        "content_type": info.type,
        "last_modified": hdr.iso_date(info.mtime),
        "x_object_hash": info.hash,
        "x_object_uuid": info.uuid,
        "x_object_version": info.serial,
        "x_object_version_timestamp": hdr.timestamp(info.mtime),
        "x_object_modified_by": info.muser,
    }
    if info.sharing:
        entry["x_object_sharing"] = hdr.format_sharing(info.sharing)
    if info.shared_by:
        entry["x_object_shared_by"] = info.shared_by
    if info.allowed_to and user != info.account:
        entry["x_object_allowed_to"] = info.allowed_to
    if info.public and user == info.account:
        entry["x_object_public"] = public_link(info.public)
    return entry


# -- one object -----------------------------------------------------------------


def versions(name: str, found: Sequence[tuple[int, float]], fmt: str) -> Reply:
    """``?version=list``: the versions (id, time) of an object; JSON or
    XML only (the caller refuses text)."""
    if fmt == "xml":
        items = "".join(f"<version timestamp=\"{hdr.timestamp(m)}\">{s}</version>"
                        for s, m in found)
        return xml_reply(f"<object name={_attr(name)}>{items}</object>")
    return json_reply({"versions": [[s, hdr.timestamp(m)] for s, m in found]})


def hashmap(info: ObjectInfo, hashes: Sequence[str], fmt: str, headers: Headers) -> Reply:
    """``?hashmap``: the block size, hash algorithm, size and block
    hashes of an object; JSON or XML."""
    if fmt == "xml":
        items = "".join(_x("hash", h) for h in hashes)
        return xml_reply(f"<object name={_attr(info.name)} bytes=\"{info.size}\""
                         f" block_size=\"{info.block_size}\" block_hash=\"{HASH_ALGORITHM}\">"
                         f"{items}</object>", headers=headers)
    return json_reply({"block_size": info.block_size, "block_hash": HASH_ALGORITHM,
                       "bytes": info.size, "hashes": list(hashes)}, headers=headers)


def blocks(hashes: Sequence[str], fmt: str) -> Reply:
    """The 202 of a block upload: the hashes of the blocks stored."""
    if fmt == "xml":
        return xml_reply("<items>" + "".join(_x("item", h) for h in hashes) + "</items>",
                         202)
    if fmt == "text":
        return Reply(202, [], "".join(f"{h}\n" for h in hashes).encode(), TEXT)
    return json_reply(list(hashes), 202)


def bulk_summary(summary: dict[str, Any], fmt: str, root: str = "delete") -> Reply:
    """Swift's bulk summary (bulk delete, SLO delete; archive extraction
    with the XML ``root`` ``extract``) in the format asked for;
    ``Errors`` holds ``(name, status)`` pairs."""
    if fmt == "json":
        return json_reply(summary)
    if fmt == "xml":
        parts = []
        for key, value in summary.items():
            tag = key.lower().replace(" ", "_")
            if key == "Errors":
                errs = "".join(f"<object>{_x('name', n)}{_x('status', s)}</object>"
                               for n, s in value)
                parts.append(f"<errors>{errs}</errors>")
            else:
                parts.append(_x(tag, value))
        return xml_reply(f"<{root}>{''.join(parts)}</{root}>")
    lines = []
    for key, value in summary.items():
        if key == "Errors":
            lines.append("Errors:")
            lines.extend(f"{n}, {s}" for n, s in value)
        else:
            lines.append(f"{key}: {value}")
    return Reply(200, [], ("\n".join(lines) + "\n").encode("utf-8"), TEXT)


__all__ = ["JSON", "TEXT", "XML", "accounts", "blocks", "bulk_summary", "container_entry",
           "containers", "hashmap", "json_reply", "object_entry", "objects", "text_lines",
           "versions", "xml_reply"]
