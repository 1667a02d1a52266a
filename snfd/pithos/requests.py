"""What a request to the object store API addresses and asks, and the
shape of its reply: ``parse_target`` (the path rules of ``snfd.pithos.api``),
``Call`` (one request being answered, with its query parameters decoded),
``Reply`` and ``respond``, which sends one.

Query parameters are read from the raw query string, not from
``request.args``: twisted drops a bare ``?update``, and a parameter's
bytes must be checked as UTF-8 (400 otherwise).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

import attrs

from snfd import errors
from snfd.pithos import headers as hdr
from snfd.pithos.permissions import ANONYMOUS
from snfd.pithos.rules import MAX_ACCOUNT_NAME, MAX_CONTAINER_NAME, MAX_LIST, MAX_OBJECT_NAME
from snfd.web.auth import user_of

OCTET_STREAM = "application/octet-stream"
TRUE = ("1", "true", "yes", "on", "t", "y")
"""The values a boolean parameter or header takes for yes."""


# -- what a request addresses ---------------------------------------------------


@attrs.frozen
class Target:
    """What a path names: ``level`` is ``top``, ``account``, ``container``
    or ``object``; the names below it are ``None``."""

    account: str | None = None
    container: str | None = None
    name: str | None = None

    @property
    def level(self) -> str:
        if self.name is not None:
            return "object"
        if self.container is not None:
            return "container"
        if self.account is not None:
            return "account"
        return "top"


def _decoded(raw: bytes, what: str, limit: int) -> str:
    try:
        value = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise errors.BadRequest(f"The {what} name is not valid UTF-8.") from None
    if not value:
        raise errors.BadRequest(f"The {what} name is empty.")
    if "\x00" in value:
        raise errors.BadRequest(f"The {what} name holds a NUL character.")
    if len(value) > limit:
        raise errors.BadRequest(
            f"{what.capitalize()} name length of {len(value)} longer than {limit}")
    return value


def raw_postpath(request: Any) -> list[bytes]:
    """``request.postpath`` as the client sent it: Twisted percent-decodes
    each segment of ``postpath``, and ``parse_target`` decodes them
    (once, as Swift's WSGI does), so an object named ``a%2Fb`` is sent
    as ``a%252Fb`` and ``%2F`` is a slash of the name."""
    raw = request.path.split(b"?", 1)[0][1:].split(b"/")
    count = len(request.postpath)
    segments: list[bytes] = raw[len(raw) - count:] if count <= len(raw) else raw
    # A mount that put a segment back in front (``snfd.pithos.layout``)
    # keeps it as given.
    if len(segments) < count:
        segments = list(request.postpath[:count - len(segments)]) + segments
    return segments


def parse_target(segments: Sequence[bytes]) -> Target:
    """The ``Target`` of the raw path segments below the mount point
    (``[b"v1", account, container, *object]``); see ``snfd.pithos.api``.

    @raise errors.NotFound: not a ``/v1`` path.
    @raise errors.BadRequest: a bad name.
    """
    if not segments or segments[0] != b"v1":
        raise errors.NotFound("No such resource: the API lives under /object-store/v1.")
    rest = list(segments[1:])
    if rest and rest[-1] == b"" and len(rest) <= 3:
        rest.pop()  # a trailing slash after the account or container
    if not rest:
        return Target()
    account = _decoded(rest[0], "account", MAX_ACCOUNT_NAME)
    if "/" in account:
        raise errors.BadRequest("The account name may not hold '/'.")
    if len(rest) == 1:
        return Target(account)
    container = _decoded(rest[1], "container", MAX_CONTAINER_NAME)
    if "/" in container:
        raise errors.BadRequest("The container name may not hold '/'.")
    if len(rest) == 2:
        return Target(account, container)
    name = _decoded(b"/".join(rest[2:]), "object", MAX_OBJECT_NAME)
    return Target(account, container, name)


# -- replies --------------------------------------------------------------------


Stream = Callable[[Any], Awaitable[bool]]

#: What every reply without a body type of its own says it holds, as Swift
#: answers (also on 204s and HEADs).
PLAIN = "text/plain; charset=utf-8"


def swift_style(request: Any) -> str:
    """The fault style of the object store (``snfd.errors.render_fault``):
    Swift's plain-text messages."""
    return "swift"


@attrs.define
class Reply:
    """A response: status, headers (in order; a name may repeat), and a
    body or a ``stream`` writing ``length`` bytes (``False`` when the
    client went away).  ``HEAD`` replies send the headers only."""

    code: int
    headers: list[tuple[str, str]] = attrs.Factory(list)
    body: bytes = b""
    content_type: str | None = None
    stream: Stream | None = None
    length: int | None = None


async def respond(request: Any, handle: Callable[[Any], Awaitable[Reply]]) -> None:
    """Run ``handle(request)`` and send its reply, or its fault (rendered
    by ``snfd.errors.render_fault``).  A ``HEAD`` reply sends the headers
    only.  A stream that fails is handed to the request's
    ``processingFailed`` (``snfd.web.site.Request``): before its first
    byte, the fault is answered instead of the reply; after it, the
    connection is dropped (the client sees a short body).  Nothing is
    written once the client has gone away."""
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))
    request.fault_style = swift_style(request)
    try:
        reply = await handle(request)
    except Exception as e:
        if gone:
            return
        body = errors.render_fault(request, e)
        if request.code not in (204, 304):
            request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()
        return
    if gone:
        return
    request.setResponseCode(reply.code)
    for name, value in reply.headers:
        request.responseHeaders.addRawHeader(hdr.reply_name(name),
                                             hdr.reply_value(name, value))
    if reply.content_type is not None:
        request.setHeader(b"content-type", reply.content_type.encode("utf-8"))
    elif not request.responseHeaders.hasHeader(b"content-type"):
        request.setHeader(b"content-type", PLAIN.encode("ascii"))
    if reply.code not in (204, 304):
        length = reply.length if reply.stream is not None else len(reply.body)
        request.setHeader(b"content-length", b"%d" % (length or 0))
    if reply.stream is None or request.method == b"HEAD":
        request.write(reply.body)
        request.finish()
        return
    try:
        complete = await reply.stream(request)
    except Exception:
        if gone:
            return
        raise
    if complete and not gone:
        request.finish()


