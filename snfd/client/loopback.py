"""A native application's login through the browser (RFC 8252, 7.3, with
PKCE, RFC 7636): a one-shot HTTP listener on the loopback that the
identity service sends the browser back to with a one-time code.

``LoopbackLogin()`` listens on ``127.0.0.1:<a free port>`` (or the port
given: one an SSH tunnel forwards) and makes a random ``state`` and a
random PKCE ``verifier``; ``url(base, path)`` is the login URL to open,
with ``next`` (``redirect_uri``: ``http://127.0.0.1:<port>/callback``),
the state and the verifier's S256 ``code_challenge`` in its query (the
verifier itself never leaves this process but for the exchange).
``wait(complete, timeout)`` answers requests until ``GET /callback``
comes with that state (compared in constant time) and a code: it calls
``complete(code)`` (the exchange of the code and the verifier for the
token, and the login proper, while the browser waits), answers the
browser with a short text (done, or why not) and returns what
``complete`` returned.  Any other request (a wrong state, another path)
gets an error page and the listener keeps waiting, so a local process
guessing the port cannot end the login; one that sees the code (the
browser's history keeps it) cannot use it without the verifier, and
only within a minute, once.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import secrets
import socketserver
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

from snfd.client.pithos import ClientError

T = TypeVar("T")

CALLBACK_PATH = "/callback"


def s256_challenge(verifier: str) -> str:
    """The PKCE ``S256`` challenge of ``verifier`` (RFC 7636, 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class _Handler(http.server.BaseHTTPRequestHandler):
    # An idle connection (a browser's speculative one) is dropped after
    # this many seconds instead of blocking the one-shot server.
    timeout = 5
    server: _Server

    def do_GET(self) -> None:
        self.server.login.handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def answer(self, status: int, text: str) -> None:
        body = (text + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


class _Server(http.server.HTTPServer):
    login: LoopbackLogin[Any]

    def server_bind(self) -> None:
        # HTTPServer's would look the host's name up (getfqdn): not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class LoopbackLogin(Generic[T]):
    """The listener and the state of one login (module docstring)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = secrets.token_urlsafe(32)
        # 64 URL-safe characters (RFC 7636: 43 to 128 unreserved ones).
        self.verifier = secrets.token_urlsafe(48)
        self._server = _Server((host, port), _Handler)
        self._server.login = self
        self._complete: Callable[[str], T] | None = None
        self._done = False
        self._result: T | None = None
        self._error: BaseException | None = None

    @property
    def redirect_uri(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{CALLBACK_PATH}"

    def url(self, base: str, path: str) -> str:
        """The login URL: ``base`` + ``path`` with ``next``, ``state`` and
        the verifier's challenge."""
        separator = "&" if "?" in path else "?"
        return (base.rstrip("/") + path + separator
                + urlencode({"next": self.redirect_uri, "state": self.state,
                             "code_challenge": s256_challenge(self.verifier),
                             "code_challenge_method": "S256"}))

    def close(self) -> None:
        self._server.server_close()

    def wait(self, complete: Callable[[str], T], timeout: float) -> T:
        """Serve until the callback came (module docstring); its result.

        @raise ClientError: nothing came within ``timeout`` seconds; or
            what ``complete`` raised.
        """
        self._complete = complete
        deadline = time.monotonic() + timeout
        try:
            while not self._done:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ClientError(0, f"no login came back within {int(timeout)} s")
                self._server.timeout = left
                self._server.handle_request()
        finally:
            self.close()
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def handle(self, request: _Handler) -> None:
        parts = urlsplit(request.path)
        if parts.path != CALLBACK_PATH or self._done:
            request.answer(404, "Not found.")
            return
        query = parse_qs(parts.query)
        state = (query.get("state") or [""])[0]
        code = (query.get("code") or [""])[0]
        if not secrets.compare_digest(state.encode(), self.state.encode()):
            request.answer(400, "This is not the login snf is waiting for (its state"
                                " does not match).")
            return
        if not code:
            request.answer(400, "The login came back without a code.")
            return
        self._done = True
        assert self._complete is not None
        try:
            self._result = self._complete(code)
        except Exception as e:
            self._error = e
            request.answer(401, f"snf could not log in: {e}\nYou may close this page.")
            return
        request.answer(200, "snf is logged in. You may close this page.")


__all__ = ["CALLBACK_PATH", "LoopbackLogin", "s256_challenge"]
