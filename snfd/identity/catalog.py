"""The service catalog: which services the cluster offers, at which URLs.

A service is in the catalog when a live member of the cluster (or this
node) runs the plugin that provides it.  A plugin says what it provides
with an optional ``catalog`` attribute, a tuple of ``CatalogService``
(Synnefo's names and types), or with ``catalog_for(section)`` when its
entries depend on its configuration section (read from this node's
configuration, which holds every installed plugin's section); the
identity service's own are ``DEFAULTS``.

Two renderings:

- ``v3(user_uuid)``: the Keystone v3 ``catalog`` of a token reply, one
  endpoint per interface (public, internal, admin; all the same URL).
  Services marked ``per_account`` (Pithos object-store) end with
  ``/<user uuid>`` there, the storage URL Swift clients expect.
- ``v2(user_uuid)``: Synnefo's ``serviceCatalog`` of ``POST
  /identity/v2.0/tokens``, with the ``adminURL``/``internalURL``/
  ``region``/``id`` fields keystoneauth reads as well.  URLs carry no
  account there: kamaki appends it itself.
"""

from __future__ import annotations

import functools
import uuid as uuid_module
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.logger import Logger

from snfd import plugin_loader
from snfd.interfaces import CatalogService

log = Logger(namespace="snfd.identity.catalog")

INTERFACES = ("public", "internal", "admin")

# Endpoint and service ids are uuid5 values in this namespace, so they stay
# the same on every node and across restarts.
_NAMESPACE = uuid_module.uuid5(uuid_module.NAMESPACE_URL, "snfd:identity:catalog")


# Keystone v3 clients find the identity API at identity/v3; Synnefo clients
# (kamaki, v2.0 tokens) expect identity/v2.0.  Every other service declares
# its own entries (its plugin's ``catalog``).
DEFAULTS: dict[str, tuple[CatalogService, ...]] = {
    "identity": (
        CatalogService("astakos_identity", "identity", "identity/v3", "v3", catalogs=("v3",)),
        CatalogService("astakos_identity", "identity", "identity/v2.0", "v2.0",
                       catalogs=("v2",)),
        CatalogService("astakos_account", "account", "account/v1.0", "v1.0"),
        CatalogService("astakos_weblogin", "astakos_weblogin", "ui", ""),
    ),
}

# The catalog lists identity first (clients print it in this order), then
# the other plugins by name.
_FIRST = ("identity", "pithos", "cyclades")


@functools.lru_cache(maxsize=1024)
def stable_id(*parts: str) -> str:
    """A 32-hex id derived from ``parts``, the same on every node."""
    return uuid_module.uuid5(_NAMESPACE, "\x00".join(parts)).hex


