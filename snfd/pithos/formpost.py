"""Swift's FormPost: a browser uploads files with an HTML form
(``multipart/form-data``) straight to a container, without a token.

The form is ``POST``ed to ``/v1/<account>/<container>[/<prefix>]`` and
carries the fields ``redirect`` (may be empty), ``max_file_size``,
``max_file_count``, ``expires`` (epoch seconds) and ``signature``: the
HMAC of ``PATH\\nREDIRECT\\nMAX_FILE_SIZE\\nMAX_FILE_COUNT\\nEXPIRES``
under one of the temp URL keys (``snfd.pithos.tempurl.signing_keys``),
hex (SHA-1, SHA-256 or SHA-512) or ``<digest>:<base64>``; optionally
``x_delete_at``/``x_delete_after`` and ``content-type``.  Then come the
file fields: each becomes the object ``<prefix><filename>``, written as
the account owner by an ordinary ``PUT`` through the rest of the filters
and the handlers.  As in Swift, fields after a file count only for the
files after them.

Answers as Swift gives them: with a ``redirect``, ``303`` to it with
``status`` and ``message`` added to its query; without, the status of
the last upload and ``<status line>[\\r\\nFormPost: <Message>]`` as text.
An expired form or a bad signature is 401 (``FormPost: Form Expired``,
``FormPost: Invalid Signature``); a malformed form, a file larger than
``max_file_size`` or a bad number is 400 (``FormPost: ...``).

The body was buffered (a temporary file, at most ``swift.MAX_FILE_SIZE``
bytes: ``Uploads.body_limit``); it is scanned piece by piece in threads
and each file is handed to its ``PUT`` as a view of its bytes in that
buffer, so no more than a piece, a part's headers and a field's first
4 KiB are held in memory.

Pithos has its own HTML form upload (an object ``POST`` whose
``X-Object-Data`` file becomes the object, ``PithosAPI._form_upload``).
A form is a FormPost when it goes to a container, comes without a token,
or has a ``signature`` field before its first file; any other form is
Pithos's.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import email.utils
import hmac
import html
import http
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

from twisted.internet.threads import deferToThreadPool
from twisted.web.http_headers import Headers

from snfd import errors
from snfd.pithos.middleware import Handler
from snfd.pithos.requests import OCTET_STREAM, Call, Reply, Target, media_type
from snfd.pithos.tempurl import DIGESTS, parse_signature, signed_paths, signing_keys
from snfd.pithos.uploads import FORM_DATA, FORM_READ, MAX_FORM_PART_HEAD, form_boundary, streamed
from snfd.web.auth import Principal

MAX_VALUE_LENGTH = 4096
"""The longest field value kept (Swift's; the rest is ignored)."""
MAX_FIELDS = 256
"""Distinct field names kept; later new names are ignored."""
TEXT = "text/plain"
HTML = "text/html; charset=UTF-8"


class FormInvalid(Exception):
    """A malformed form: 400 ``FormPost: <message>``."""


class FormUnauthorized(Exception):
    """A form that may not upload: 401 ``FormPost: <Message>``."""


# -- reading the form ---------------------------------------------------------------


class Part:
    """One part of a form: its headers, and where its bytes lie in the
    body (``end`` is ``None`` until the scanner has found it)."""

    def __init__(self, head: email.message.Message, start: int):
        self.start = start
        self.end: int | None = None
        self.name: str | None = _param(head, "name")
        disposition = head.get("Content-Disposition", "")
        self.filename = _param(head, "filename") if str(disposition).split(";", 1)[0].strip(
            ).lower() == "form-data" else None
        self.content_type: str | None = head.get("Content-Type")

    @property
    def is_file(self) -> bool:
        """A file field (a ``form-data`` part with a file name)."""
        return bool(self.filename)


def _param(head: email.message.Message, name: str) -> str | None:
    value = head.get_param(name, header="content-disposition")
    if value is None or isinstance(value, str):
        return value
    return email.utils.collapse_rfc2231_value(value)


class Scanner:
    """Finds the parts of a ``multipart/form-data`` body fed piece by piece.

    ``feed`` returns the events found so far: ``("head", part)`` when a
    part's headers are read (``part.start`` is where its bytes begin) and
    ``("end", part)`` when its end is found; ``finish`` at the end of the
    body closes an open part.  Holds at most a part's headers and a
    delimiter's length of the body.
    """

    def __init__(self, boundary: bytes):
        self.delimiter = b"\r\n--" + boundary
        # The body starts with its first delimiter, without the CRLF.
        self._buf = b"\r\n"
        self._base = -2  # offset in the body of ``_buf[0]``
        self._state = "start"
        self._part: Part | None = None
        self.done = False

    def _drop(self, n: int) -> None:
        self._buf = self._buf[n:]
        self._base += n

    def feed(self, data: bytes) -> list[tuple[str, Part]]:
        self._buf += data
        out: list[tuple[str, Part]] = []
        while not self.done:
            if self._state == "start":
                if len(self._buf) < len(self.delimiter):
                    return out
                if not self._buf.startswith(self.delimiter):
                    raise FormInvalid("invalid starting boundary")
                self._drop(len(self.delimiter))
                self._state = "delimited"
            elif self._state == "data":
                i = self._buf.find(self.delimiter)
                if i < 0:
                    keep = len(self.delimiter) - 1
                    if len(self._buf) > keep:
                        self._drop(len(self._buf) - keep)
                    return out
                assert self._part is not None
                self._part.end = self._base + i
                out.append(("end", self._part))
                self._part = None
                self._drop(i + len(self.delimiter))
                self._state = "delimited"
            elif self._state == "delimited":
                if len(self._buf) < 2:
                    return out
                if self._buf.startswith(b"--"):
                    self.done = True  # the closing delimiter
                    return out
                j = self._buf.find(b"\r\n")
                if j < 0:
                    if len(self._buf) > MAX_FORM_PART_HEAD:
                        raise FormInvalid("invalid boundary line")
                    return out
                self._drop(j + 2)
                self._state = "head"
            else:  # head
                if self._buf.startswith(b"\r\n"):
                    end = 0  # a part without headers
                else:
                    j = self._buf.find(b"\r\n\r\n")
                    if j < 0:
                        if len(self._buf) > MAX_FORM_PART_HEAD:
                            raise FormInvalid("part headers too long")
                        return out
                    end = j + 2
                text = self._buf[:end].decode("utf-8", "replace")
                head = email.parser.HeaderParser(policy=email.policy.HTTP).parsestr(
                    text + "\r\n")
                self._drop(end + 2)
                self._part = Part(head, self._base)
                out.append(("head", self._part))
                self._state = "data"
        return out

    def finish(self) -> list[tuple[str, Part]]:
        """The events at the end of the body: an open part ends there."""
        if self._state == "start":
            raise FormInvalid("invalid starting boundary")
        if self._state == "data" and self._part is not None:
            self._part.end = self._base + len(self._buf)
            self._state, part, self._part = "delimited", self._part, None
            self.done = True
            return [("end", part)]
        self.done = True
        return []


class BodySlice:
    """Bytes ``[start, end)`` of a seekable file, as a read-only file (the
    body of one file's ``PUT``).  Not for use by two threads at once."""

    def __init__(self, f: Any, start: int, end: int):
        self._f, self._start, self._size, self._pos = f, start, end - start, 0

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int | None = -1) -> bytes:
        left = self._size - self._pos
        n = left if n is None or n < 0 else min(n, left)
        if n <= 0:
            return b""
        self._f.seek(self._start + self._pos)
        data: bytes = self._f.read(n)
        self._pos += len(data)
        return data


