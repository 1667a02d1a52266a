"""The services composed as the daemon composes them, in process: one
token from the identity service opens the object store and the compute
APIs, images are object-store files seen through the image and compute
APIs, and a new upload over an image file keeps it an image."""

from __future__ import annotations

from zope.interface.verify import verifyObject

from snfd.interfaces import (
    IAuthenticator,
    IBlockStore,
    IComputeBackends,
    IObjectStore,
    IQuotaHolder,
)
from snfd.testing.nodecase import NodeTestCase


class ComposedNodeTests(NodeTestCase):
    plugins = ("identity", "pithos", "cyclades")

    def test_providers_verified(self):
        """Each interface a service offers another is provided, and
        provides its interface."""
        for interface in (IAuthenticator, IQuotaHolder, IBlockStore, IObjectStore,
                          IComputeBackends):
            provider = self.providers.get(interface)
            self.assertIsNotNone(provider, interface.__name__)
            self.assertTrue(verifyObject(interface, provider))

    async def test_services_share_one_authenticator(self):
        """A token the identity service issued opens the object store and
        the compute API; a wrong one opens neither."""
        alice, token = await self.user("alice@example.org")
        status, _, _ = await self.request("PUT", f"/object-store/v1/{alice}/box",
                                          token=token)
        self.assertEqual(status, 201)
        status, body, _ = await self.call("GET", "/compute/v2.0/flavors", token=token)
        self.assertEqual((status, body), (200, {"flavors": []}))
        for path in (f"/object-store/v1/{alice}", "/compute/v2.0/flavors"):
            status, _, _ = await self.request("GET", path, token="not-a-token")
            self.assertEqual(status, 401, path)

    async def test_compute_resources_registered_with_shared_holder(self):
        """The storage and compute services registered their resources with
        the identity service's quota holder."""
        _, token = await self.user("ann@example.org")
        status, body, _ = await self.call("GET", "/account/v1.0/resources", token=token)
        self.assertEqual(status, 200)
        for name in ("pithos.diskspace", "cyclades.vm", "cyclades.disk"):
            self.assertIn(name, body)

    async def test_image_keeps_its_metadata_over_new_content(self):
        """An object-store file registered as an image stays the same image,
        with its name and properties, after new content is uploaded over it."""
        alice, token = await self.user("alice@example.org")
        base = f"/object-store/v1/{alice}/images"
        self.assertEqual((await self.request("PUT", base, token=token))[0], 201)
        status, _, _ = await self.request("PUT", f"{base}/disk.img", b"version one",
                                          token=token)
        self.assertEqual(status, 201)
        status, _, headers = await self.request(
            "POST", "/image/v1.0/images/", token=token, headers={
                "X-Image-Meta-Name": "my disk",
                "X-Image-Meta-Location": f"pithos://{alice}/images/disk.img",
                "X-Image-Meta-Disk-Format": "diskdump",
                "X-Image-Meta-Property-OSFamily": "linux"})
        self.assertEqual(status, 200)
        image_id = headers.getRawHeaders("x-image-meta-id")[0]

        status, _, _ = await self.request("PUT", f"{base}/disk.img", b"version two, longer",
                                          token=token)
        self.assertEqual(status, 201)

        status, body, _ = await self.call("GET", f"/image/v2/images/{image_id}",
                                          token=token)
        self.assertEqual(status, 200)
        self.assertEqual((body["name"], body["size"]), ("my disk", len(b"version two, longer")))
        status, body, _ = await self.call("GET", f"/compute/v2.0/images/{image_id}",
                                          token=token)
        self.assertEqual(status, 200)
        self.assertEqual(body["image"]["metadata"].get("osfamily",
                         body["image"]["metadata"].get("OSFAMILY")), "linux")
