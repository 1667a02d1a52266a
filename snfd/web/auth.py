"""Who is calling: the token wrapper in front of every protected API.

``TokenAuth`` wraps a service's resource.  For each request it reads
``X-Auth-Token`` (and, where a service allows it, the ``X-Auth-Token``
query parameter, for HTML form uploads), asks the node's
``IAuthenticator`` and stores the answer on ``request.principal`` before
the wrapped resource sees the request.  A request without a token gets
``request.principal = None`` (some endpoints are public); a bad token is
answered with 401 before the service runs.  Handlers then say what they
need with ``user_of(request)`` or ``component_of(request)``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from twisted.internet import defer
from twisted.web import resource, util

from snfd import errors
from snfd.interfaces import IAuthenticator
from snfd.web.site import FaultResource


@attrs.frozen
class Principal:
    """An authenticated caller: a user, or a component (a service).

    For a user: ``user`` is the uuid (``str``), ``project`` the token's
    project scope (``None`` when unscoped), ``groups`` the user's groups.
    For a component: ``component`` is its name and ``user`` is ``None``.
    """

    user: str | None = None
    email: str = ""
    name: str = ""
    is_admin: bool = False
    groups: tuple[str, ...] = ()
    project: str | None = None
    expires_at: datetime.datetime | None = None
    issued_at: datetime.datetime | None = None
    audit_ids: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    component: str | None = None
    #: the application credential the token was issued from, if any
    app_credential: str | None = None
    #: ``(service type, method, path)`` the token is limited to; ``None``:
    #: no access rules (``TokenAuth`` enforces them)
    access_rules: tuple[tuple[str, str, str], ...] | None = None
    #: the Keystone roles the token carries on its project or the system
    #: (names, implied ones included); empty for an unscoped token
    roles: tuple[str, ...] = ()
    #: the token is scoped to the system (``roles`` are the user's there)
    system: bool = False

    @property
    def is_component(self) -> bool:
        return self.component is not None


#: The service types (as in the catalog and in access rules) of the node's
#: mounts; a path in a rule is relative to the mount (``/v3/...`` of
#: ``/identity/v3/...``), except Swift's own ``/v1`` layout.
SERVICE_TYPES: dict[bytes, tuple[str, ...]] = {
    b"identity": ("identity",), b"account": ("account",),
    b"object-store": ("object-store",), b"v1": ("object-store",),
    b"compute": ("compute",), b"network": ("network",), b"image": ("image",),
    b"volume": ("block-storage", "volumev3", "volume"),
}


def path_matches(pattern: str, path: str) -> bool:
    """Whether ``path`` matches an access rule's ``pattern``: ``*`` is one
    path segment, ``**`` any number of them (none too)."""
    want = [s for s in pattern.strip("/").split("/") if s]
    have = [s for s in path.strip("/").split("/") if s]

    def match(i: int, j: int) -> bool:
        while i < len(want):
            if want[i] == "**":
                return any(match(i + 1, k) for k in range(j, len(have) + 1))
            if j >= len(have) or (want[i] != "*" and want[i] != have[j]):
                return False
            i, j = i + 1, j + 1
        return j == len(have)

    return match(0, 0)


def rules_allow(rules: Sequence[tuple[str, str, str]], request: Any) -> bool:
    """Whether one of an application credential's access rules allows
    ``request`` (its mount names the service type)."""
    path = request.path.split(b"?", 1)[0]
    parts = path.split(b"/")
    mount = parts[1] if len(parts) > 1 else b""
    types = SERVICE_TYPES.get(mount, (mount.decode("latin-1"),))
    rest = path if mount == b"v1" else b"/" + b"/".join(parts[2:])
    method = request.method.decode("latin-1")
    text = rest.decode("utf-8", "replace")
    return any(service in types and method == m and path_matches(p, text)
               for service, m, p in rules)


def token_of(request: Any, allow_query: bool = False) -> str | None:
    """The token ``request`` carries; see ``token_from``."""
    return token_from(request.requestHeaders, request.args if allow_query else {}, allow_query)


def token_from(headers: Any, args: Mapping[bytes, Sequence[bytes]],
               allow_query: bool = False) -> str | None:
    """The token of a request with these ``headers`` (twisted ``Headers``)
    and query ``args`` (raw names to values): the last ``X-Auth-Token``
    header, else (``allow_query``) the first ``X-Auth-Token`` query
    parameter; stripped, ``None`` when absent or blank.

    The one place a token is read from a request: ``TokenAuth`` and the
    object store's upload gate (which runs before ``request.args`` is
    parsed) both call it, so they accept and refuse the same tokens.

    @raise errors.Unauthorized: the token is not ASCII.
    """
    given = headers.getRawHeaders(b"x-auth-token")
    raw = given[-1] if given else None
    if raw is None and allow_query:
        values = args.get(b"X-Auth-Token")
        raw = values[0] if values else None
    if raw is None:
        return None
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            raise errors.Unauthorized("Invalid token") from None
    return raw.strip() or None


def user_of(request: Any) -> Principal:
    """The calling user, or 401 when the request has no user token."""
    p = getattr(request, "principal", None)
    if p is None:
        raise errors.Unauthorized("This request needs a user token (X-Auth-Token).")
    if p.is_component:
        raise errors.Forbidden("This request needs a user token, not a service token.")
    return p


def component_of(request: Any) -> Principal:
    """The calling component, or 401/403 unless a service token was given."""
    p = getattr(request, "principal", None)
    if p is None:
        raise errors.Unauthorized("This request needs a service token (X-Auth-Token).")
    if not p.is_component:
        raise errors.Forbidden("This request is only for services (service token).")
    return p


def admin_of(request: Any) -> Principal:
    """The calling administrator, or 401/403."""
    p = user_of(request)
    if not p.is_admin:
        raise errors.Forbidden("Only administrators may do this.")
    return p


class TokenAuth(resource.Resource):
    """Authenticates every request below it, then hands it on."""

    def __init__(self, wrapped: resource.IResource, authenticator: IAuthenticator,
                 allow_query: bool = False,
                 fault_style: Callable[[Any], str | None] | None = None,
                 max_body: int | None = None):
        """``fault_style(request)`` names the error shape of a 401 given
        here (``"keystone"`` under ``/identity/v3``); ``max_body`` is the
        largest request body buffered for the wrapped resource
        (``Root.body_limit``; by default the wrapped resource's own)."""
        super().__init__()
        self._wrapped = wrapped
        self._auth = authenticator
        self._allow_query = allow_query
        self._fault_style = fault_style
        # Streaming request bodies and body limits (``Root.body_sink``,
        # ``Root.body_limit``) pass through.
        self.body_sink = getattr(wrapped, "body_sink", None)
        self.body_limit = getattr(wrapped, "body_limit", None)
        self.max_body = max_body if max_body is not None else getattr(wrapped, "max_body", None)

    def fault_style(self, request: Any) -> str | None:
        """The error style of faults answered for ``request`` below here."""
        return self._fault_style(request) if self._fault_style is not None else None

    def getChildWithDefault(self, path: bytes, request: Any) -> resource.IResource:
        # Put the segment back: the wrapped resource resolves it itself.
        request.postpath.insert(0, request.prepath.pop())
        return util.DeferredResource(defer.ensureDeferred(self._authenticated(request)))

    def render(self, request: Any) -> Any:
        d = defer.ensureDeferred(self._authenticated(request))
        return util.DeferredResource(d).render(request)

    async def _authenticated(self, request: Any) -> resource.IResource:
        request.principal = None
        try:
            token = token_of(request, self._allow_query)
            if token is not None:
                request.principal = await self._auth.authenticate(token)
                rules = request.principal.access_rules
                if rules is not None and not rules_allow(rules, request):
                    raise errors.Unauthorized("The access rules of this application"
                                              " credential do not allow this request.")
        except errors.Fault as e:
            if self._fault_style is not None:
                request.fault_style = self._fault_style(request)
            return FaultResource(e)
        return self._wrapped
