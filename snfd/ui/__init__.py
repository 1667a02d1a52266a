"""The web UI: a client-side app over the public APIs, served at ``/ui/``.

Like Synnefo's, it is just another API client: every page is drawn in the
browser from the node's public APIs (Keystone, the account API, Swift,
Nova, Neutron, Glance, Cinder), called with the user's token in a header.
This package holds its files (``static/``, plain ES modules and CSS: no
build step, no Node.js, nothing fetched from elsewhere) and the one
resource that serves them, ``StaticFiles``; the identity service mounts it
under ``/ui`` beside its sign-up and login endpoints
(``snfd.identity.ui_api``), and answers a browser's navigation to any page
of the app with ``shell``.

What a response of the UI always carries (``secure_headers``):

- a Content-Security-Policy that allows scripts, styles, workers and
  connections from the node's own origin only: no inline script, no
  ``eval``, no framing;
- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``
  (a URL of the app never leaks to another site).

The token lives in the page's ``sessionStorage`` (gone with the tab), never
in a cookie; the APIs take it in ``X-Auth-Token``, so no other site can
make the browser act with it (no CSRF).  Text from the APIs is put into the
page as text nodes only (``static/js/dom.js``), never parsed as HTML.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from twisted.web import resource

STATIC = Path(__file__).parent / "static"

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:;"
       " connect-src 'self'; worker-src 'self'; font-src 'self'; manifest-src 'self';"
       " frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml",
          ".json": "application/json; charset=utf-8", ".png": "image/png",
          ".ico": "image/x-icon"}


def secure_headers(request: Any) -> None:
    """The headers every answer of the UI carries (module docstring)."""
    request.setHeader(b"content-security-policy", CSP.encode())
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")
    request.setHeader(b"x-frame-options", b"DENY")


def _file(request: Any, path: Path) -> bytes:
    secure_headers(request)
    kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] \
        or "application/octet-stream"
    request.setHeader(b"content-type", kind.encode())
    # Small files, changed only by an upgrade: revalidated on every load.
    request.setHeader(b"cache-control", b"no-cache")
    return path.read_bytes()


def shell(request: Any) -> bytes:
    """The app's page (``index.html``): the answer to a browser opening any
    page of the app; the app draws the page its address names."""
    body = _file(request, STATIC / "index.html")
    request.setHeader(b"cache-control", b"no-store")
    return body


def wants_page(request: Any) -> bool:
    """Whether ``request`` is a browser's navigation (it asks for HTML),
    not an API client's call."""
    accept = (request.getHeader(b"accept") or b"").lower()
    return b"text/html" in accept


class StaticFiles(resource.Resource):
    """The files under ``static/``: a ``GET``/``HEAD`` of a file's path
    answers it; anything else (a directory, a name starting with a dot, a
    path leaving the folder) is a 404."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        parts = [p.decode("utf-8", "replace") for p in request.postpath]
        target = STATIC.joinpath(*parts) if parts else STATIC
        if (not parts or any(not p or p.startswith(".") or "/" in p or "\\" in p
                             for p in parts)
                or not target.is_file()):
            secure_headers(request)
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Not found.\n"
        return _file(request, target)

    render_HEAD = render_GET


__all__ = ["CSP", "STATIC", "StaticFiles", "secure_headers", "shell", "wants_page"]
