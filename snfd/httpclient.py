"""The node's shared outbound HTTP(S) client.

Every call the node makes to another HTTP server (the Ganeti RAPI, other
snfd nodes) goes through one ``HTTPClientPool``: one persistent connection
pool, one TLS policy that knows which certificate each registered target is
trusted by, one place that enforces timeouts and counts outcomes in
``outbound_requests{target,outcome}``.

Callers describe a server once as a ``Target`` and talk to it through the
``TargetClient`` the pool hands out::

    rapi = pool.client(Target(name="ganeti", base_url="https://cluster:5080",
                              username="snf", password=secret,
                              ca_certificate=rapi_pem))
    status, body = await rapi.json_request("GET", "/2/instances")

Failures are always one of two exceptions: ``OutboundTimeout`` when no
complete answer (status line, headers and whole body) came within the
timeout, ``OutboundError`` when the exchange failed for another reason
(connection refused, TLS verification failed, connection lost).  An HTTP
error status is not an exception: the caller gets the ``Response`` and
decides.
"""

from __future__ import annotations

import base64
import json as _json
import re
from collections.abc import Mapping
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit

import attrs
from OpenSSL import SSL
from service_identity.exceptions import VerificationError
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet import error, ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IPushProducer,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS, IResponse
from zope.interface import implementer

from snfd.metrics import Metrics

__all__ = [
    "HTTPClientPool",
    "OutboundError",
    "OutboundTimeout",
    "Response",
    "Target",
    "TargetClient",
]

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class OutboundError(Exception):
    """An outbound call failed without an HTTP answer.

    ``target`` is the target's name, ``method`` and ``url`` say which call,
    ``reason`` is a short human description (e.g. "connection refused",
    "TLS verification failed: certificate verify failed").
    """

    def __init__(self, target: str, method: str, url: str, reason: str):
        super().__init__(target, method, url, reason)
        self.target = target
        self.method = method
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.target}: {self.method} {self.url} failed: {self.reason}"


class OutboundTimeout(OutboundError):
    """An outbound call got no complete answer within ``seconds``.

    The timeout covers connecting, sending, and reading the status line,
    headers and whole body.  The connection is aborted when it fires.  It
    is an ``OutboundError`` so one ``except`` can handle every failure.
    """

    def __init__(self, target: str, method: str, url: str, seconds: float):
        super().__init__(
            target, method, url, f"no complete answer within {seconds:g}s")
        self.seconds = seconds

    def __str__(self) -> str:
        return (f"{self.target}: {self.method} {self.url} timed out:"
                f" {self.reason}")