# -- query parameters -----------------------------------------------------------


@attrs.define
class Call:
    """One request being answered: the raw request, its method, target
    and decoded query parameters (first value of each)."""

    request: Any
    method: str
    target: Target
    args: dict[str, str]

    @property
    def anonymous(self) -> bool:
        """The caller gave no token."""
        return getattr(self.request, "principal", None) is None

    @property
    def user(self) -> str:
        """The acting user: the caller's uuid; for a read (``GET``,
        ``HEAD``) of a container or an object without a token,
        ``ANONYMOUS``, whom the backend lets read what is open to all
        (Swift's ``.r:*``); otherwise 401 without a token."""
        if self.anonymous and self.method in ("GET", "HEAD") and \
                self.target.level in ("container", "object"):
            return ANONYMOUS
        user = user_of(self.request).user
        assert user is not None
        return user

    def has(self, name: str) -> bool:
        return name in self.args

    def get(self, name: str) -> str | None:
        return self.args.get(name)

    def header(self, name: str) -> str | None:
        return hdr.header(self.request, name)

    def fmt(self, default: str = "text") -> str:
        return hdr.listing_format(self.args.get("format"), self.header("Accept"), default)

    def flag(self, name: str) -> bool:
        """A parameter given at all (``?shared``, ``?update``)."""
        return name in self.args

    def truthy(self, name: str) -> bool:
        return (self.args.get(name) or "").strip().lower() in TRUE

    def integer(self, name: str) -> int | None:
        value = self.args.get(name)
        if value is None or value == "":
            return None
        if not value.strip().isdigit():
            raise errors.BadRequest(f"The parameter {name} must be a non-negative integer.")
        return int(value)

    def epoch(self, name: str = "until") -> float | None:
        value = self.args.get(name)
        if value is None or value == "":
            return None
        try:
            t = float(value)
        except ValueError:
            raise errors.BadRequest(f"The parameter {name} must be epoch seconds.") from None
        if not 0 <= t < 1e11:
            raise errors.BadRequest(f"The parameter {name} is out of range.")
        return t

    def limit(self) -> int:
        given = self.integer("limit")
        return MAX_LIST if given is None else min(given, MAX_LIST)

    def text_param(self, name: str) -> str | None:
        value = self.args.get(name)
        if value is not None and "\x00" in value:
            raise errors.BadRequest(f"The parameter {name} holds a NUL character.")
        return value


def query_args(request: Any) -> dict[str, str]:
    """The query parameters of ``request`` by name (first value; ``""``
    for a bare ``?update``, which twisted's ``request.args`` drops),
    UTF-8 (400 otherwise)."""
    _, _, query = request.uri.partition(b"?")
    out = {}
    for key, values in raw_query(query).items():
        name = hdr.text(key, "A query parameter name")
        out[name] = hdr.text(values[0], f"The parameter {name}") if values else ""
    return out


def raw_query(query: bytes) -> dict[bytes, list[bytes]]:
    """``query`` parsed, keys and values percent-decoded to bytes (any
    escape is kept byte for byte; callers decide on UTF-8)."""
    parsed = parse_qs(query.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    return {k.encode("latin-1"): [v.encode("latin-1") for v in vs]
            for k, vs in parsed.items()}


def media_type(value: str | None) -> str:
    """The media type of a ``Content-Type`` value, lower case, without
    its parameters (``""`` when none is given)."""
    return (value or "").split(";", 1)[0].strip().lower()


__all__ = ["OCTET_STREAM", "TRUE", "Call", "Reply", "Stream", "Target", "media_type",
           "parse_target", "query_args", "raw_postpath", "raw_query", "respond"]
