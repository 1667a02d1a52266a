"""Swift storage policies: named block stores, chosen per container."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial import unittest

from snfd import errors
from snfd.config import ConfigError, load_config
from snfd.pithos.blocks import every_name
from snfd.pithos.hashmap import BLOCK_SIZE, block_hash
from snfd.pithos.policies import StoragePolicies, StoragePolicy, file_places
from snfd.pithos.uploads import STREAM_FROM
from snfd.plugin_loader import config_keys, installed
from tests.pithos.test_api import StackCase

SMALL = b"small object data"
LARGE = bytes(range(256)) * ((STREAM_FROM * 2) // 256)  # streamed, not buffered


class PolicyStackCase(StackCase):
    def store(self, name: str) -> Any:
        found = self.stack.backend.policies.find(name)
        assert found is not None
        return found.blocks

    async def names_in(self, name: str) -> set[str]:
        """Every block stored in policy ``name`` (without refreshing ages)."""
        return set(await every_name(self.store(name)))


class StoragePolicyAPITests(PolicyStackCase):
    async def test_info_lists_policies(self):
        """GET /info lists both policies under swift.policies as Swift
        does, the default one marked."""
        r = await self.call("GET", raw=b"/info")
        policies = r.json()["swift"]["policies"]
        self.assertEqual(policies, [
            {"name": "default", "aliases": "default", "default": True},
            {"name": "silver", "aliases": "silver"}])

    async def test_default_policy_answered(self):
        """A container made without X-Storage-Policy is in the default
        policy, and HEAD and GET say so."""
        await self.container("c")
        for method in ("HEAD", "GET"):
            r = await self.call(method, "/c")
            self.assertEqual(r.header("X-Storage-Policy"), "default")

    async def test_chosen_policy_any_case(self):
        """X-Storage-Policy picks the policy, its name in any case; the
        container answers the canonical name."""
        await self.container("s", **{"X-Storage-Policy": "SILVER"})
        r = await self.call("HEAD", "/s")
        self.assertEqual(r.header("X-Storage-Policy"), "silver")

    async def test_unknown_policy(self):
        """An unknown policy is a 400 with Swift's message; nothing is made."""
        r = await self.call("PUT", "/x", headers={"X-Storage-Policy": "gold"})
        self.assertFault(r, 400)
        self.assertEqual(r.body, b"Invalid X-Storage-Policy 'gold'")
        self.assertEqual((await self.call("HEAD", "/x")).code, 404)

    async def test_policy_is_fixed(self):
        """Asking an existing container for another policy is a 409; the
        same policy, or none, is an ordinary 202."""
        await self.container("s", **{"X-Storage-Policy": "silver"})
        r = await self.call("PUT", "/s", headers={"X-Storage-Policy": "default"})
        self.assertFault(r, 409)
        for headers in ({"X-Storage-Policy": "silver"}, {}):
            self.assertEqual((await self.call("PUT", "/s", headers=headers)).code, 202)
        await self.container("d")
        r = await self.call("PUT", "/d", headers={"X-Storage-Policy": "silver"})
        self.assertFault(r, 409)
        self.assertEqual((await self.call("HEAD", "/s")).header("X-Storage-Policy"), "silver")

    async def test_others_see_the_policy(self):
        """A user the container is shared with sees its policy too."""
        await self.container("s", **{"X-Storage-Policy": "silver",
                                     "X-Container-Read": self.bob})
        r = await self.call("HEAD", "/s", token=self.bob_token)
        self.assertEqual(r.code, 204)
        self.assertEqual(r.header("X-Storage-Policy"), "silver")

    async def test_account_usage_per_policy(self):
        """Account HEAD and GET carry containers, objects and bytes per
        policy in use."""
        await self.container("d")
        await self.container("s1", **{"X-Storage-Policy": "silver"})
        await self.container("s2", **{"X-Storage-Policy": "silver"})
        await self.put("/d/a", b"12345")
        await self.put("/s1/a", b"123")
        await self.put("/s2/b", b"1234567")
        for method in ("HEAD", "GET"):
            r = await self.call(method)
            self.assertEqual(r.header("X-Account-Storage-Policy-default-Container-Count"), "1")
            self.assertEqual(r.header("X-Account-Storage-Policy-default-Object-Count"), "1")
            self.assertEqual(r.header("X-Account-Storage-Policy-default-Bytes-Used"), "5")
            self.assertEqual(r.header("X-Account-Storage-Policy-silver-Container-Count"), "2")
            self.assertEqual(r.header("X-Account-Storage-Policy-silver-Object-Count"), "2")
            self.assertEqual(r.header("X-Account-Storage-Policy-silver-Bytes-Used"), "10")