def _check_base_url(instance: Any, attribute: Any, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"base_url must be an http:// or https:// URL, not {value!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "put credentials in username/password, not in base_url")


def _check_timeout(instance: Any, attribute: Any, value: float) -> None:
    if not value > 0:
        raise ValueError(f"timeout must be positive, not {value!r}")


@attrs.frozen
class Target:
    """One remote HTTP server, as the node is configured to reach it.

    ``name`` labels metrics and errors.  ``base_url`` is the http(s) URL that
    request paths are joined onto (it may carry a path prefix).  When
    ``username`` is set every request carries HTTP basic auth.

    ``ca_certificate`` (PEM text or bytes, one or more certificates) makes
    the server trusted exactly by those certificates instead of the platform
    trust store; a pinned self-signed server certificate works.  The
    certificate must still name the host of ``base_url`` (DNS or IP SAN)
    unless ``verify_hostname`` is False, which checks only the chain.

    ``timeout`` is the default seconds a whole call may take.
    """

    name: str
    base_url: str = attrs.field(validator=_check_base_url)
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    ca_certificate: str | bytes | None = attrs.field(default=None, repr=False)
    verify_hostname: bool = True
    timeout: float = attrs.field(default=30.0, validator=_check_timeout)

    @property
    def netloc(self) -> tuple[str, int]:
        """The (host, port) this target connects to, host lower-cased."""
        parts = urlsplit(self.base_url)
        assert parts.hostname is not None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.hostname.lower(), port

    def url(self, path: str) -> str:
        """``path`` joined onto ``base_url`` with exactly one slash between."""
        if not path:
            return self.base_url
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")


@attrs.frozen
class Response:
    """A complete HTTP answer: status, headers and the whole body."""

    status: int
    headers: Headers
    body: bytes

    @property
    def status_class(self) -> str:
        """``"2xx"``, ``"4xx"``, ... for this status."""
        return f"{self.status // 100}xx"

    def json(self) -> Any:
        """The body parsed as UTF-8 JSON; raises ``ValueError`` if it is not."""
        return _json.loads(self.body.decode("utf-8"))


def _load_certificates(target: Target) -> list[ssl.Certificate]:
    pem = target.ca_certificate
    assert pem is not None
    if isinstance(pem, str):
        pem = pem.encode("ascii")
    blocks = _PEM_CERTIFICATE.findall(pem)
    if not blocks:
        raise ValueError(
            f"target {target.name}: ca_certificate holds no PEM certificate")
    try:
        return [ssl.Certificate.loadPEM(block) for block in blocks]
    except SSL.Error as e:
        raise ValueError(
            f"target {target.name}: ca_certificate is not a valid"
            f" certificate: {e}") from e


def _is_dns_name(host: str) -> bool:
    return not (isIPAddress(host) or isIPv6Address(host))


@implementer(IOpenSSLClientConnectionCreator)
class _ChainOnly:
    """Verify the server's chain against a trust root, not its name."""

    def __init__(self, host: str, trust_root: Any):
        self._host = host
        self._options = ssl.CertificateOptions(trustRoot=trust_root)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if _is_dns_name(self._host):
            connection.set_tlsext_host_name(self._host.encode("idna"))
        return connection


def _trust_key(target: Target) -> tuple[bytes | None, bool]:
    pem = target.ca_certificate
    if isinstance(pem, str):
        pem = pem.encode("ascii")
    return pem, target.verify_hostname


@implementer(IPolicyForHTTPS)
class _TargetTrust:
    """TLS trust per (host, port): a registered target's pin, else platform.

    Connections are pooled by (scheme, host, port), so two targets at the
    same host and port must agree on their trust; ``register`` refuses a
    target that disagrees with one registered before.
    """

    def __init__(self) -> None:
        self._keys: dict[tuple[str, int], tuple[bytes | None, bool]] = {}
        self._creators: dict[tuple[str, int], Any] = {}

    def register(self, target: Target, replace: bool = False) -> bool:
        """Trust ``target``'s server as it says; ``ValueError`` on conflict
        unless ``replace``, which makes this trust the one for its (host,
        port).  Returns whether the trust for that (host, port) changed."""
        netloc = target.netloc
        key = _trust_key(target)
        known = self._keys.get(netloc)
        if known is not None and known != key and replace:
            known = None
        if known is not None:
            if known != key:
                raise ValueError(
                    f"target {target.name}: {netloc[0]}:{netloc[1]} is"
                    " already registered with a different ca_certificate"
                    " or verify_hostname")
            return False
        if target.ca_certificate is None:
            trust_root = ssl.platformTrust()
        else:
            trust_root = ssl.trustRootFromCertificates(
                _load_certificates(target))
        host = netloc[0]
        if target.verify_hostname:
            creator = ssl.optionsForClientTLS(host, trustRoot=trust_root)
        else:
            creator = _ChainOnly(host, trust_root)
        changed = netloc in self._keys
        self._keys[netloc] = key
        self._creators[netloc] = creator
        return changed

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        host = hostname.decode("ascii").strip("[]").lower()
        creator = self._creators.get((host, port))
        if creator is None:
            # Not a registered target (e.g. redirected elsewhere):
            # the platform trust store and the host's name decide.
            creator = ssl.optionsForClientTLS(host)
        return creator


def _reasons(exc: BaseException) -> list[BaseException]:
    """The leaf exceptions inside Twisted's wrapping client failures."""
    inner = getattr(exc, "reasons", None)
    if not inner:
        return [exc]
    leaves: list[BaseException] = []
    for failure in inner:
        leaves.extend(_reasons(failure.value))
    return leaves


def _describe(exc: BaseException) -> str:
    """A short human reason for a failed exchange."""
    for leaf in _reasons(exc):
        if isinstance(leaf, VerificationError):
            return f"TLS verification failed: {leaf}"
        if isinstance(leaf, SSL.Error):
            texts = [
                part[2] for part in (leaf.args[0] if leaf.args else [])
                if isinstance(part, tuple) and len(part) == 3]
            detail = "; ".join(texts) or str(leaf)
            if "verify" in detail:
                return f"TLS verification failed: {detail}"
            return f"TLS error: {detail}"
    leaf = _reasons(exc)[0]
    if isinstance(leaf, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(leaf, error.DNSLookupError):
        return f"DNS lookup failed: {leaf}"
    if isinstance(leaf, error.ConnectionDone | error.ConnectionLost):
        return "connection closed before the answer was complete"
    return f"{type(leaf).__name__}: {leaf}"


class _BodyReader(Protocol):
    def __init__(self, finished: Deferred[bytes]):
        self._finished = finished
        self._parts: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._finished.called:
            return  # cancelled; the connection is being torn down
        # PotentialDataLoss: a body delimited by the server closing the
        # connection, which is complete by definition.
        if reason.check(ResponseDone, PotentialDataLoss):
            self._finished.callback(b"".join(self._parts))
        else:
            self._finished.errback(reason)


def _read_body(response: IResponse) -> Deferred[bytes]:
    """The whole body; cancelling closes the connection.

    (``twisted.web.client.readBody`` fires twice when cancelled while the
    connection is still open.)
    """

    def cancel(d: Deferred[bytes]) -> None:
        # IResponse.deliverBody: the body's transport is an IPushProducer
        # and stopping it closes the connection.
        if reader.transport is not None:
            IPushProducer(reader.transport).stopProducing()

    finished: Deferred[bytes] = Deferred(cancel)
    reader = _BodyReader(finished)
    response.deliverBody(reader)
    return finished


class HTTPClientPool:
    """The node's one outbound HTTP(S) client: pooled connections, per-target TLS.

    ``reactor`` must provide TCP, time and name resolution (any real
    reactor).  Up to ``max_persistent_per_host`` idle connections are kept
    per (scheme, host, port) and reused.  Call ``close`` when the node stops
    (from ``stopService``).
    """

    def __init__(self, reactor: Any, metrics: Metrics,
                 max_persistent_per_host: int = 8):
        self._reactor = reactor
        self._metrics = metrics
        self._trust = _TargetTrust()
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = max_persistent_per_host
        agent = Agent(reactor, contextFactory=self._trust, pool=self._pool)
        # Refuse all cookies: the pool serves many targets and none of
        # their APIs is session-based.
        no_cookies = IndexableCookieJar(DefaultCookiePolicy(allowed_domains=[]))
        self._http = HTTPClient(agent, cookiejar=no_cookies)

    def client(self, target: Target, replace_trust: bool = False) -> TargetClient:
        """A client that talks to ``target`` through this pool.

        Registers the target's TLS trust for its (host, port); raises
        ``ValueError`` if its ``ca_certificate`` is not PEM or if another
        target at the same host and port was registered with different
        trust.  ``replace_trust`` (a server's certificate was changed by
        its administrator) makes this target's trust replace the earlier
        one instead, and drops the idle pooled connections, which were
        verified against the old one.
        """
        if urlsplit(target.base_url).scheme == "https":
            if self._trust.register(target, replace=replace_trust):
                self._pool.closeCachedConnections()
        return TargetClient(self, target)

    async def close(self) -> None:
        """Close the idle pooled connections; returns when they are closed.

        Calls in flight are not interrupted.
        """
        await self._pool.closeCachedConnections()


class TargetClient:
    """Calls to one ``Target`` through an ``HTTPClientPool``.

    Get one from ``HTTPClientPool.client``.  Each call returns a complete
    ``Response`` (redirects are not followed) or raises ``OutboundTimeout``
    or ``OutboundError``; cancelling the call aborts it.
    """

    def __init__(self, pool: HTTPClientPool, target: Target):
        self._pool = pool
        self.target = target

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | list[str]] | list[tuple[str, str]]
        | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send ``method`` to ``path`` (joined onto the base URL); read it all.

        ``json`` (any value but None) is sent as an application/json body;
        otherwise ``data`` as bytes or a form-encoded mapping.  ``params``
        are added to the query string.  ``timeout`` (default: the target's)
        bounds the whole exchange including the body.
        """
        target = self.target
        method = method.upper()
        url = target.url(path)
        seconds = target.timeout if timeout is None else timeout
        if not seconds > 0:
            raise ValueError(f"timeout must be positive, not {seconds!r}")
        metric = self._pool._metrics.outbound_requests
        reactor = self._pool._reactor

        exchange = Deferred.fromCoroutine(self._exchange(
            method, url, json=json, data=data,
            headers=self._headers(headers), params=params))
        # Who stopped the exchange, if anyone: the errors Twisted reports
        # for a cancelled exchange depend on its stage (even a DNS lookup
        # failure), so the cause is recorded rather than inferred.
        stopped_by: str | None = None

        def expire() -> None:
            nonlocal stopped_by
            stopped_by = "timeout"
            exchange.cancel()

        def caller_cancelled(_: Deferred[Response]) -> None:
            nonlocal stopped_by
            stopped_by = stopped_by or "caller"
            exchange.cancel()

        # "outcome" is what this coroutine awaits, so a caller's cancel
        # reaches caller_cancelled; results arriving after it are dropped.
        outcome: Deferred[Response] = Deferred(caller_cancelled)

        def relay(result: Any) -> None:
            if not outcome.called:
                outcome.callback(result)

        exchange.addBoth(relay)
        timer = reactor.callLater(seconds, expire)
        try:
            response = await outcome
        except Exception as e:
            if stopped_by == "timeout":
                metric.labels(target=target.name, outcome="timeout").inc()
                raise OutboundTimeout(target.name, method, url, seconds) \
                    from None
            if stopped_by == "caller":
                metric.labels(target=target.name, outcome="cancelled").inc()
                raise CancelledError() from None
            metric.labels(target=target.name, outcome="error").inc()
            raise OutboundError(target.name, method, url, _describe(e)) \
                from e
        finally:
            if timer.active():
                timer.cancel()
        metric.labels(target=target.name, outcome=response.status_class).inc()
        return response

    async def get(self, path: str, **kwargs: Any) -> Response:
        """``request("GET", path, ...)``."""
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Response:
        """``request("POST", path, ...)``."""
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Response:
        """``request("PUT", path, ...)``."""
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Response:
        """``request("DELETE", path, ...)``."""
        return await self.request("DELETE", path, **kwargs)

    async def json_request(
        self, method: str, path: str, **kwargs: Any,
    ) -> tuple[int, Any]:
        """Like ``request`` but answers (status, parsed JSON body or None).

        Asks for JSON (``Accept: application/json``) unless told otherwise.
        The body is None when it is empty, or when an error status (not
        2xx) came with a body that is not JSON (e.g. a proxy's HTML page).
        A 2xx answer whose body is not JSON raises ``OutboundError``.
        """
        headers = dict(kwargs.pop("headers", None) or {})
        if not any(k.lower() == "accept" for k in headers):
            headers["Accept"] = "application/json"
        response = await self.request(method, path, headers=headers, **kwargs)
        if not response.body.strip():
            return response.status, None
        try:
            return response.status, response.json()
        except ValueError:
            if response.status_class == "2xx":
                raise OutboundError(
                    self.target.name, method.upper(), self.target.url(path),
                    f"answered {response.status} with a body that is not"
                    " JSON") from None
            return response.status, None

    def _headers(self, extra: Mapping[str, str] | None) -> Headers:
        headers = Headers()
        for name, value in (extra or {}).items():
            headers.addRawHeader(name, value)
        target = self.target
        if target.username is not None and not headers.hasHeader(
                "authorization"):
            pair = f"{target.username}:{target.password or ''}"
            token = base64.b64encode(pair.encode("utf-8")).decode("ascii")
            headers.setRawHeaders("Authorization", [f"Basic {token}"])
        return headers

    async def _exchange(
        self, method: str, url: str, *, json: Any, data: Any,
        headers: Headers, params: Any,
    ) -> Response:
        kwargs: dict[str, Any] = {}
        if json is not None:
            kwargs["json"] = json
        raw = await self._pool._http.request(
            method, url, data=data, headers=headers, params=params,
            allow_redirects=False, unbuffered=True,
            reactor=self._pool._reactor, **kwargs)
        body = await _read_body(raw)
        return Response(raw.code, raw.headers, body)
