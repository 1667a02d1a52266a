"""Swift's canonical layout: the object store at ``/v1/<account>/...``
beside Synnefo's ``/object-store/v1/<account>/...``.

The API's resource reads its paths below a one-segment mount point
(``[b"v1", account, container, *object]``, see
``snfd.pithos.requests.parse_target``); ``VersionMount`` serves it from
the ``v1`` segment itself, by putting that segment back in front of the
path (and of the URI its upload hooks see).  Which of the two URLs the
catalog and v1 auth advertise is ``[pithos] storage_url_path``
(``snfd.pithos.catalog``).
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource

VERSION = b"v1"


class VersionMount(Resource):
    """``wrapped`` (the object store's leaf resource) mounted at ``/v1``."""

    isLeaf = True

    def __init__(self, wrapped: Any):
        super().__init__()
        self._wrapped = wrapped

    def render(self, request: Any) -> Any:
        request.postpath = [VERSION, *request.postpath]
        return self._wrapped.render(request)

    def body_sink(self, request: Any, method: bytes, uri: bytes, length: int | None) -> Any:
        """The wrapped resource's ``body_sink``, for ``/v1/...`` URIs."""
        return self._wrapped.body_sink(request, method, b"/" + VERSION + uri, length)

    def body_limit(self, request: Any, method: bytes, uri: bytes) -> int:
        """The wrapped resource's ``body_limit``, for ``/v1/...`` URIs."""
        limit: int = self._wrapped.body_limit(request, method, b"/" + VERSION + uri)
        return limit


__all__ = ["VersionMount"]
