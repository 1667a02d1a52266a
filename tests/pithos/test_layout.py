"""Swift's canonical layout: the object store at /v1/<account> beside
/object-store/v1/<account>, and ``[pithos] storage_url_path``."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet import task
from twisted.trial import unittest

from snfd.config import ConfigError, load_config
from snfd.identity.catalog import Catalog
from snfd.pithos.uploads import STREAM_FROM
from snfd.plugin_loader import config_keys, installed
from snfd.plugins.pithos import plugin as pithos_plugin
from snfd.testing.pithos import http, object_store_stack
from tests.pithos.test_api import StackCase

LARGE = b"0123456789abcdef" * (STREAM_FROM // 8)  # streamed, not buffered


class SwiftLayoutTests(StackCase):
    async def test_same_store_at_v1(self):
        """Containers and objects made at /v1/<account> (a streamed upload
        included) are those of /object-store/v1/<account>, and back."""
        v1 = f"{self.stack.url}/v1/{self.alice}"
        r = await http("PUT", f"{v1}/c", token=self.alice_token)
        self.assertEqual(r.code, 201, r.body)
        r = await http("PUT", f"{v1}/c/big", token=self.alice_token, body=LARGE,
                       headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/c/big")).body, LARGE)
        await self.put("/c/small", b"small")
        r = await http("GET", f"{v1}/c/small", token=self.alice_token)
        self.assertEqual(r.body, b"small")
        r = await http("GET", f"{v1}/c?format=json", token=self.alice_token)
        self.assertEqual([o["name"] for o in r.json()], ["big", "small"])
        r = await http("HEAD", v1, token=self.alice_token)
        self.assertEqual((r.code, r.header("X-Account-Container-Count")), (204, "1"))

    async def test_v1_needs_a_token(self):
        """/v1 is behind the same authentication: no token, no account."""
        r = await http("GET", f"{self.stack.url}/v1/{self.alice}")
        self.assertEqual(r.code, 401)

    async def test_auth_advertises_object_store_by_default(self):
        """By default v1 auth's X-Storage-Url is Synnefo's layout."""
        r = await http("GET", f"{self.stack.url}/auth/v1.0",
                       headers={"X-Auth-User": self.alice, "X-Auth-Key": self.alice_token})
        self.assertEqual(r.header("X-Storage-Url"),
                         f"{self.stack.url}/object-store/v1/{self.alice}")


class StorageURLPathTests(unittest.TestCase):
    timeout = 120

    async def test_auth_advertises_v1(self):
        """storage_url_path = v1: v1 auth sends clients to /v1/<account>,
        where the store answers."""
        stack = await object_store_stack(self, pithos_config={"storage_url_path": "/v1/"})
        alice, token = await stack.user("alice@example.org")
        r = await http("GET", f"{stack.url}/auth/v1.0",
                       headers={"X-Auth-User": alice, "X-Auth-Key": token})
        url = r.header("X-Storage-Url")
        self.assertEqual(url, f"{stack.url}/v1/{alice}")
        assert url is not None
        self.assertEqual((await http("PUT", f"{url}/c", token=token)).code, 201)


@attrs.define
class _Membership:
    async def status(self) -> dict[str, Any]:
        return {"members": []}


@attrs.define
class _Node:
    config: Any
    clock: Any = attrs.Factory(task.Clock)
    membership: Any = attrs.Factory(_Membership)
    plugins: dict[str, Any] = attrs.Factory(lambda: {"pithos": pithos_plugin})


class CatalogTests(unittest.TestCase):
    def config(self, **pithos: str) -> Any:
        return load_config(None, config_keys(installed()), environ={},
                           overrides={("pithos", k): v for k, v in pithos.items()})

    async def object_store_url(self, config: Any) -> str:
        catalog = Catalog(_Node(config), "https://cloud.test", "RegionOne")
        entry = next(s for s in await catalog.v3("uuid") if s["type"] == "object-store")
        url: str = entry["endpoints"][0]["url"]
        return url

    async def test_catalog_follows_the_key(self):
        """The Keystone catalog's object-store endpoint is
        /object-store/v1/<uuid> by default, /v1/<uuid> with
        storage_url_path = v1."""
        self.assertEqual(await self.object_store_url(self.config()),
                         "https://cloud.test/object-store/v1/uuid")
        self.assertEqual(await self.object_store_url(self.config(storage_url_path="v1")),
                         "https://cloud.test/v1/uuid")

    def test_bad_value(self):
        """Any other path stops the node with one line naming the key."""
        e = self.assertRaises(ConfigError, self.config, storage_url_path="swift/v1")
        self.assertIn("[pithos] storage_url_path: expected object-store/v1 or v1", str(e))
        self.assertNotIn("\n", str(e))
