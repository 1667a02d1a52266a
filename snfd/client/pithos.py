"""A blocking HTTP client of the object store (Swift API + Pithos
extensions) and of the Keystone v3 login that finds it (and of the code
exchange that ends a browser login).

``Transport`` is the one place requests are sent: a keep-alive
``requests.Session``, a timeout on every request, retries with
exponential backoff, byte counters, and one error type (``ClientError``)
whose message is the server's fault message.  ``PithosClient`` maps the
object-store operations onto it; ``login_password``, ``login_token``,
``login_app_credential`` and ``login_code`` get a token and the storage
URL from the identity API.

Retries: a request that could not connect, or that got 503, is always
sent again (the server did nothing).  A request that timed out or got
another 5xx is sent again only if repeating it is harmless; every
operation here is, except MOVE and an append (``PithosClient.append``:
``idempotent=False``).  Bodies are ``bytes``, or a ``FileBody`` that
streams part of a local file and is rewound before it is sent again.
The counters count body bytes (not headers) of every attempt.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

import attrs
import requests
from requests.adapters import HTTPAdapter

USER_AGENT = "snf/0.1 (snfd)"
DIRECTORY_TYPE = "application/directory"
DIRECTORY_TYPES = frozenset({"application/directory", "application/folder"})

# Query parameters: ``None`` values are sent as bare flags (``?hashmap``).
Params = Iterable[tuple[str, str | None]] | Mapping[str, str | None]


class ClientError(Exception):
    """A request failed; ``str()`` is one line fit for a user.

    ``status`` is the HTTP status (0: no answer); ``message`` the server's
    fault message (or the network error); ``body`` the raw reply body.
    """

    def __init__(self, status: int, message: str, body: bytes = b""):
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body

    def __str__(self) -> str:
        if self.status:
            return f"{self.message} ({self.status})"
        return self.message


def fault_message(status: int, reason: str, body: bytes) -> str:
    """The one-line message of an error reply: the ``message`` (and
    ``details``) of an OpenStack/Synnefo fault ``{"<name>": {...}}``, of a
    Keystone ``{"error": {...}}``, else the first line of a text body, else
    the HTTP reason."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and len(data) == 1:
        inner = next(iter(data.values()))
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            message = inner["message"].strip()
            details = inner.get("details")
            if isinstance(details, str) and details.strip() and details.strip() != message:
                message = f"{message}: {details.strip()}"
            return " ".join(message.split())
    text = body.decode("utf-8", "replace").strip()
    if text and not text.startswith(("<", "{", "[")):
        return " ".join(text.splitlines()[0].split())[:300]
    return reason or f"HTTP {status}"


def encode_params(params: Params | None) -> str:
    """A query string; ``None`` values become bare flags."""
    if not params:
        return ""
    items = params.items() if isinstance(params, Mapping) else params
    parts = []
    for key, value in items:
        k = quote(key, safe="")
        parts.append(k if value is None else f"{k}={quote(str(value), safe='')}")
    return "?" + "&".join(parts)


def quote_path(*parts: str) -> str:
    """``/a/b/c`` with each part percent-encoded (``/`` kept inside parts)."""
    return "".join("/" + quote(p, safe="/") for p in parts)


