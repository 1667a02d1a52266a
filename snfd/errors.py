"""API errors and the one place that renders them as OpenStack faults.

Handlers raise a ``Fault`` subclass; ``render_fault`` turns it into the
body ``{"<name>": {"code": <status>, "message": "...", "details": "..."}}``
that Synnefo and OpenStack clients parse.  Anything else that escapes a
handler is logged with its traceback and answered with a generic 500
(``computeFault``) that never leaks the traceback.
"""

from __future__ import annotations

import http
import json
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()


class Fault(Exception):
    """An error that the client is told about."""

    code = 500
    name = "computeFault"
    #: the reason phrase of the status line, when Twisted's own is not the
    #: one clients expect (``None``: Twisted's)
    phrase: str | None = None

    def __init__(self, message: str, details: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        inner: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            inner["details"] = self.details
        return {self.name: inner}


class BadRequest(Fault):
    code, name = 400, "badRequest"


class Unauthorized(Fault):
    code, name = 401, "unauthorized"


class Forbidden(Fault):
    code, name = 403, "forbidden"


class NotFound(Fault):
    code, name = 404, "itemNotFound"


class MethodNotAllowed(Fault):
    code, name = 405, "badMethod"


class NotAcceptable(Fault):
    code, name = 406, "notAcceptable"


class Conflict(Fault):
    code, name = 409, "conflict"


class BuildInProgress(Fault):
    code, name = 409, "buildInProgress"


class OverLimit(Fault):
    code, name = 413, "overLimit"


class LengthRequired(Fault):
    code, name = 411, "lengthRequired"


class PreconditionFailed(Fault):
    code, name = 412, "preconditionFailed"


class NotModified(Fault):
    """Not an error: a conditional GET whose answer the client has (304,
    no body)."""

    code, name = 304, "notModified"


class RangeNotSatisfiable(Fault):
    code, name = 416, "rangeNotSatisfiable"


class BadMediaType(Fault):
    code, name = 415, "badMediaType"


class Unprocessable(Fault):
    code, name = 422, "unprocessableEntity"


class InternalError(Fault):
    code, name = 500, "computeFault"


class NotImplementedFault(Fault):
    code, name = 501, "notImplemented"


class ServiceUnavailable(Fault):
    code, name = 503, "serviceUnavailable"


class InsufficientStorage(Fault):
    """The server has no room to store what the request carries: the 507
    Swift's object server answers a full disk with (RFC 4918's reason
    phrase, not Twisted's "Insufficient Storage Space")."""

    code, name = 507, "insufficientStorage"
    phrase = "Insufficient Storage"


def as_fault(error: BaseException | Failure) -> Fault:
    """The fault to answer for ``error``; unexpected errors are logged with
    their traceback and become a generic 500."""
    failure = error if isinstance(error, Failure) else Failure(error)
    if isinstance(failure.value, Fault):
        return failure.value
    log.failure("Unhandled error while answering a request", failure)
    return InternalError("The server hit an unexpected error; it has been logged.")


_BODY_HEADERS = (b"content-length", b"content-range", b"content-md5")
"""Headers a handler may have set for the body a fault replaces (a
download that failed before its first byte)."""


def render_fault(request: Any, error: BaseException | Failure) -> bytes:
    """Set the status and headers of ``request`` for ``error`` and return the
    JSON body.  The only place that turns errors into responses.  Headers
    describing another body (``_BODY_HEADERS``) are removed: callers set
    the fault's ``Content-Length`` or let Twisted frame it."""
    fault = as_fault(error)
    if fault.phrase is not None:
        request.setResponseCode(fault.code, fault.phrase.encode("ascii"))
    else:
        request.setResponseCode(fault.code)
    for header in _BODY_HEADERS:
        request.responseHeaders.removeHeader(header)
    style = getattr(request, "fault_style", None)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8" if style == "swift"
                      else b"application/json; charset=utf-8")
    for name, value in fault.headers.items():
        request.setHeader(name.encode("ascii"), value.encode("latin-1"))
    if fault.code == 304:
        return b""
    if style == "keystone":
        return json.dumps(keystone_body(fault)).encode("utf-8")
    if style == "swift":
        return swift_body(fault)
    if style == "neutron":
        return json.dumps(neutron_body(fault)).encode("utf-8")
    return json.dumps(fault.body()).encode("utf-8")


def swift_body(fault: Fault) -> bytes:
    """Swift's error shape: the message as plain text, which the swift
    command line and tempest read; the object store API (and its public
    links) set ``request.fault_style = "swift"`` to get it."""
    return fault.message.encode("utf-8")


def keystone_body(fault: Fault) -> dict[str, Any]:
    """Keystone's error shape, ``{"error": {"code", "title", "message"}}``,
    which keystoneauth1 parses; the identity API sets
    ``request.fault_style = "keystone"`` to get it."""
    title = http.HTTPStatus(fault.code).phrase if fault.code in _STATUSES else "Error"
    return {"error": {"code": fault.code, "title": title, "message": fault.message}}


_STATUSES = {s.value for s in http.HTTPStatus}

_NEUTRON_TYPES = {400: "BadRequest", 401: "NotAuthorized", 403: "Forbidden", 404: "NotFound",
                  405: "MethodNotAllowed", 409: "Conflict", 413: "OverQuota",
                  500: "InternalServerError", 501: "NotImplemented",
                  503: "ServiceUnavailable"}


def neutron_body(fault: Fault) -> dict[str, Any]:
    """Neutron's error shape, ``{"NeutronError": {"type", "message",
    "detail"}}``, which openstacksdk and tempest parse; the network API
    sets ``request.fault_style = "neutron"`` to get it."""
    return {"NeutronError": {"type": _NEUTRON_TYPES.get(fault.code, "NeutronException"),
                             "message": fault.message, "detail": fault.details or ""}}