class PlacementTests(PolicyStackCase):
    async def test_objects_stored_in_their_policy(self):
        """Buffered and streamed uploads land in the container's store
        only, and read back."""
        await self.container("s", **{"X-Storage-Policy": "silver"})
        await self.put("/s/small", SMALL)
        await self.put("/s/large", LARGE)
        wanted = {block_hash(SMALL), block_hash(LARGE)}
        self.assertTrue(wanted <= await self.names_in("silver"))
        self.assertFalse(wanted & await self.names_in("default"))
        self.assertEqual((await self.call("GET", "/s/small")).body, SMALL)
        self.assertEqual((await self.call("GET", "/s/large")).body, LARGE)

    async def test_default_policy_unchanged(self):
        """Objects of a default container stay in policy 0's store, the
        node's IBlockStore."""
        await self.container("d")
        await self.put("/d/o", SMALL)
        self.assertIn(block_hash(SMALL), await self.names_in("default"))
        self.assertNotIn(block_hash(SMALL), await self.names_in("silver"))
        self.assertIs(self.stack.blocks, self.store("default"))

    async def test_copy_across_policies(self):
        """COPY and X-Copy-From into a container of another policy copy
        the blocks its store lacks; the copy reads back after the source
        is gone and its blocks collected."""
        await self.container("d")
        await self.container("s", **{"X-Storage-Policy": "silver"})
        await self.put("/d/o", LARGE)
        r = await self.call("COPY", "/d/o", headers={"Destination": "/s/copied"})
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("PUT", "/d/back", headers={"X-Copy-From": "/s/copied"})
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("PUT", "/s/moved", headers={"X-Move-From": "/d/back"})
        self.assertEqual(r.code, 201, r.body)
        self.assertIn(block_hash(LARGE), await self.names_in("silver"))
        self.assertEqual((await self.call("DELETE", "/d/o")).code, 204)
        await self.stack.backend.collect_garbage(-1.0)
        for name in ("/s/copied", "/s/moved"):
            self.assertEqual((await self.call("GET", name)).body, LARGE)

    async def test_hashmap_upload_per_policy(self):
        """Blocks POSTed to a container go to its store; a hashmap names
        them in that container, and in one of another policy (where they
        are brought)."""
        await self.container("s", **{"X-Storage-Policy": "silver"})
        await self.container("d")
        block = b"x" * 1000
        r = await self.call("POST", "/s", headers={"Content-Type": "application/octet-stream"},
                            body=block)
        self.assertEqual(r.json(), [block_hash(block)])
        self.assertIn(block_hash(block), await self.names_in("silver"))
        doc = {"bytes": len(block), "hashes": [block_hash(block)]}
        for path in ("/s/h", "/d/h"):
            r = await self.call("PUT", f"{path}?hashmap&format=json",
                                headers={"Content-Type": "application/json"},
                                body=_json(doc))
            self.assertEqual(r.code, 201, r.body)
            self.assertEqual((await self.call("GET", path)).body, block)
        self.assertIn(block_hash(block), await self.names_in("default"))

    async def test_collection_per_policy(self):
        """Garbage collection removes a policy's blocks that no version in
        its own containers references, and keeps those still used there."""
        await self.container("s", **{"X-Storage-Policy": "silver",
                                     "X-Container-Policy-Versioning": "none"})
        await self.container("d")
        await self.put("/s/gone", b"gone" * 100)
        await self.put("/s/kept", b"kept" * 100)
        await self.call("COPY", "/s/gone", headers={"Destination": "/d/gone"})
        await self.call("DELETE", "/s/gone")
        await self.stack.backend.collect_garbage(-1.0)
        silver = await self.names_in("silver")
        self.assertNotIn(block_hash(b"gone" * 100), silver)
        self.assertIn(block_hash(b"kept" * 100), silver)
        self.assertEqual((await self.call("GET", "/d/gone")).body, b"gone" * 100)
        self.assertEqual((await self.call("GET", "/s/kept")).body, b"kept" * 100)