class Catalog:
    """The catalog of the running cluster, read from its membership.

    ``node`` gives ``membership.status()`` (the plugins of live members)
    and ``plugins`` (this node's own); ``public_url`` is the base of every
    URL; ``region`` the region of every endpoint.  The set of services is
    cached for ``ttl`` seconds of the node's clock.
    """

    def __init__(self, node: Any, public_url: str, region: str, *, ttl: float = 5.0):
        self._node = node
        self.public_url = public_url.rstrip("/")
        self.region = region
        self._ttl = ttl
        self._declared: dict[str, tuple[CatalogService, ...]] | None = None
        self._cached: tuple[float, list[CatalogService]] | None = None

    # -- which services ----------------------------------------------------

    def _declarations(self) -> dict[str, tuple[CatalogService, ...]]:
        """Each known plugin's ``catalog``: declared by the plugin, else the
        built-in default.  Installed plugins are looked up once."""
        if self._declared is None:
            plugins: dict[str, Any] = {}
            try:
                plugins.update(plugin_loader.installed())
            except plugin_loader.PluginError as e:
                log.warn("catalog: installed plugins unreadable: {e}", e=e)
            plugins.update(getattr(self._node, "plugins", None) or {})
            declared = dict(DEFAULTS)
            sections = getattr(getattr(self._node, "config", None), "sections", None) or {}
            for name, plugin in plugins.items():
                entries = getattr(plugin, "catalog", None)
                configured = getattr(plugin, "catalog_for", None)
                if configured is not None and name in sections:
                    entries = configured(sections[name])
                if entries is not None:
                    declared[name] = tuple(entries)
            self._declared = declared
        return self._declared

    async def plugin_names(self) -> set[str]:
        """Plugins running on a live member of the cluster or on this node."""
        names = set(getattr(self._node, "plugins", None) or {})
        try:
            status = await self._node.membership.status()
        except Exception as e:
            log.warn("catalog: cluster membership unreadable, listing this node's"
                     " services only: {e}", e=" ".join(str(e).split()))
            return names
        for member in status.get("members", ()):
            if member.get("alive"):
                names.update(member.get("plugins") or ())
        return names

    async def services(self) -> list[CatalogService]:
        """The catalog entries of the services enabled in the cluster."""
        clock = self._node.clock
        now = clock.seconds()
        if self._cached is not None and now - self._cached[0] < self._ttl:
            return list(self._cached[1])
        names = await self.plugin_names()
        declared = self._declarations()
        order = [n for n in _FIRST if n in names] + sorted(names - set(_FIRST))
        found: list[CatalogService] = []
        for name in order:
            found.extend(declared.get(name, ()))
        self._cached = (now, found)
        return list(found)

    # -- renderings ----------------------------------------------------------

    async def v3(self, user_uuid: str | None = None) -> list[dict[str, Any]]:
        """The Keystone v3 catalog for ``user_uuid``."""
        return render_v3(await self.services(), self.public_url, self.region, user_uuid)

    async def v2(self, user_uuid: str | None = None) -> list[dict[str, Any]]:
        """Synnefo's v2.0 ``serviceCatalog`` (``None``: the public one)."""
        return render_v2(await self.services(), self.public_url, self.region)


def _url(public_url: str, path: str) -> str:
    return f"{public_url.rstrip('/')}/{path.strip('/')}".rstrip("/")


def render_v3(services: Iterable[CatalogService], public_url: str, region: str,
              user_uuid: str | None) -> list[dict[str, Any]]:
    """Keystone v3 catalog entries: ``{id, type, name, endpoints: [{id,
    interface, region, region_id, url}]}``."""
    out = []
    for s in _shown(services, "v3"):
        url = _url(public_url, s.path)
        if s.per_account and user_uuid:
            url = f"{url}/{user_uuid}"
        out.append({
            "id": stable_id("service", s.name, s.type),
            "type": s.type,
            "name": s.name,
            "endpoints": [{
                "id": stable_id("endpoint", s.name, s.type, interface),
                "interface": interface,
                "region": region,
                "region_id": region,
                "url": url,
            } for interface in INTERFACES],
        })
    return out


def render_v2(services: Iterable[CatalogService], public_url: str,
              region: str) -> list[dict[str, Any]]:
    """Synnefo's v2.0 catalog entries: ``{name, type, endpoints_links: [],
    endpoints: [{id, region, versionId, publicURL, internalURL, adminURL,
    SNF:uiURL}]}`` (the weblogin entry adds ``SNF:webloginURL``)."""
    ui_url = _url(public_url, "ui")
    out = []
    for s in _shown(services, "v2"):
        url = _url(public_url, s.path)
        endpoint = {
            "id": stable_id("endpoint", s.name, s.type, "v2"),
            "region": region,
            "versionId": s.version,
            "publicURL": url,
            "internalURL": url,
            "adminURL": url,
            "SNF:uiURL": ui_url,
        }
        if s.type == "astakos_weblogin":
            endpoint["SNF:webloginURL"] = url
        out.append({"name": s.name, "type": s.type, "endpoints": [endpoint],
                    "endpoints_links": []})
    return out


def _shown(services: Iterable[CatalogService], rendering: str) -> Sequence[CatalogService]:
    seen: set[tuple[str, str]] = set()
    shown = []
    for s in services:
        key = (s.name, s.type)
        if rendering in s.catalogs and key not in seen:
            seen.add(key)
            shown.append(s)
    return shown