@attrs.define
class Counters:
    """Body bytes sent and received, and requests made (thread-safe)."""

    sent: int = 0
    received: int = 0
    requests: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    def add(self, sent: int = 0, received: int = 0, requests: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.received += received
            self.requests += requests


class FileBody:
    """A request body of ``size`` bytes of a binary ``file`` from
    ``offset``, read as it is sent (never held whole).  requests sends it
    with ``Content-Length: size``; ``Transport.request`` rewinds it before
    sending it again.  A file that shrinks meanwhile fails the request."""

    def __init__(self, file: BinaryIO, offset: int, size: int):
        self.file = file
        self.offset = offset
        self.size = size
        self._left = size
        self.rewind()

    def __len__(self) -> int:
        return self.size

    def rewind(self) -> None:
        self.file.seek(self.offset)
        self._left = self.size

    def read(self, n: int = -1) -> bytes:
        want = self._left if n is None or n < 0 else min(n, self._left)
        if want <= 0:
            return b""
        chunk = self.file.read(want)
        if not chunk:
            raise OSError(f"the local file ended {self._left} bytes early (it changed)")
        self._left -= len(chunk)
        return chunk


class Transport:
    """Sends requests (see the module docstring for the retry rules).

    @param timeout: ``(connect, read)`` seconds of every request.
    @param retries: how many times a request is sent again at most.
    @param backoff: first pause between attempts (doubles each time, capped
        at 30 s).
    @param sleep: how to pause (tests pass a recorder).
    """

    IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "POST", "COPY", "OPTIONS"})

    def __init__(self, *, timeout: tuple[float, float] = (10.0, 300.0), retries: int = 3,
                 backoff: float = 0.5, pool_size: int = 64,
                 sleep: Callable[[float], None] = time.sleep,
                 session: requests.Session | None = None):
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.counters = Counters()
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        session.headers["User-Agent"] = USER_AGENT
        self.session = session

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, url: str, *, params: Params | None = None,
                headers: Mapping[str, str] | None = None,
                data: bytes | FileBody | None = None,
                ok: Iterable[int] = (200, 201, 202, 204, 206),
                stream: bool = False, idempotent: bool | None = None) -> requests.Response:
        """Send a request and return its response, whose status is in ``ok``.

        With ``stream`` the body is left unread (read it with
        ``iter_body``); otherwise it is read and counted.  ``idempotent``
        False sends it once only (a server create, which a retry could
        make twice), except when the connection could not be made; None
        decides by the method (``IDEMPOTENT``).
        @raise ClientError: another status (the server's fault message), or
            no answer after the retries.
        """
        full = url + encode_params(params)
        accepted = set(ok)
        again = method in self.IDEMPOTENT if idempotent is None else idempotent
        attempt = 0
        while True:
            delay = min(self.backoff * (2 ** attempt), 30.0)
            if isinstance(data, FileBody):
                data.rewind()
            try:
                self.counters.add(sent=len(data) if data else 0, requests=1)
                resp = self.session.request(method, full, headers=dict(headers or {}),
                                            data=data, timeout=self.timeout, stream=stream,
                                            allow_redirects=False)
            except (requests.ConnectionError, requests.Timeout) as e:
                harmless = isinstance(e, requests.ConnectTimeout) or again
                if attempt < self.retries and harmless:
                    attempt += 1
                    self.sleep(delay)
                    continue
                raise ClientError(0, f"{method} {url}: {_network_message(e)}") from None
            retry = ((resp.status_code == 503 and idempotent is None)
                     or (again and resp.status_code >= 500))
            if resp.status_code in accepted and not retry:
                if not stream:
                    self.counters.add(received=len(resp.content))
                return resp
            body = resp.content
            self.counters.add(received=len(body))
            resp.close()
            if retry and attempt < self.retries:
                attempt += 1
                after = resp.headers.get("Retry-After", "")
                self.sleep(min(float(after), 30.0) if after.isdigit() else delay)
                continue
            raise ClientError(resp.status_code,
                              fault_message(resp.status_code, resp.reason or "", body), body)

    def iter_body(self, resp: requests.Response,
                  chunk_size: int = 1 << 16) -> Iterator[bytes]:
        """The body of a streamed response, counted as it is read."""
        try:
            for chunk in resp.iter_content(chunk_size):
                self.counters.add(received=len(chunk))
                yield chunk
        except requests.RequestException as e:
            raise ClientError(0, f"reading the reply: {_network_message(e)}") from None
        finally:
            resp.close()


def _network_message(error: Exception) -> str:
    text = str(error)
    if "Connection refused" in text:
        return "connection refused"
    if isinstance(error, requests.Timeout):
        return "timed out"
    return " ".join(text.split())[:300]


# -- identity -------------------------------------------------------------------


@attrs.frozen
class Login:
    """What a login found: the token, its user, the storage URL and every
    public endpoint of the catalog by service type."""

    token: str
    user: str
    email: str
    storage_url: str
    endpoints: dict[str, str] = attrs.Factory(dict)


def _identity(url: str) -> str:
    return url.rstrip("/") + "/identity/v3/auth/tokens"


def _endpoints(body: Any) -> dict[str, str]:
    """The catalog's public endpoints by service type."""
    found: dict[str, str] = {}
    for service in body.get("token", {}).get("catalog") or []:
        for endpoint in service.get("endpoints") or []:
            if (endpoint.get("interface") == "public" and endpoint.get("url")
                    and isinstance(service.get("type"), str)):
                found.setdefault(service["type"], str(endpoint["url"]).rstrip("/"))
    return found