class Subrequest:
    """The ``PUT`` one file of a form becomes: the form's request seen
    with its own method, headers, body and acting principal."""

    def __init__(self, original: Any, headers: Headers, content: BodySlice,
                 principal: Principal):
        self._original = original
        self.method = b"PUT"
        self.requestHeaders = headers
        self.content = content
        self.principal = principal
        self.args: dict[bytes, list[bytes]] = {}

    def getHeader(self, name: bytes) -> bytes | None:
        values = self.requestHeaders.getRawHeaders(name)
        return values[-1] if values else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


# -- the filter -----------------------------------------------------------------------


class FormPost:
    """The ``Filter`` serving form uploads (see the module docstring).

    @param backend: the ``Backend`` (the keys).
    @param reactor: the reactor (its thread pool reads the body).
    @param clock: what tells the time (``seconds()``).
    """

    def __init__(self, backend: Any, reactor: Any, clock: Any):
        self.backend = backend
        self.reactor = reactor
        self.clock = clock

    @classmethod
    def from_api(cls, api: Any) -> FormPost:
        """The filter of a ``PithosAPI``."""
        return cls(api.backend, api.reactor, api.backend.clock)

    def info(self) -> dict[str, Any]:
        return {"formpost": {}}

    async def __call__(self, call: Call, app: Handler) -> Reply:
        t = call.target
        form_type = call.header("Content-Type")
        if call.method != "POST" or t.level not in ("container", "object") or \
                media_type(form_type) != FORM_DATA or streamed(call.request):
            return await app(call)
        try:
            boundary = form_boundary(form_type)
        except errors.Fault:
            return await app(call)  # Swift passes a form without a boundary on
        if not await self._is_formpost(call, boundary):
            return await app(call)
        try:
            return await self._translate(call, app, boundary)
        except FormInvalid as e:
            raise errors.BadRequest(f"FormPost: {e}") from None
        except FormUnauthorized as e:
            raise errors.Unauthorized(f"FormPost: {str(e).title()}") from None

    async def _is_formpost(self, call: Call, boundary: bytes) -> bool:
        if call.target.level == "container" or \
                getattr(call.request, "principal", None) is None:
            return True
        try:
            async with aclosing(self._parts(call.request.content, boundary)) as parts:
                async for event, part in parts:
                    if event == "head" and part.is_file:
                        return False
                    if event == "head" and (part.name or "").lower() == "signature":
                        return True
        except FormInvalid:
            return False
        return False

    async def _read(self, f: Any, offset: int, n: int) -> bytes:
        def read() -> bytes:
            f.seek(offset)
            data: bytes = f.read(n)
            return data
        return await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), read)

    async def _parts(self, content: Any,
                     boundary: bytes) -> AsyncGenerator[tuple[str, Part], None]:
        """The events of ``Scanner`` over the buffered body ``content``."""
        scanner = Scanner(boundary)
        offset = 0
        while not scanner.done:
            chunk = await self._read(content, offset, FORM_READ)
            offset += len(chunk)
            events = scanner.feed(chunk) if chunk else scanner.finish()
            for event in events:
                yield event

    async def _translate(self, call: Call, app: Handler, boundary: bytes) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None
        keys = await signing_keys(self.backend, t.account, t.container)
        attributes: dict[str, str] = {}
        async with aclosing(self._parts(call.request.content, boundary)) as parts:
            status, message, access_control = await self._files(call, app, parts,
                                                                attributes, keys)
        if not status:
            status, message = _status(400), "no files to process"
        redirect = attributes.get("redirect")
        if not redirect:
            body = status + (f"\r\nFormPost: {message.title()}" if message else "")
            return Reply(int(status.split(" ", 1)[0]), access_control,
                         body=body.encode("utf-8"), content_type=TEXT)
        redirect += "&" if "?" in redirect else "?"
        redirect += f"status={quote(status.split(' ', 1)[0])}&message={quote(message)}"
        # No header injection through the form's redirect.
        redirect = "".join(quote(ch) if ord(ch) < 32 or ord(ch) == 127 else ch
                           for ch in redirect)
        body = (f'<html><body><p><a href="{html.escape(redirect, quote=True)}">'
                "Click to continue...</a></p></body></html>")
        return Reply(303, [*access_control, ("Location", redirect)],
                     body=body.encode("utf-8"), content_type=HTML)

    async def _files(self, call: Call, app: Handler,
                     parts: AsyncIterator[tuple[str, Part]], attributes: dict[str, str],
                     keys: list[str]) -> tuple[str, str, list[tuple[str, str]]]:
        """Read the fields into ``attributes`` and upload the files as
        they come: ``(status line, message, Access-Control headers)`` of
        the last upload (an empty status when there was none)."""
        content = call.request.content
        status, message = "", ""
        files = 0
        access_control: list[tuple[str, str]] = []
        async for event, part in parts:
            if not part.is_file:
                if event == "end" and part.name is not None:
                    assert part.end is not None
                    value = await self._read(content, part.start,
                                             min(part.end - part.start, MAX_VALUE_LENGTH))
                    name = part.name.lower()
                    if name in attributes or len(attributes) < MAX_FIELDS:
                        attributes[name] = value.decode("utf-8", "replace").rstrip("\r\n-")
                continue
            if event == "head":
                files += 1
                try:
                    most = int(attributes.get("max_file_count") or 0)
                except ValueError:
                    raise FormInvalid("max_file_count not an integer") from None
                if files > most:
                    return _status(400), "max file count exceeded", access_control
                if "content-type" not in attributes and part.content_type is not None:
                    attributes["content-type"] = part.content_type or OCTET_STREAM
                self._authorize(call, attributes, keys)
                continue
            code, headers = await self._upload(call, app, attributes, part)
            status = _status(code)
            access_control = [(k, v) for k, v in headers
                              if k.lower().startswith("access-control")]
            if not 200 <= code < 300:
                break
        return status, message, access_control

    def _authorize(self, call: Call, attributes: dict[str, str], keys: list[str]) -> None:
        """Refuse (``FormUnauthorized``, ``FormInvalid``) a file of a form
        whose fields so far are ``attributes``, in Swift's order."""
        if not keys:
            raise FormUnauthorized("invalid signature")
        for name, what in (("max_file_size", "max_file_size not an integer"),
                           ("x_delete_at", "x_delete_at not an integer: "
                                           "Unix timestamp required."),
                           ("x_delete_after", "x_delete_after not an integer: "
                                              "Number of seconds required.")):
            if name in attributes or name == "max_file_size":
                try:
                    int(attributes.get(name) or 0)
                except ValueError:
                    raise FormInvalid(what) from None
        try:
            expires = int(attributes.get("expires") or 0)
        except ValueError:
            raise FormInvalid("expired not an integer") from None
        if expires < self.clock.seconds():
            raise FormUnauthorized("form expired")
        parsed = parse_signature(attributes.get("signature") or "")
        if parsed is None or parsed[0] not in DIGESTS:
            raise FormUnauthorized("invalid signature")
        digest, given = parsed
        fields = "\n".join(attributes.get(k) or d for k, d in (
            ("redirect", ""), ("max_file_size", "0"), ("max_file_count", "0"),
            ("expires", "0")))
        for path in signed_paths(call.request):
            message = f"{path}\n{fields}".encode()
            for key in keys:
                mac = hmac.new(key.encode("utf-8"), message, digest).hexdigest()
                if hmac.compare_digest(mac.encode("ascii"), given.encode("ascii", "replace")):
                    return
        raise FormUnauthorized("invalid signature")

    async def _upload(self, call: Call, app: Handler, attributes: dict[str, str],
                      part: Part) -> tuple[int, list[tuple[str, str]]]:
        """``PUT`` one file as the account owner: its status and headers."""
        t = call.target
        assert t.account is not None and t.container is not None and part.end is not None
        size = part.end - part.start
        if size > int(attributes.get("max_file_size") or 0):
            raise FormInvalid("max_file_size exceeded")
        headers = Headers()
        headers.addRawHeader(b"Content-Length", str(size).encode("ascii"))
        if "content-type" in attributes:
            headers.addRawHeader(b"Content-Type",
                                 (attributes["content-type"] or OCTET_STREAM).encode("utf-8"))
        for field, header in (("x_delete_at", b"X-Delete-At"),
                              ("x_delete_after", b"X-Delete-After")):
            if field in attributes:
                headers.addRawHeader(header, str(int(attributes[field] or 0)).encode("ascii"))
        name = (t.name or "") + (part.filename or "filename")
        sub = Subrequest(call.request, headers, BodySlice(call.request.content, part.start,
                                                          part.end),
                         Principal(user=t.account))
        try:
            reply = await app(Call(sub, "PUT", Target(t.account, t.container, name), {}))
        except errors.Fault as e:
            return e.code, list(e.headers.items())
        return reply.code, reply.headers


def _status(code: int) -> str:
    """A status line without the protocol (``201 Created``)."""
    try:
        return f"{code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"


__all__ = ["BodySlice", "FormPost", "Scanner"]
