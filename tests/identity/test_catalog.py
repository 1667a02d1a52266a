"""The service catalog: which services the cluster's live members offer,
plugin declarations over the built-in defaults, and the v3 and v2.0
renderings as keystoneauth reads them."""

from __future__ import annotations

from typing import Any

import attrs
from keystoneauth1.access import service_catalog
from twisted.internet import defer, task
from twisted.trial import unittest

from snfd.identity.catalog import DEFAULTS, Catalog
from snfd.interfaces import CatalogService
from snfd.pithos.catalog import CATALOG as PITHOS_CATALOG

PUBLIC = "https://cloud.test/"
UUID = "7c7a3e0e-4a43-4b4e-9a57-1d6c0f1e2f3a"


@attrs.define
class FakeMembership:
    members: list[dict[str, Any]] = attrs.Factory(list)
    calls: int = 0
    broken: bool = False

    async def status(self) -> dict[str, Any]:
        self.calls += 1
        if self.broken:
            raise OSError("database unreachable")
        return {"node": "a", "members": self.members}


@attrs.define
class FakeNode:
    clock: Any
    membership: FakeMembership
    plugins: dict[str, Any] = attrs.Factory(dict)


@attrs.define
class DeclaringPlugin:
    name: str
    catalog: tuple[CatalogService, ...]


def member(plugins: list[str], alive: bool = True) -> dict[str, Any]:
    return {"id": "n", "plugins": plugins, "alive": alive}


def d(coro):
    return defer.ensureDeferred(coro)


