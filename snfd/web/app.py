"""Klein apps whose errors are rendered as OpenStack faults.

Every service builds its Klein app with ``make_app()`` so that raised
``snfd.errors.Fault``s, unknown paths and wrong methods inside the app are
answered with fault JSON by ``snfd.errors.render_fault``, like the rest of
the site.  An error raised once the answer has begun (a download whose
block store failed mid-stream) cannot be answered: it drops the
connection (``snfd.web.site.Request.processingFailed``).
"""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from twisted.python.failure import Failure
from werkzeug import exceptions as wz

from snfd import errors

_WERKZEUG = {
    404: lambda e: errors.NotFound("No such resource: the path is not part of this API."),
    405: lambda e: errors.MethodNotAllowed(
        "This method is not allowed on this resource.",
        headers={"Allow": ", ".join(getattr(e, "valid_methods", None) or ())}),
}


def _from_werkzeug(exc: wz.HTTPException) -> errors.Fault:
    make = _WERKZEUG.get(exc.code or 500)
    if make is not None:
        return make(exc)
    code = exc.code or 500
    fault = (errors.BadRequest if code < 500 else errors.InternalError)(exc.description or exc.name)
    fault.code = code
    return fault


def make_app() -> Klein:
    """A Klein app with the snfd error rendering installed."""
    app = Klein()

    @app.handle_errors(Exception)
    def _render(request: Any, failure: Failure) -> bytes:
        if getattr(request, "startedWriting", False):
            request.processingFailed(failure)
            return b""
        if isinstance(failure.value, wz.HTTPException):
            return errors.render_fault(request, _from_werkzeug(failure.value))
        return errors.render_fault(request, failure)

    return app


def json_body(request: Any, value: Any, code: int = 200) -> bytes:
    """Set the status and JSON content type of ``request``; return the body."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    return json.dumps(value).encode("utf-8")


MAX_JSON_BODY = 256 * 1024


def read_json(request: Any, max_bytes: int = MAX_JSON_BODY, required: bool = True) -> Any:
    """The request's JSON body, decoded.

    @raise errors.OverLimit: the body is larger than ``max_bytes`` (413).
    @raise errors.BadRequest: it is empty while ``required``, not UTF-8, or
        not JSON.  An empty body with ``required=False`` gives ``None``.
    """
    content = request.content
    content.seek(0, 2)
    size = content.tell()
    if size > max_bytes:
        raise errors.OverLimit(f"The request body is larger than {max_bytes} bytes.")
    content.seek(0)
    raw = content.read()
    if not raw.strip():
        if required:
            raise errors.BadRequest("The request needs a JSON body.")
        return None
    return decode_json(raw)


def decode_json(raw: bytes, what: str = "The request body") -> Any:
    """``raw`` decoded as UTF-8 JSON.

    @raise errors.BadRequest: it is not UTF-8, not JSON, or nested too
        deeply to decode (``what`` names it in the message).
    """
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise errors.BadRequest(f"{what} is JSON nested too deeply.") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise errors.BadRequest(f"{what} is not valid JSON: {e}") from None


def json_object(value: Any, what: str = "The request body") -> dict[str, Any]:
    """``value`` if it is a JSON object, else a 400 naming ``what``."""
    if not isinstance(value, dict):
        raise errors.BadRequest(f"{what} must be a JSON object.")
    return value