def _storage_url(body: Any) -> str:
    return _endpoints(body).get("object-store", "")


def _issue(transport: Transport, url: str, identity: dict[str, Any],
           project: str | None) -> tuple[str, Any]:
    auth: dict[str, Any] = {"identity": identity}
    if project:
        auth["scope"] = {"project": {"id": project}}
    resp = transport.request("POST", _identity(url), data=json.dumps({"auth": auth}).encode(),
                             headers={"Content-Type": "application/json"}, ok=(200, 201))
    token = resp.headers.get("X-Subject-Token", "")
    if not token:
        raise ClientError(resp.status_code, "the identity API returned no X-Subject-Token")
    return token, resp.json()


def _finish(transport: Transport, url: str, token: str, body: Any,
            rescope: bool = True) -> Login:
    """Scope the token to the user's base project (whose uuid is the
    user's) when it has no catalog (and ``rescope``: a token that may get
    another), and read the storage URL."""
    user = body["token"]["user"]
    if rescope and not _storage_url(body):
        token, body = _issue(transport, url, {"methods": ["token"], "token": {"id": token}},
                             user["id"])
    storage = _storage_url(body)
    if not storage:
        raise ClientError(0, "the service catalog has no object-store endpoint;"
                             " does the cloud run the pithos service?")
    return Login(token=token, user=str(user["id"]), email=str(user.get("name", "")),
                 storage_url=storage, endpoints=_endpoints(body))


def login_password(transport: Transport, url: str, username: str, password: str) -> Login:
    """Log in with a password (``username`` is the email) at ``url``."""
    identity = {"methods": ["password"],
                "password": {"user": {"name": username, "password": password,
                                      "domain": {"id": "default"}}}}
    token, body = _issue(transport, url, identity, None)
    return _finish(transport, url, token, body)


def login_token(transport: Transport, url: str, token: str) -> Login:
    """Check ``token`` at ``url`` and find its storage URL (a token with no
    catalog is exchanged for one scoped to the user's base project)."""
    resp = transport.request("GET", _identity(url),
                             headers={"X-Auth-Token": token, "X-Subject-Token": token})
    return _finish(transport, url, token, resp.json())


def login_app_credential(transport: Transport, url: str, secret: str, *,
                         credential_id: str = "", name: str = "",
                         username: str = "") -> Login:
    """Log in with an application credential at ``url``: its ``secret``
    and its ``credential_id``, else its ``name`` and its user's
    ``username`` (the email; domain Default).  The token is scoped to the
    credential's project, with the credential's roles; it cannot be
    exchanged for another, so its catalog must have the object store."""
    credential: dict[str, Any] = (
        {"id": credential_id} if credential_id
        else {"name": name, "user": {"name": username, "domain": {"id": "default"}}})
    credential["secret"] = secret
    identity = {"methods": ["application_credential"], "application_credential": credential}
    token, body = _issue(transport, url, identity, None)
    return _finish(transport, url, token, body, rescope=False)


