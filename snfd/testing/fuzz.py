"""Sending random requests to a node served on a real port: the raw HTTP
client, the bridge from a hypothesis run in a worker thread to the
reactor, and the strategies for the inputs the APIs read.

Hypothesis drives a synchronous test function, and trial runs the
reactor on the main thread, so a property runs in a thread of its own
(``in_thread``): each example calls ``Bridge.send``, which hands the
request to the reactor (``blockingCallFromThread``) and blocks the worker
thread, never the reactor, until the answer or the hang bound.  The node's
handlers keep using the real reactor and the database pool meanwhile, and
hypothesis keeps its shrinking.

The client (``send``) writes the request bytes as given, so header names
and values, methods and request targets reach the server's parser
unchanged (a library client would refuse or clean them); it sends
``Connection: close`` and reads the answer to the end of the connection.
"""

from __future__ import annotations

import json
import string
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import attrs
from hypothesis import strategies as st
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.threads import blockingCallFromThread
from twisted.python.failure import Failure

T = TypeVar("T")

HANG_AFTER = 30.0
"""Seconds without a complete answer after which a request counts as a
hang (a hang detector, not a speed requirement: answers take
milliseconds)."""

MAX_BODY = 64 * 1024
"""The largest request body the strategies make."""

# Headers the client owns: a random one of these would make a request
# whose end the server cannot find (Transfer-Encoding), another protocol
# (Upgrade) or an interim answer (Expect).
CLIENT_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "host",
                            "expect", "upgrade", "http2-settings", "te", "trailer"})

TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"


class Hang(Exception):
    """No complete answer within the hang bound."""


@attrs.frozen
class Req:
    """One request as the client writes it.  ``headers`` are sent in order,
    after ``Host`` and before ``Connection`` and ``Content-Length``."""

    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""

    def wire(self, host: bytes) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1".encode("latin-1"),
                 b"Host: " + host]
        lines += [name + b": " + value for name, value in self.headers]
        lines.append(b"Connection: close")
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: " + str(len(self.body)).encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body

    def brief(self) -> str:
        """The request for a failure message: every header, the body's
        start and length."""
        head = "\n".join(f"    {n!r}: {v!r}" for n, v in self.headers)
        return (f"{self.method} {self.target}\n{head}\n    body ({len(self.body)} bytes): "
                f"{self.body[:300]!r}")


@attrs.frozen
class Answer:
    """One answer: ``status`` 0 when nothing parsable came back;
    ``complete`` is false when the body ended before its length or its
    last chunk (the server gave up half way)."""

    status: int
    head: bytes
    body: bytes
    complete: bool = True

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


class _Reader(protocol.Protocol):
    def __init__(self, request: bytes, done: defer.Deferred[bytes]):
        self.request = request
        self.done = done
        self.data: list[bytes] = []

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(b"".join(self.data))


def dechunked(body: bytes) -> tuple[bytes, bool]:
    """A chunked body decoded, and whether its last chunk arrived."""
    out: list[bytes] = []
    while True:
        line, sep, rest = body.partition(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0], 16)
        except ValueError:
            return b"".join(out), False
        if not sep or len(rest) < size + 2:
            return b"".join(out) + rest[:size], False
        if size == 0:
            return b"".join(out), True
        out.append(rest[:size])
        body = rest[size + 2:]


def parse_answer(raw: bytes, method: str = "GET") -> Answer:
    """The status, head and body of one HTTP/1.1 answer to ``method``
    (interim ``1xx`` answers skipped)."""
    while True:
        head, _, body = raw.partition(b"\r\n\r\n")
        parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
        try:
            status = int(parts[1]) if parts[0].startswith(b"HTTP/") else 0
        except (IndexError, ValueError):
            status = 0
        if 100 <= status < 200 and status != 101 and body:
            raw = body
            continue
        answer = Answer(status, head, body)
        if method == "HEAD" or status in (204, 304) or not status:
            return answer
        if (answer.header(b"transfer-encoding") or b"").lower() == b"chunked":
            body, complete = dechunked(body)
            return Answer(status, head, body, complete)
        length = answer.header(b"content-length")
        if length is not None and length.isdigit():
            return Answer(status, head, body, len(body) >= int(length))
        return answer


async def send(reactor: Any, port: int, req: Req, timeout: float = HANG_AFTER,
               host: bytes = b"node.test") -> Answer:
    """Write ``req`` to ``127.0.0.1:port`` and read the answer until the
    server closes the connection; ``Hang`` after ``timeout`` seconds."""
    done: defer.Deferred[bytes] = defer.Deferred()
    reader = _Reader(req.wire(host), done)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=int(timeout))
    proto: Any = await endpoint.connect(protocol.Factory.forProtocol(lambda: reader))
    def give_up() -> None:
        if not done.called:
            done.errback(Hang())

    timer = reactor.callLater(timeout, give_up)
    try:
        raw = await done
    finally:
        if timer.active():
            timer.cancel()
        proto.transport.abortConnection()
    return parse_answer(raw, req.method)