# These stay unit tests of ``Catalog`` on its own setup: they need a
# membership the test controls (dead members, a failing read, the number of
# reads), which a real node cannot give.  The catalog a real node serves is
# pinned over HTTP in test_keystone (PasswordTests, V2Tests, ResourceTests).
class CatalogTests(unittest.TestCase):
    def catalog(self, members: list[dict[str, Any]], own: dict[str, Any] | None = None,
                ttl: float = 5.0) -> tuple[Catalog, FakeNode]:
        self.clock = task.Clock()
        node = FakeNode(self.clock, FakeMembership(members), own or {"identity": object()})
        return Catalog(node, PUBLIC, "RegionOne", ttl=ttl), node

    @defer.inlineCallbacks
    def test_services_of_live_members_and_this_node(self):
        """Plugins of live members and of this node are listed, identity
        first; a dead member's plugins are not."""
        catalog, _ = self.catalog([member(["pithos"]), member(["cyclades"], alive=False)])
        services = yield d(catalog.services())
        self.assertEqual([s.name for s in services],
                         [s.name for s in DEFAULTS["identity"] + PITHOS_CATALOG])

    @defer.inlineCallbacks
    def test_plugin_declaration_overrides_default(self):
        """A plugin's own ``catalog`` attribute replaces the built-in
        entries; unknown plugins without one add nothing."""
        mine = CatalogService("pithos_object-store", "object-store", "storage/v1", "v1")
        catalog, _ = self.catalog([member(["pithos", "mystery"])],
                                  own={"identity": object(),
                                       "pithos": DeclaringPlugin("pithos", (mine,))})
        services = yield d(catalog.services())
        self.assertIn(mine, services)
        self.assertEqual([s for s in services if s.type == "public"], [])
        self.assertEqual(len(services), len(DEFAULTS["identity"]) + 1)

    @defer.inlineCallbacks
    def test_membership_failure_falls_back_to_this_node(self):
        """When the cluster state cannot be read, this node's own services
        are listed."""
        catalog, node = self.catalog([member(["pithos"])])
        node.membership.broken = True
        services = yield d(catalog.services())
        self.assertEqual(tuple(services), DEFAULTS["identity"])

    @defer.inlineCallbacks
    def test_cached_for_ttl(self):
        """The cluster is asked again only after ``ttl`` seconds."""
        catalog, node = self.catalog([member(["identity"])], ttl=5.0)
        yield d(catalog.services())
        node.membership.members.append(member(["pithos"]))
        services = yield d(catalog.services())
        self.assertEqual(node.membership.calls, 1)
        self.assertNotIn("pithos_public", [s.name for s in services])
        self.clock.advance(5)
        services = yield d(catalog.services())
        self.assertEqual(node.membership.calls, 2)
        self.assertIn("pithos_public", [s.name for s in services])

    @defer.inlineCallbacks
    def test_v3_shape(self):
        """v3 entries have stable ids and one endpoint per interface with the
        region; object-store URLs end with the user's uuid."""
        catalog, _ = self.catalog([member(["identity", "pithos", "cyclades", "archip"])])
        rendered = yield d(catalog.v3(UUID))
        again = yield d(self.catalog([member(["pithos", "cyclades"])])[0].v3(UUID))
        self.assertEqual(rendered, again)
        identity = rendered[0]
        self.assertEqual((identity["name"], identity["type"]), ("astakos_identity", "identity"))
        self.assertEqual(set(identity), {"id", "type", "name", "endpoints"})
        self.assertEqual([e["interface"] for e in identity["endpoints"]],
                         ["public", "internal", "admin"])
        self.assertEqual(identity["endpoints"][0]["url"], "https://cloud.test/identity/v3")
        self.assertEqual(identity["endpoints"][0]["region"], "RegionOne")
        self.assertEqual(identity["endpoints"][0]["region_id"], "RegionOne")
        ids = [e["id"] for s in rendered for e in s["endpoints"]]
        self.assertEqual(len(ids), len(set(ids)))
        types = [s["type"] for s in rendered]
        self.assertEqual(types.count("image"), 1)
        self.assertEqual(types.count("block-storage"), 1)
        self.assertEqual(types.count("volumev3"), 1)
        self.assertEqual(types.count("network"), 1)
        sc = service_catalog.ServiceCatalogV3(rendered)
        self.assertEqual(sc.url_for(service_type="object-store", interface="public"),
                         f"https://cloud.test/object-store/v1/{UUID}")
        self.assertEqual(sc.url_for(service_type="image", interface="admin"),
                         "https://cloud.test/image")
        # OpenStack clients (v3) get Nova's dialect, Synnefo's tokens (v2) Synnefo's.
        self.assertEqual(sc.url_for(service_type="compute", region_name="RegionOne"),
                         "https://cloud.test/compute/v2.1")
        public = yield d(catalog.v3(None))
        store = next(s for s in public if s["type"] == "object-store")
        self.assertEqual(store["endpoints"][0]["url"], "https://cloud.test/object-store/v1")

    @defer.inlineCallbacks
    def test_v2_shape(self):
        """v2.0 entries are Synnefo's (name, type, endpoints_links, versionId,
        publicURL, SNF:uiURL) plus the fields keystoneauth reads; URLs carry
        no account."""
        catalog, _ = self.catalog([member(["identity", "pithos", "cyclades"])])
        rendered = yield d(catalog.v2(UUID))
        by_name = {(s["name"], s["type"]): s for s in rendered}
        identity = by_name[("astakos_identity", "identity")]
        self.assertEqual(identity["endpoints_links"], [])
        [endpoint] = identity["endpoints"]
        self.assertEqual(endpoint["versionId"], "v2.0")
        self.assertEqual(endpoint["publicURL"], "https://cloud.test/identity/v2.0")
        self.assertEqual(endpoint["adminURL"], endpoint["publicURL"])
        self.assertEqual(endpoint["internalURL"], endpoint["publicURL"])
        self.assertEqual(endpoint["SNF:uiURL"], "https://cloud.test/ui")
        self.assertEqual(endpoint["region"], "RegionOne")
        store = by_name[("pithos_object-store", "object-store")]["endpoints"][0]
        self.assertEqual(store["publicURL"], "https://cloud.test/object-store/v1")
        plankton = by_name[("cyclades_plankton", "image")]["endpoints"][0]
        self.assertEqual(plankton["publicURL"], "https://cloud.test/image/v1.0")
        self.assertNotIn(("cyclades_volume", "volume"), by_name)
        weblogin = by_name[("astakos_weblogin", "astakos_weblogin")]["endpoints"][0]
        self.assertEqual(weblogin["SNF:webloginURL"], "https://cloud.test/ui")
        sc = service_catalog.ServiceCatalogV2(rendered)
        self.assertEqual(sc.url_for(service_type="compute", interface="publicURL"),
                         "https://cloud.test/compute/v2.0")
        self.assertEqual(sc.url_for(service_type="account", interface="adminURL"),
                         "https://cloud.test/account/v1.0")
