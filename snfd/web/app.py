"""Klein apps whose errors are rendered as OpenStack faults.

Every service builds its Klein app with ``make_app()`` so that raised
``snfd.errors.Fault``s, unknown paths and wrong methods inside the app are
answered with fault JSON by ``snfd.errors.render_fault``, like the rest of
the site.
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
        if isinstance(failure.value, wz.HTTPException):
            return errors.render_fault(request, _from_werkzeug(failure.value))
        return errors.render_fault(request, failure)

    return app


def json_body(request: Any, value: Any, code: int = 200) -> bytes:
    """Set the status and JSON content type of ``request``; return the body."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    return json.dumps(value).encode("utf-8")