class Bridge:
    """``send`` for code running in a worker thread (see the module
    docstring)."""

    def __init__(self, reactor: Any, port: int, timeout: float = HANG_AFTER):
        self.reactor = reactor
        self.port = port
        self.timeout = timeout

    def send(self, req: Req) -> Answer:
        answer: Answer = blockingCallFromThread(
            self.reactor, lambda: defer.ensureDeferred(  # type: ignore[arg-type]
                send(self.reactor, self.port, req, self.timeout)))
        return answer


def in_thread(reactor: Any, fn: Callable[[], T]) -> defer.Deferred[T]:
    """Run ``fn`` in a new thread (not the reactor's pool, which the node
    uses): a Deferred of its result, fired on the reactor thread."""
    d: defer.Deferred[T] = defer.Deferred()

    def run() -> None:
        try:
            result = fn()
        except BaseException:
            reactor.callFromThread(d.errback, Failure())
        else:
            reactor.callFromThread(d.callback, result)

    threading.Thread(target=run, name="snfd-fuzz", daemon=True).start()
    return d


# -- strategies -----------------------------------------------------------------

def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Any text: ASCII, controls, separators, astral characters, lone
    surrogates excluded (they cannot be encoded)."""
    return st.text(st.characters(exclude_categories=["Cs"]), max_size=max_size)


def tricky_names() -> st.SearchStrategy[str]:
    """Object, container and other resource names: ordinary ones, dots,
    slashes, percent signs, controls, unicode, long ones."""
    return st.one_of(
        st.sampled_from(["", ".", "..", "a/../b", "/", "//", "a//b", "%", "%2F", "%00",
                         "a b", "ä", "\u202e", "\x7f", "\t", "x" * 256, "x" * 257,
                         "y" * 1025, "../../etc/passwd", "?", "#", ";", "*", "\U0001f600"]),
        texts(),
        st.text(string.ascii_letters + string.digits + "-_./%", min_size=1, max_size=30),
        st.builds(lambda n: "n" * n, st.integers(0, 1100)),
    )


def path_segment(name: str, safe: str) -> str:
    """``name`` as it goes in a request target (percent-encoded, keeping
    ``safe``)."""
    return quote(name.encode("utf-8", "surrogatepass"), safe=safe)


def encoded(name: str) -> st.SearchStrategy[str]:
    """``name`` percent-encoded in one of the ways a client may send it."""
    return st.sampled_from(["", "/", "/%"]).map(lambda safe: path_segment(name, safe))


def header_values() -> st.SearchStrategy[bytes]:
    """Header values: text and raw bytes, no CR or LF (which would end
    the header line)."""
    raw = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
    return st.one_of(
        texts(80).map(lambda s: s.replace("\r", "").replace("\n", "").encode("utf-8")),
        raw,
        st.sampled_from([b"", b" ", b"%", b"%0D%0A", b"%ff", b"%00", b"true", b"false",
                         b"-1", b"0", b"18446744073709551616", b"1e999", b"null", b"*"]),
        st.integers().map(lambda i: str(i).encode()),
    )


def header_names(known: list[str], prefixes: list[str]) -> st.SearchStrategy[bytes]:
    """Header names: ``known`` ones, ``prefixes`` followed by a random
    suffix (percent escapes included), and random tokens or junk."""
    suffix = st.one_of(
        st.text(TCHAR, min_size=0, max_size=20),
        texts(20).map(lambda s: quote(s.encode("utf-8"), safe="")),
        st.text(string.printable.replace(":", "").replace("\r", "").replace("\n", ""),
                max_size=20),
        st.sampled_from(["K%0D%0ASet-Cookie%3A%20x", "%", "%ff", "a b", "\t", "(", "x" * 300]),
    )
    names = st.one_of(
        st.sampled_from(known),
        st.tuples(st.sampled_from(prefixes), suffix).map("".join),
        st.text(TCHAR, min_size=1, max_size=30),
    ).map(lambda s: s.encode("utf-8"))
    junk = st.binary(min_size=1, max_size=30).map(
        lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b":", b"").lstrip())
    return st.one_of(names, names, junk).filter(
        lambda n: bool(n) and n.strip().lower().decode("latin-1") not in CLIENT_HEADERS)


def header_lists(names: st.SearchStrategy[bytes], max_size: int = 6,
                 ) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    return st.lists(st.tuples(names, header_values()), max_size=max_size)


def range_values() -> st.SearchStrategy[bytes]:
    """``Range`` values: well-formed, overlapping, reversed, huge, junk."""
    num = st.one_of(st.integers(0, 5000), st.integers(-10, 2 ** 70))
    one = st.one_of(
        st.tuples(num, num).map(lambda t: f"{t[0]}-{t[1]}"),
        num.map(lambda n: f"{n}-"),
        num.map(lambda n: f"-{n}"),
        st.sampled_from(["-", "", "a-b", "1-2-3", " 1 - 2 "]),
    )
    return st.one_of(
        st.lists(one, min_size=1, max_size=120).map(lambda r: "bytes=" + ",".join(r)),
        st.sampled_from(["bytes=", "bytes=0-0", "items=0-1", "bytes 0-1", "bytes=0-1,,2-3"]),
        texts(),
    ).map(lambda s: s.encode("utf-8"))


def query_strings(keys: list[str]) -> st.SearchStrategy[str]:
    """Query strings over ``keys`` and random keys: bare flags, empty,
    percent-encoded junk, repeated keys."""
    value = st.one_of(
        st.sampled_from(["", "json", "xml", "text", "plain", "0", "-1", "1", "10000",
                         "99999999999999999999", "true", "None", "list", "a", "/", ".",
                         "(a+)+$", "1970-01-01T00:00:00Z", "now"]),
        texts(30),
        st.integers().map(str),
    ).map(lambda v: quote(v.encode("utf-8"), safe=""))
    key = st.one_of(st.sampled_from(keys), texts(10).map(lambda k: quote(k.encode(), safe="")))
    item = st.one_of(st.tuples(key, value).map(lambda kv: f"{kv[0]}={kv[1]}"), key)
    raw = st.text(string.printable.replace(" ", "").replace("#", "").replace("\r", "")
                  .replace("\n", "").replace("\t", "").replace("\x0b", "").replace("\x0c", ""),
                  max_size=30)
    return st.one_of(st.lists(item, max_size=5).map("&".join), raw)


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(),
                        st.floats(allow_nan=False, allow_infinity=False), texts(30),
                        st.sampled_from(["", "0", "null", "x" * 300, "-1", "true"]),
                        st.integers(-2 ** 70, 2 ** 70))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(texts(12), inner, max_size=4)),
        max_leaves=max_leaves)


def shaped(template: Any) -> st.SearchStrategy[Any]:
    """JSON shaped like ``template`` (so that it passes the first checks)
    with every leaf random: a dict keeps its keys (some dropped, some
    random ones added), a list gets 0-3 items of its first item's shape."""
    if isinstance(template, dict):
        fields = {k: shaped(v) for k, v in template.items()}
        return st.tuples(st.fixed_dictionaries({}, optional=fields),
                         st.dictionaries(texts(12), json_values(4), max_size=2)
                         ).map(lambda t: {**t[1], **t[0]})
    if isinstance(template, list):
        item = shaped(template[0]) if template else json_values(4)
        return st.one_of(st.lists(item, max_size=3), json_values(4))
    return st.one_of(st.just(template), json_values(4))