def _json(doc: Any) -> bytes:
    import json

    return json.dumps(doc).encode()


class _Store:
    def __init__(self, block_size: int = BLOCK_SIZE):
        self.block_size = block_size


class StoragePoliciesTests(unittest.TestCase):
    def test_lookup(self):
        """Names and aliases match in any case; no stored name is policy
        0; an unknown header is a 400, one stored by a dropped policy a
        503."""
        policies = StoragePolicies([StoragePolicy("gold", _Store(), ("fast",)),
                                    StoragePolicy("silver", _Store())], "silver")
        self.assertEqual(policies.find("FAST").name, "gold")
        self.assertEqual(policies.of("").name, "gold")
        self.assertEqual(policies.default.name, "silver")
        self.assertIsNone(policies.chosen(""))
        self.assertRaises(errors.BadRequest, policies.chosen, "bronze")
        self.assertRaises(errors.ServiceUnavailable, policies.of, "bronze")
        self.assertEqual(policies.usage({"": (1, 2, 3), "fast": (1, 1, 1)}),
                         {"gold": (2, 3, 4)})

    def test_refused(self):
        """No policy, a name twice, an unknown default or mixed block
        sizes are refused."""
        self.assertRaises(ValueError, StoragePolicies, [])
        self.assertRaises(ValueError, StoragePolicies,
                          [StoragePolicy("a", _Store()), StoragePolicy("A", _Store())])
        self.assertRaises(ValueError, StoragePolicies, [StoragePolicy("a", _Store())], "b")
        self.assertRaises(ValueError, StoragePolicies,
                          [StoragePolicy("a", _Store()), StoragePolicy("b", _Store(1024))])


class PolicyConfigTests(unittest.TestCase):
    def load(self, **pithos: str) -> Any:
        env = {"SNFD_STATE_DIR": self.mktemp()}
        return load_config(None, config_keys(installed()), environ=env,
                           overrides={("pithos", k): v for k, v in pithos.items()})

    def test_default_policies(self):
        """Without configuration: default (block_path) and silver."""
        section = self.load()["pithos"]
        self.assertEqual([p.name for p in section.storage_policies], ["default", "silver"])
        made: list[str] = []
        policies = StoragePolicies.from_config(section, lambda p: made.append(p) or _Store(),
                                               file_places(section, Path("/state")))
        self.assertEqual(made, ["/state/blocks", "/state/blocks-silver"])
        self.assertEqual(policies.default.name, "default")

    def test_configured_policies(self):
        """Entries name[|alias][:directory]; relative directories are below
        the state directory; the default is chosen by name."""
        section = self.load(storage_policies="gold|fast:/srv/gold, silver:cold bronze",
                            storage_policy_default="FAST")["pithos"]
        made: list[str] = []
        policies = StoragePolicies.from_config(section, lambda p: made.append(p) or _Store(),
                                               file_places(section, Path("/state")))
        self.assertEqual(made, ["/srv/gold", "/state/cold", "/state/blocks-bronze"])
        self.assertEqual(policies.default.name, "gold")
        self.assertEqual(policies.find("fast").aliases, ("fast",))

    def test_bad_policies(self):
        """A bad name, a name twice or an unknown default stop the node
        with one line naming the key."""
        for value in ("go/ld", "gold, GOLD", "a|a"):
            e = self.assertRaises(ConfigError, self.load, storage_policies=value)
            self.assertIn("[pithos] storage_policies:", str(e))
            self.assertNotIn("\n", str(e))
        section = self.load(storage_policy_default="gold")["pithos"]
        e = self.assertRaises(ConfigError, StoragePolicies.from_config, section,
                              lambda p: _Store(), file_places(section, Path("/state")))
        self.assertIn("[pithos] storage_policy_default: no storage policy is named", str(e))
        section = self.load(storage_policies="a:/x b:/x")["pithos"]
        e = self.assertRaises(ConfigError, StoragePolicies.from_config, section,
                              lambda p: _Store(), file_places(section, Path("/state")))
        self.assertIn("[pithos] storage_policies:", str(e))

