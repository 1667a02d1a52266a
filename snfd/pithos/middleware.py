"""Swift's middleware features as filters around the object store's
handlers.

Swift builds TempURL, FormPost, static web, CORS, versioned writes,
symlinks, quotas and bulk operations as WSGI middleware around its proxy.
snfd keeps that shape inside one process: a ``Filter`` sees each ``Call``
(target, method, headers, query) before the handlers do and either answers
it itself, changes what the handlers see (the acting user, headers), or
passes it on with ``await app(call)`` and looks at the ``Reply``.

Filters run in the order ``PithosAPI`` lists them; each one lives in its own
module named for the Swift feature it serves and holds no SQL (it calls the
``Backend``).  A filter that serves a feature Swift advertises in ``GET
/info`` returns its section from ``info()`` (``{}`` for none); the
document lists only what is served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from snfd.pithos.model import ContainerSettings
from snfd.pithos.requests import Call, Reply

Handler = Callable[[Call], Awaitable[Reply]]
"""What answers a call: the next filter, or the handlers themselves."""


class Filter(Protocol):
    """One Swift middleware feature."""

    async def __call__(self, call: Call, app: Handler) -> Reply:
        """Answer ``call``, possibly through ``app`` (the rest of the
        chain).  Raise ``snfd.errors.Fault`` to refuse it."""

    def info(self) -> dict[str, Any]:
        """This feature's sections of ``GET /info`` (name → settings)."""


def chain(filters: list[Filter], app: Handler) -> Handler:
    """``app`` behind ``filters``, the first filter outermost."""
    handler = app
    for f in reversed(filters):
        handler = _bind(f, handler)
    return handler


def _bind(f: Filter, app: Handler) -> Handler:
    async def run(call: Call) -> Reply:
        return await f(call, app)
    return run


async def container_settings(call: Call | None, backend: Any, account: str,
                             container: str) -> ContainerSettings | None:
    """A container's settings (metadata, policy, own sharing), whoever
    the caller is, or ``None`` when it does not exist: what Swift's
    middleware read (its ``get_container_info``) to decide how to serve
    a request, such as static web pages and CORS rules.  A filter acts on
    them and never sends them to the caller as they are, nor lets them
    decide who may read: the handler's own read does.  They may come from
    the node's cache (``Backend.container_settings``) and hold no
    statistics.

    Within one request for an object (``call``), each container is read
    once: such a request changes no container's settings, and the
    filters that read them all run before its write (Swift keeps the same
    per-request cache in its WSGI environment).
    """
    request = call.request if call is not None and call.target.name is not None else None
    return await settings_of(request, backend, account, container)


async def settings_of(request: Any, backend: Any, account: str,
                      container: str) -> ContainerSettings | None:
    """``container_settings`` kept on ``request``, a request for one
    object (``None``: asked afresh)."""
    memo = _memo(request)
    if memo is not None and (account, container) in memo:
        return memo[(account, container)]
    info: ContainerSettings | None = await backend.container_settings(account, container)
    if memo is not None:
        memo[(account, container)] = info
    return info


_MEMO = "_snfd_container_settings"


def _memo(request: Any) -> dict[tuple[str, str], ContainerSettings | None] | None:
    if request is None:
        return None
    # The request's own attributes: a subrequest must not see its parent's.
    found: dict[tuple[str, str], ContainerSettings | None] | None = vars(request).get(_MEMO)
    if found is None:
        found = {}
        setattr(request, _MEMO, found)
    return found


def info_sections(filters: list[Filter]) -> dict[str, Any]:
    """The ``/info`` sections of ``filters``, merged."""
    out: dict[str, Any] = {}
    for f in filters:
        out.update(f.info())
    return out


__all__ = ["Filter", "Handler", "chain", "container_settings", "info_sections", "settings_of"]