def json_bodies(*templates: Any) -> st.SearchStrategy[bytes]:
    """Request bodies: JSON shaped like one of ``templates``, any JSON,
    deeply nested JSON, broken JSON, non-UTF-8 bytes, large ones."""
    shapes = [shaped(t) for t in templates]
    values = st.one_of(*shapes, json_values()) if shapes else json_values()
    return st.one_of(
        values.map(lambda v: json.dumps(v).encode()),
        values.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
        st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(1, 5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.sampled_from([b"", b"{", b"nul", b"\xff\xfe", b"{}", b"[]", b"null", b"1e99999",
                         b'{"a": NaN}', b'{"a": Infinity}', b'"' + b"x" * 60000 + b'"']),
        st.binary(max_size=200),
    ).filter(lambda b: len(b) <= MAX_BODY)


def hashmaps(known: list[str]) -> st.SearchStrategy[bytes]:
    """Hashmap upload bodies: ``{"bytes", "hashes"}`` with known, random,
    malformed hashes and sizes, and broken JSON."""
    hashes = st.one_of(st.sampled_from(known) if known else st.nothing(),
                       st.binary(min_size=32, max_size=32).map(bytes.hex),
                       st.text("0123456789abcdefABCDEF", max_size=70),
                       texts(10))
    size = st.one_of(st.integers(-5, 20 * 1024 * 1024), st.integers(-2 ** 70, 2 ** 70),
                     texts(5), st.none(), st.floats(allow_nan=False, allow_infinity=False))
    body = st.fixed_dictionaries({}, optional={"bytes": size,
                                               "hashes": st.lists(hashes, max_size=12),
                                               "block_size": size, "block_hash": texts(10)})
    return st.one_of(body.map(lambda b: json.dumps(b).encode()),
                     st.lists(hashes, max_size=5).map(lambda h: json.dumps(h).encode()),
                     json_bodies())


__all__ = ["CLIENT_HEADERS", "HANG_AFTER", "MAX_BODY", "Answer", "Bridge", "Hang", "Req",
           "encoded", "hashmaps", "header_lists", "header_names", "header_values",
           "in_thread", "json_bodies", "json_values", "parse_answer", "path_segment",
           "query_strings", "range_values", "send", "shaped", "texts", "tricky_names"]