def login_code(transport: Transport, url: str, code: str, verifier: str) -> Login:
    """Trade the one-time code of a browser login (``snfd.client.loopback``)
    and its PKCE verifier for the user's token at ``url`` (sent once: the
    code works once), then log in with the token as ``login_token``."""
    resp = transport.request(
        "POST", url.rstrip("/") + "/ui/token/exchange",
        data=json.dumps({"code": code, "code_verifier": verifier}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        ok=(200,), idempotent=False)
    body = resp.json()
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ClientError(resp.status_code, "the identity service gave no token for the"
                                            " login's code")
    return login_token(transport, url, token)


# -- object store ------------------------------------------------------------------


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


@attrs.frozen
class Hashmap:
    """An object's hashmap as ``GET ?hashmap`` gives it."""

    bytes: int
    hashes: list[str]
    block_size: int
    block_hash: str


class PithosClient:
    """The object-store operations of one account.

    ``storage_url`` is ``<base>/object-store/v1/<account>``; ``token`` is
    sent as ``X-Auth-Token``.  Remote names are ``container`` and object
    ``name`` (which may contain ``/``).  Every method raises
    ``ClientError``.
    """

    def __init__(self, transport: Transport, storage_url: str, token: str):
        self.transport = transport
        self.storage_url = storage_url.rstrip("/")
        self.token = token

    @property
    def account(self) -> str:
        return self.storage_url.rsplit("/", 1)[-1]

    def for_account(self, account: str) -> PithosClient:
        """The same client on another user's account (shared objects)."""
        base = self.storage_url.rsplit("/", 1)[0]
        return PithosClient(self.transport, f"{base}/{account}", self.token)

    def _request(self, method: str, path: str = "", *,
                 headers: Mapping[str, str] | None = None, **kwargs: Any) -> requests.Response:
        h = {"X-Auth-Token": self.token}
        h.update(headers or {})
        try:
            return self.transport.request(method, self.storage_url + path, headers=h,
                                          **kwargs)
        except ClientError as e:
            if e.status and not e.body.strip():  # HEAD, or a bare status: say what
                what = unquote(path.lstrip("/")) or "the account"
                raise ClientError(e.status, f"{what}: {e.message}", e.body) from None
            raise

    @staticmethod
    def _path(container: str, name: str | None = None) -> str:
        return quote_path(container) if name is None else quote_path(container, name)

    def _listing(self, path: str, params: dict[str, str | None],
                 limit: int | None) -> Iterator[dict[str, Any]]:
        """Page through a JSON listing by ``marker``."""
        marker = None
        seen = 0
        while True:
            page = dict(params, format="json")
            if marker is not None:
                page["marker"] = marker
            resp = self._request("GET", path, params=page, ok=(200, 204))
            items = resp.json() if resp.status_code == 200 and resp.content else []
            if not items:
                return
            for item in items:
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            last = items[-1]
            marker = last.get("name") or last.get("subdir")
            if not marker:
                return

    # -- account ----------------------------------------------------------

    def account_info(self) -> Mapping[str, str]:
        return self._request("HEAD").headers

    def containers(self, *, limit: int | None = None) -> Iterator[dict[str, Any]]:
        return self._listing("", {}, limit)

    # -- containers -------------------------------------------------------

    def container_info(self, container: str) -> Mapping[str, str]:
        return self._request("HEAD", self._path(container)).headers

    def block_params(self, container: str) -> tuple[int, str]:
        """The container's ``(block size, block hash algorithm)``."""
        info = self.container_info(container)
        return (_int(info.get("X-Container-Block-Size"), 4 * 1024 * 1024),
                info.get("X-Container-Block-Hash", "sha256").lower())

    def create_container(self, container: str, *,
                         policy: Mapping[str, str] | None = None,
                         meta: Mapping[str, str] | None = None) -> bool:
        """Create (or update) a container; ``True`` if it is new."""
        headers = {"Content-Length": "0"}
        for key, value in (policy or {}).items():
            headers[f"X-Container-Policy-{key}"] = value
        for key, value in (meta or {}).items():
            headers[f"X-Container-Meta-{key}"] = value
        resp = self._request("PUT", self._path(container), headers=headers, data=b"")
        return resp.status_code == 201

    def delete_container(self, container: str, *, recursive: bool = False) -> None:
        """Delete an empty container; ``recursive`` deletes its objects first."""
        params = {"delimiter": "/"} if recursive else None
        self._request("DELETE", self._path(container), params=params)

    def objects(self, container: str, *, prefix: str = "", delimiter: str | None = None,
                limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The JSON listing entries of a container (objects and, with a
        delimiter, ``{"subdir": ...}`` entries), in name order."""
        params: dict[str, str | None] = {}
        if prefix:
            params["prefix"] = prefix
        if delimiter:
            params["delimiter"] = delimiter
        return self._listing(self._path(container), params, limit)

    def upload_block(self, container: str, data: bytes) -> list[str]:
        """Store blocks by POSTing their bytes to the container; returns
        the hashes the server computed (one per block-size chunk)."""
        resp = self._request(
            "POST", self._path(container), params=[("update", None), ("format", "json")],
            headers={"Content-Type": "application/octet-stream"}, data=data)
        hashes = resp.json()
        if not isinstance(hashes, list):
            raise ClientError(resp.status_code, "the block upload reply is not a list")
        return [str(h).lower() for h in hashes]

    # -- objects ----------------------------------------------------------

    def object_info(self, container: str, name: str,
                    version: str | None = None) -> Mapping[str, str]:
        params = {"version": version} if version else None
        return self._request("HEAD", self._path(container, name), params=params).headers

    def get_hashmap(self, container: str, name: str, version: str | None = None) -> Hashmap:
        params: list[tuple[str, str | None]] = [("hashmap", None), ("format", "json")]
        if version:
            params.append(("version", version))
        data = self._request("GET", self._path(container, name), params=params).json()
        try:
            return Hashmap(bytes=int(data["bytes"]),
                           hashes=[str(h).lower() for h in data["hashes"]],
                           block_size=int(data.get("block_size", 4 * 1024 * 1024)),
                           block_hash=str(data.get("block_hash", "sha256")).lower())
        except (KeyError, TypeError, ValueError):
            raise ClientError(200, "the hashmap reply is malformed") from None

    def put_hashmap(self, container: str, name: str, size: int, hashes: list[str], *,
                    content_type: str = "application/octet-stream",
                    headers: Mapping[str, str] | None = None
                    ) -> tuple[list[str], Mapping[str, str]]:
        """Create an object from its hashmap.

        @return: ``(missing, headers)``: the hashes the server lacks (then
            nothing was created; upload them and call again), or ``[]`` and
            the reply headers (``ETag``, ``X-Object-Version``).
        """
        h = {"Content-Type": content_type}
        h.update(headers or {})
        body = json.dumps({"bytes": size, "hashes": hashes}).encode()
        resp = self._request("PUT", self._path(container, name),
                             params=[("hashmap", None), ("format", "json")],
                             headers=h, data=body, ok=(201, 409))
        if resp.status_code == 201:
            return [], resp.headers
        try:
            missing = resp.json()
        except ValueError:
            missing = None
        if not isinstance(missing, list) or not missing:
            raise ClientError(409, fault_message(409, resp.reason or "", resp.content),
                              resp.content)
        return [str(h).lower() for h in missing], resp.headers

    def read_range(self, container: str, name: str, start: int, end: int,
                   version: str | None = None) -> bytes:
        """Bytes ``start``..``end`` (inclusive) of an object."""
        params = {"version": version} if version else None
        resp = self._request("GET", self._path(container, name), params=params,
                             headers={"Range": f"bytes={start}-{end}"}, ok=(200, 206))
        if resp.status_code == 200:  # the server ignored the range
            return resp.content[start:end + 1]
        return resp.content

    def get_object(self, container: str, name: str,
                   version: str | None = None) -> tuple[Mapping[str, str], Iterator[bytes]]:
        """An object's headers and its body as a stream of chunks."""
        params = {"version": version} if version else None
        resp = self._request("GET", self._path(container, name), params=params, stream=True,
                             ok=(200,))
        return resp.headers, self.transport.iter_body(resp)

    def put_object(self, container: str, name: str, data: bytes, *,
                   content_type: str = "application/octet-stream",
                   headers: Mapping[str, str] | None = None) -> Mapping[str, str]:
        """Create an object from its bytes (a plain PUT)."""
        h = {"Content-Type": content_type}
        h.update(headers or {})
        return self._request("PUT", self._path(container, name), headers=h, data=data,
                             ok=(201,)).headers

    def mkdir(self, container: str, name: str) -> None:
        """Create a directory marker object (``application/directory``)."""
        self.put_object(container, name.rstrip("/"), b"", content_type=DIRECTORY_TYPE)

    def copy(self, container: str, name: str, dst_container: str, dst_name: str, *,
             move: bool = False, recursive: bool = False,
             source_account: str | None = None) -> Mapping[str, str]:
        """COPY (or MOVE) an object; ``recursive`` also takes every object
        under ``<name>/``."""
        headers = {"Destination": quote_path(dst_container, dst_name)}
        if source_account is not None and source_account != self.account:
            raise ClientError(0, "copying from another account is not supported here")
        params = {"delimiter": "/"} if recursive else None
        return self._request("MOVE" if move else "COPY", self._path(container, name),
                             headers=headers, params=params, ok=(201,)).headers

    def delete(self, container: str, name: str, *, recursive: bool = False,
               if_match: str | None = None) -> None:
        """Delete an object; ``recursive`` also deletes every object under
        ``<name>/``; ``if_match`` only while the object's hash (or MD5) is
        that one (412 otherwise, and nothing is deleted)."""
        params = {"delimiter": "/"} if recursive else None
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else None
        self._request("DELETE", self._path(container, name), params=params, headers=headers)

    def versions(self, container: str, name: str) -> list[tuple[str, float]]:
        """``(version id, epoch timestamp)`` of every version, oldest first."""
        data = self._request("GET", self._path(container, name),
                             params={"version": "list", "format": "json"}).json()
        out = []
        for item in data.get("versions", []):
            try:
                out.append((str(item[0]), float(item[1])))
            except (IndexError, TypeError, ValueError):
                continue
        return out

    def update_object(self, container: str, name: str, headers: Mapping[str, str]) -> None:
        """POST ``headers`` (meta, sharing, public) to an object, merging
        (``?update``): headers not given keep their values."""
        self._request("POST", self._path(container, name), params=[("update", None)],
                      headers=dict(headers), data=b"")

    def set_sharing(self, container: str, name: str, read: Iterable[str] = (),
                    write: Iterable[str] = ()) -> None:
        """Replace the object's sharing (both empty: stop sharing)."""
        self.update_object(container, name,
                           {"X-Object-Sharing": sharing_header(read, write)})

    def set_public(self, container: str, name: str, public: bool) -> str:
        """Publish or unpublish an object; returns the public URL (or "")."""
        self.update_object(container, name,
                           {"X-Object-Public": "true" if public else "false"})
        if not public:
            return ""
        return self.object_info(container, name).get("X-Object-Public", "")

    # -- sharers, versions and partial updates ------------------------------------

    def sharers(self, *, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The accounts that share objects with this user (a GET of the
        storage root, without an account): ``{"name": uuid,
        "last_modified": iso}``, by name."""
        root = PithosClient(self.transport, self.storage_url.rsplit("/", 1)[0], self.token)
        return root._listing("", {}, limit)

    def restore(self, container: str, name: str, version: str) -> Mapping[str, str]:
        """Make an older ``version`` of an object its latest one (a copy of
        that version onto the object: ``PUT`` with ``X-Copy-From`` and
        ``X-Source-Version``); the reply headers carry the new
        ``X-Object-Version``."""
        headers = {"X-Copy-From": quote_path(container, name), "X-Source-Version": version,
                   "Content-Length": "0"}
        return self._request("PUT", self._path(container, name), headers=headers, data=b"",
                             ok=(201,)).headers

    def _update(self, container: str, name: str, headers: Mapping[str, str],
                data: bytes | FileBody, idempotent: bool | None) -> Mapping[str, str]:
        """A partial data update (``POST``); the reply headers carry the new
        ``ETag`` and ``X-Object-Version``."""
        h = {"Content-Type": "application/octet-stream"}
        h.update(headers)
        return self._request("POST", self._path(container, name), headers=h, data=data,
                             ok=(204,), idempotent=idempotent).headers

    def append(self, container: str, name: str, body: FileBody) -> Mapping[str, str]:
        """Add ``body`` at the end of an object (``Content-Range: bytes
        */*``).  Sent once: a second append would add the data twice."""
        return self._update(container, name, {"Content-Range": "bytes */*"}, body, False)

    def overwrite(self, container: str, name: str, start: int,
                  body: FileBody) -> Mapping[str, str]:
        """Write ``body`` over the object's bytes from ``start`` (``start``
        at most the object's size; writing past the end extends it)."""
        if not len(body):
            raise ClientError(0, "nothing to write: the data is empty")
        end = start + len(body) - 1
        return self._update(container, name, {"Content-Range": f"bytes {start}-{end}/*"},
                            body, None)

    def truncate(self, container: str, name: str, size: int) -> Mapping[str, str]:
        """Cut an object to ``size`` bytes (it is never extended): the
        object written onto itself (``X-Source-Object``) with
        ``X-Object-Bytes``, so no data travels."""
        headers = {"X-Source-Object": quote_path(container, name),
                   "Content-Range": "bytes 0-/*", "X-Object-Bytes": str(size)}
        return self._update(container, name, headers, b"", None)


def sharing_header(read: Iterable[str], write: Iterable[str]) -> str:
    """``read=a,b;write=c`` (empty: no sharing)."""
    parts = []
    for kind, who in (("read", read), ("write", write)):
        names = [w.strip() for w in who if w.strip()]
        if names:
            parts.append(f"{kind}={','.join(names)}")
    return ";".join(parts)
