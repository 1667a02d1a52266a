"""A whole object store for tests, in process and over real HTTP.

``object_store_stack(testcase)`` builds, for one test, a node with the identity
and storage services through the daemon's own factories
(``snfd.testing.nodecase.build_node``): a fresh PostgreSQL database with
their schemas, the services started (``pithos.diskspace`` registered),
blocks in a temporary state directory, and an HTTP server on 127.0.0.1
serving the node's root as a node would (``/object-store`` behind
``TokenAuth``, ``/public``, ``/info``, ``/auth``).  Everything is torn
down by the test's cleanups.

Usage::

    stack = await object_store_stack(self)
    alice, token = await stack.user("alice@example.org")
    url = stack.account_url(alice)        # .../object-store/v1/<uuid>
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import attrs
from twisted.internet import defer, threads
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from snfd.db.migrations import Schema
from snfd.identity.accounts import Accounts
from snfd.identity.quotaholder import LocalQuotaHolder
from snfd.pithos.api import PithosAPI
from snfd.pithos.backend import Backend
from snfd.pithos.blocks import FileBlockStore
from snfd.pithos.service import DISKSPACE
from snfd.quota.serials import Charger
from snfd.testing.stubhttp import serve
from snfd.web.site import Root

PITHOS_SCHEMA = Schema("pithos", "snfd.pithos.schema")
DEFAULT_DISKSPACE = 10 * 1024 ** 3


@attrs.define
class PithosStack:
    """The parts of a served object store (see the module docstring)."""

    url: str
    dsn: str
    db: Any
    blocks: FileBlockStore
    backend: Backend
    api: PithosAPI
    accounts: Accounts
    quota: LocalQuotaHolder
    charger: Charger
    root: Root

    @property
    def storage(self) -> str:
        """``<url>/object-store/v1``."""
        return f"{self.url}/object-store/v1"

    def account_url(self, account: str) -> str:
        """The storage URL of an account (Swift's ``X-Storage-Url``)."""
        return f"{self.storage}/{account}"

    async def user(self, email: str, first_name: str = "Test", last_name: str = "User",
                   diskspace: int | None = None) -> tuple[str, str]:
        """Create an active user: ``(uuid, token)``.  ``diskspace`` sets
        the user's ``pithos.diskspace`` limit in their base project."""
        user, token = await self.accounts.create_user(email, first_name, last_name,
                                                      activate=True)
        assert token is not None
        if diskspace is not None:
            await self.set_diskspace(user.uuid, diskspace)
        return user.uuid, token

    async def set_diskspace(self, uuid: str, limit: int) -> None:
        """Change a user's ``pithos.diskspace`` limit in their base
        project (whose uuid is the user's)."""
        await self.quota.set_limit(f"user:{uuid}", f"project:{uuid}", DISKSPACE, limit)

    async def usage(self, uuid: str) -> int:
        """The user's ``pithos.diskspace`` usage in their base project,
        once the commissions settled in the background have landed."""
        await self.charger.drain()
        holdings = await self.quota.quotas(holders=[f"user:{uuid}"], resources=[DISKSPACE])
        return sum(h.usage for h in holdings)


async def object_store_stack(testcase: Any, diskspace: int = DEFAULT_DISKSPACE,
                       blocks_in_flight: int = 2, clock: Any = None,
                       pithos_config: Mapping[str, str] | None = None) -> PithosStack:
    """Build and serve an object store for ``testcase`` (see the module
    docstring).  ``diskspace``: every user's default ``pithos.diskspace``
    limit; ``clock``: the node's clock (a ``task.Clock`` at the wall time
    to move time in a test; default the reactor); ``pithos_config``: more
    ``[pithos]`` keys."""
    from snfd.testing.node import free_port
    from snfd.testing.nodecase import build_node

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    built = await build_node(testcase, ("identity", "pithos"), {
        ("pithos", "diskspace_default"): str(diskspace),
        ("pithos", "upload_blocks_in_flight"): str(blocks_in_flight),
        **{("pithos", k): v for k, v in (pithos_config or {}).items()},
    }, address=url, clock=clock)
    serve(testcase, built.node.root, port)
    identity, pithos = built.services["identity"], built.services["pithos"]
    return PithosStack(url=url, dsn=built.node.dsn, db=built.node.db, blocks=pithos.blocks,
                       backend=pithos.backend, api=pithos.api, accounts=identity.accounts,
                       quota=identity.quota, charger=pithos.charger, root=built.node.root)


_URL_SAFE = "".join(chr(c) for c in range(33, 127))


@attrs.frozen
class HTTPReply:
    """A response: status, headers (``Headers``) and the whole body."""

    code: int
    headers: Headers
    body: bytes
    # The Content-Length the server sent (twisted's client takes it out
    # of ``headers``), or None for a chunked or close-delimited body.
    length: int | None = None

    def header(self, name: str) -> str | None:
        """The first value of a response header (latin-1), or ``None``."""
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class _Chunked:
    """A body of unknown length, so the agent sends it chunked."""

    length = UNKNOWN_LENGTH

    def __init__(self, chunks: list[bytes]):
        self._chunks = chunks

    def startProducing(self, consumer: Any) -> Any:
        for chunk in self._chunks:
            consumer.write(chunk)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


async def http(method: str, url: str | bytes, token: str | None = None,
               headers: Mapping[str, str | bytes] | None = None,
               body: bytes | None = None, chunks: list[bytes] | None = None) -> HTTPReply:
    """One request with ``twisted.web.client.Agent`` on its own connection.

    ``url`` is sent as given (bytes as they are; in text only non-ASCII
    characters and spaces are percent-encoded, so ``%2F`` and ``..``
    reach the server);
    ``token`` becomes ``X-Auth-Token``; ``chunks`` sends the body with
    ``Transfer-Encoding: chunked``.
    """
    from twisted.internet import reactor

    pool = HTTPConnectionPool(reactor, persistent=False)
    agent = Agent(reactor, pool=pool)
    h = Headers()
    for name, value in (headers or {}).items():
        h.addRawHeader(name, value if isinstance(value, bytes) else value.encode("utf-8"))
    if token is not None:
        h.addRawHeader("X-Auth-Token", token)
    producer: Any = None
    if chunks is not None:
        producer = _Chunked(chunks)
    elif body is not None:
        producer = FileBodyProducer(io.BytesIO(body))
    # Non-ASCII and spaces percent-encoded; everything else (even "%") kept.
    raw = url if isinstance(url, bytes) else quote(url, safe=_URL_SAFE).encode("ascii")
    response = await agent.request(method.encode("ascii"), raw, h, producer)
    content = await readBody(response)
    # HEAD replies keep the header (and have response.length 0).
    given = response.headers.getRawHeaders("Content-Length")
    length = int(given[0]) if given else (
        response.length if isinstance(response.length, int) else None)
    return HTTPReply(response.code, response.headers, content, length)


async def raw_http(base: str, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (a request line and headers, without the blank line;
    ``Connection: close`` is added) and ``body`` over a plain socket to
    the server at ``base`` (``http://host:port``) -- for bytes no HTTP
    client would send.  Returns the status and the whole raw reply."""
    host, port = base.removeprefix("http://").rsplit(":", 1)

    def exchange() -> bytes:
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(head.rstrip(b"\r\n") + b"\r\nConnection: close\r\n\r\n" + body)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    reply: bytes = await threads.deferToThread(exchange)
    return int(reply.split(b" ", 2)[1]), reply


__all__ = ["PITHOS_SCHEMA", "HTTPReply", "PithosStack", "http", "object_store_stack", "raw_http"]
