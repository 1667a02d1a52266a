"""The image registry (``snfd.cyclades.images``) over a served object store
on a real PostgreSQL: registration and its validation, visibility through
the object store's sharing (owner, members, groups, directories, public),
listing filters and order, updates, members, unregistering, and the
compute view of an image."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.trial import unittest

from snfd import errors
from snfd.cyclades.image_api import compute_image
from snfd.cyclades.images import Image, ImageRegistry, location_of, parse_location
from snfd.pithos.model import Permissions
from snfd.pithos.objects import PithosObjects
from snfd.testing.pithos import HTTPReply, http, object_store_stack

NOW = 1_700_000_000.0
DATA = b"a disk image, in a few bytes"


class ImageCase(unittest.TestCase):
    """A served object store with users alice, bob and carol, and an image
    registry whose clock stands at ``NOW``."""

    timeout = 120

    def setUp(self):
        return defer.ensureDeferred(self._setUp())

    async def _setUp(self) -> None:
        self.stack = await object_store_stack(self)
        self.alice, self.alice_token = await self.stack.user("alice@example.org")
        self.bob, self.bob_token = await self.stack.user("bob@example.org")
        self.carol, self.carol_token = await self.stack.user("carol@example.org")
        self.tokens = {self.alice: self.alice_token, self.bob: self.bob_token,
                       self.carol: self.carol_token}
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.objects = PithosObjects(self.stack.backend)
        self.registry = ImageRegistry(self.objects, self.clock, system_owner=self.carol)

    async def pithos(self, method: str, user: str, path: str, token_of: str | None = None,
                     headers: dict[str, str] | None = None,
                     body: bytes | None = None) -> HTTPReply:
        """A request to ``<user's account>/<path>`` with the token of
        ``token_of`` (default: the account's owner)."""
        token = self.tokens[token_of or user]
        url = self.stack.account_url(user) + ("/" + path if path else "")
        return await http(method, url, token=token, headers=headers, body=body)

    async def upload(self, user: str, path: str = "images/debian.img", data: bytes = DATA,
                     content_type: str = "application/octet-stream") -> HTTPReply:
        """Store a file (creating its container); its HEAD reply."""
        container = path.split("/", 1)[0]
        r = await self.pithos("PUT", user, container)
        self.assertIn(r.code, (201, 202), r.body)
        r = await self.pithos("PUT", user, path, headers={"Content-Type": content_type},
                              body=data)
        self.assertEqual(r.code, 201, r.body)
        r = await self.pithos("HEAD", user, path)
        self.assertEqual(r.code, 200)
        return r

    async def register(self, user: str, path: str = "images/debian.img",
                       data: bytes = DATA, **meta: Any) -> Image:
        """Upload a file and register it; the image."""
        await self.upload(user, path, data)
        meta.setdefault("name", path.rsplit("/", 1)[-1])
        return await self.registry.register(user, f"pithos://{user}/{path}", meta)


class LocationTests(unittest.TestCase):
    def test_round_trip(self):
        """A location quotes its parts (keeping ``/`` in the path) and
        parses back to them."""
        loc = location_of("acct", "my images", "dir/ελ ληνικά.img")
        self.assertEqual(loc, "pithos://acct/my%20images/dir/%CE%B5%CE%BB%20%CE%BB%CE%B7%CE"
                              "%BD%CE%B9%CE%BA%CE%AC.img")
        self.assertEqual(parse_location(loc), ("acct", "my images", "dir/ελ ληνικά.img"))

    def test_bad_locations(self):
        """Anything but ``pithos://<account>/<container>/<path>`` is a
        BadRequest."""
        for bad in ("http://a/b/c", "pithos://a/b", "pithos://a//c", "pithos:///b/c",
                    "pithos://a/b/", "pithos://a%2Fx/b/c", "pithos://a/b/%ff", None, 7):
            with self.assertRaises(errors.BadRequest, msg=repr(bad)):
                parse_location(bad)


class RegisterTests(ImageCase):
    async def test_register(self):
        """Registering a file makes an image whose id, checksum, mapfile
        and size are the file's uuid, hash and bytes, with the default
        formats, AVAILABLE, private, created now."""
        head = await self.upload(self.alice)
        image = await self.registry.register(
            self.alice, f"pithos://{self.alice}/images/debian.img",
            {"name": "Debian", "properties": {"OS": "debian", "users": "root"}})
        self.assertEqual(image.id, head.header("X-Object-UUID"))
        self.assertEqual(image.checksum, head.header("X-Object-Hash"))
        self.assertEqual(image.mapfile, head.header("X-Object-Hash"))
        self.assertEqual((image.name, image.owner, image.size),
                         ("Debian", self.alice, len(DATA)))
        self.assertEqual(image.location, f"pithos://{self.alice}/images/debian.img")
        self.assertEqual((image.disk_format, image.container_format, image.status),
                         ("diskdump", "bare", "AVAILABLE"))
        self.assertEqual((image.is_public, image.members, image.is_snapshot),
                         (False, (), False))
        self.assertEqual(image.properties, {"OS": "debian", "users": "root"})
        self.assertEqual(image.created_at,
                         datetime.datetime.fromtimestamp(NOW, datetime.UTC))
        self.assertEqual(await self.registry.get(self.alice, image.id), image)

    async def test_size_and_checksum_must_match(self):
        """A size or checksum other than the file's is a 400; the right
        ones (size as text too) register."""
        head = await self.upload(self.alice)
        loc = f"pithos://{self.alice}/images/debian.img"
        for meta in ({"size": len(DATA) + 1}, {"size": "12x"}, {"checksum": "0" * 64}):
            with self.assertRaises(errors.BadRequest, msg=repr(meta)):
                await self.registry.register(self.alice, loc, {"name": "x", **meta})
        image = await self.registry.register(
            self.alice, loc, {"name": "x", "size": str(len(DATA)),
                              "checksum": head.header("X-Object-Hash")})
        self.assertEqual(image.size, len(DATA))

    async def test_invalid_metadata(self):
        """An explicit id, a missing name, an unknown format, store or key
        are 400s and register nothing."""
        await self.upload(self.alice)
        loc = f"pithos://{self.alice}/images/debian.img"
        for meta in ({"name": "x", "id": "mine"}, {}, {"name": ""},
                     {"name": "x", "disk_format": "qcow2"},
                     {"name": "x", "container_format": "tar"},
                     {"name": "x", "store": "s3"}, {"name": "x", "colour": "red"},
                     {"name": "x", "properties": {"k": "v" * 300}},
                     {"name": "x", "properties": {"k" * 120: "v"}},
                     {"name": "x", "properties": {f"k{i}": "v" for i in range(40)}}):
            with self.assertRaises(errors.BadRequest, msg=repr(meta)):
                await self.registry.register(self.alice, loc, meta)
        self.assertEqual(await self.registry.list(self.alice), [])

    async def test_missing_location_or_file(self):
        """A location that is not a pithos:// URL is a 400; a missing file
        a 404."""
        with self.assertRaises(errors.BadRequest):
            await self.registry.register(self.alice, "", {"name": "x"})
        with self.assertRaises(errors.NotFound):
            await self.registry.register(self.alice, f"pithos://{self.alice}/images/none",
                                         {"name": "x"})

    async def test_file_of_another_user(self):
        """Registering another user's file is a 404 while that user does not
        share it, a 403 once it is readable."""
        await self.upload(self.alice)
        loc = f"pithos://{self.alice}/images/debian.img"
        with self.assertRaises(errors.NotFound):
            await self.registry.register(self.bob, loc, {"name": "x"})
        r = await self.pithos("POST", self.alice, "images/debian.img",
                              headers={"X-Object-Sharing": f"read={self.bob}"})
        self.assertEqual(r.code, 202, r.body)
        with self.assertRaises(errors.Forbidden):
            await self.registry.register(self.bob, loc, {"name": "x"})

    async def test_reregister_updates(self):
        """Registering a file again keeps its id and registration time and
        merges the new metadata."""
        first = await self.register(self.alice, name="one", properties={"a": "1"})
        self.clock.advance(60)
        again = await self.registry.register(
            self.alice, first.location, {"name": "two", "properties": {"b": "2"}})
        self.assertEqual((again.id, again.created_at), (first.id, first.created_at))
        self.assertEqual((again.name, again.properties), ("two", {"a": "1", "b": "2"}))

    async def test_metadata_hidden_from_object_store(self):
        """Image metadata is not shown as object metadata, and a metadata
        replacement through the object store keeps the image."""
        image = await self.register(self.alice, properties={"OS": "debian"})
        r = await self.pithos("HEAD", self.alice, "images/debian.img")
        shown = [k for k, _ in r.headers.getAllRawHeaders() if b"lankton" in k.lower()]
        self.assertEqual(shown, [])
        r = await self.pithos("POST", self.alice, "images/debian.img",
                              headers={"X-Object-Meta-Colour": "blue"})
        self.assertEqual(r.code, 202, r.body)
        self.assertEqual((await self.registry.get(self.alice, image.id)).properties,
                         {"OS": "debian"})

    async def test_snapshot_and_system_images(self):
        """A file of the ``snapshots`` container is a snapshot; images of
        the system owner are system images."""
        snap = await self.register(self.alice, "snapshots/vol1")
        self.assertTrue(snap.is_snapshot)
        system = await self.register(self.carol, "images/base.img")
        self.assertTrue(self.registry.is_system(system))
        self.assertFalse(self.registry.is_system(snap))


class FileChangeTests(ImageCase):
    async def test_new_content_keeps_the_image(self):
        """Uploading new content over an image file (a plain PUT, which
        replaces the file's object metadata) keeps it the same image, with
        its name, properties, members and registration time; its size and
        checksum become the new content's."""
        image = await self.register(self.alice, properties={"OS": "debian"},
                                    disk_format="extdump")
        await self.registry.add_member(self.alice, image.id, self.bob)
        self.clock.advance(30)
        new = b"a newer disk image, somewhat longer than the first"
        r = await self.pithos("PUT", self.alice, "images/debian.img", body=new,
                              headers={"X-Object-Meta-Colour": "red"})
        self.assertEqual(r.code, 201, r.body)
        head = await self.pithos("HEAD", self.alice, "images/debian.img")
        now = await self.registry.get(self.alice, image.id)
        self.assertEqual((now.id, now.name, now.properties, now.disk_format, now.members,
                          now.created_at),
                         (image.id, image.name, {"OS": "debian"}, "extdump", (self.bob,),
                          image.created_at))
        self.assertEqual((now.size, now.checksum), (len(new), head.header("X-Object-Hash")))
        self.assertNotEqual(now.checksum, image.checksum)
        self.assertEqual([i.id for i in await self.registry.list(self.bob)], [image.id])

    async def test_moved_file_stays_an_image_deleted_does_not(self):
        """A moved image file is the same image at its new location; once
        the file is deleted the image is gone, and a file uploaded again at
        its path is not an image."""
        image = await self.register(self.alice)
        r = await self.pithos("PUT", self.alice, "images/moved.img",
                              headers={"X-Move-From": "/images/debian.img"})
        self.assertEqual(r.code, 201, r.body)
        moved = await self.registry.get(self.alice, image.id)
        self.assertEqual((moved.name, moved.location),
                         (image.name, f"pithos://{self.alice}/images/moved.img"))
        r = await self.pithos("DELETE", self.alice, "images/moved.img")
        self.assertEqual(r.code, 204, r.body)
        with self.assertRaises(errors.NotFound):
            await self.registry.get(self.alice, image.id)
        await self.upload(self.alice, "images/moved.img")
        self.assertEqual(await self.registry.list(self.alice), [])

    async def test_register_file(self):
        """An operator's local file is stored in the owner's container
        (created if needed) and registered; registering it again keeps the
        image."""
        path = Path(self.mktemp())
        path.write_bytes(DATA * 3)
        image = await self.registry.register_file(self.carol, path, "system",
                                                  {"name": "Base", "is_public": True})
        self.assertEqual((image.name, image.size, image.is_public, image.location),
                         ("Base", len(DATA) * 3, True,
                          location_of(self.carol, "system", path.name)))
        self.assertTrue(self.registry.is_system(image))
        again = await self.registry.register_file(self.carol, path, "system",
                                                  {"name": "Base 2", "is_public": True})
        self.assertEqual((again.id, again.name), (image.id, "Base 2"))
        self.assertEqual([i.id for i in await self.registry.list(self.bob)], [image.id])


class VisibilityTests(ImageCase):
    async def test_private_image(self):
        """A private image is the owner's alone: others get 404, and unknown
        ids or files that are not images are 404s too."""
        image = await self.register(self.alice)
        self.assertEqual((await self.registry.get(self.alice, image.id)).id, image.id)
        with self.assertRaises(errors.NotFound):
            await self.registry.get(self.bob, image.id)
        head = await self.upload(self.alice, "images/plain.txt")
        for missing in (head.header("X-Object-UUID"), "no-such-id", ""):
            with self.assertRaises(errors.NotFound):
                await self.registry.get(self.alice, missing)
        self.assertEqual(await self.registry.list(self.bob), [])

    async def test_public_image(self):
        """A public image is visible to every user and listed for them."""
        image = await self.register(self.alice, is_public=True)
        self.assertTrue(image.is_public)
        self.assertEqual((await self.registry.get(self.bob, image.id)).name, "debian.img")
        self.assertEqual([i.id for i in await self.registry.list(self.carol)], [image.id])

    async def test_member_sees_image(self):
        """A member reads the image (and the file, through the object
        store); a stranger does not."""
        image = await self.register(self.alice)
        await self.registry.add_member(self.alice, image.id, self.bob)
        self.assertEqual((await self.registry.get(self.bob, image.id)).members, (self.bob,))
        self.assertEqual([i.id for i in await self.registry.list(self.bob)], [image.id])
        r = await self.pithos("GET", self.alice, "images/debian.img", token_of=self.bob)
        self.assertEqual((r.code, r.body), (200, DATA))
        with self.assertRaises(errors.NotFound):
            await self.registry.get(self.carol, image.id)
        self.assertEqual(await self.registry.list(self.carol), [])

    async def test_group_member_sees_image(self):
        """Sharing with one of the owner's groups shows the image to the
        group's members."""
        image = await self.register(self.alice)
        r = await self.pithos("POST", self.alice, "",
                              headers={"X-Account-Group-Friends": self.bob})
        self.assertEqual(r.code, 204, r.body)
        await self.registry.set_members(self.alice, image.id, [f"{self.alice}:friends"])
        self.assertEqual([i.id for i in await self.registry.list(self.bob)], [image.id])
        self.assertEqual((await self.registry.get(self.bob, image.id)).id, image.id)
        self.assertEqual(await self.registry.list(self.carol), [])

    async def test_directory_sharing(self):
        """An image without sharing of its own is visible through a shared
        directory object above it; its own sharing, once set, decides."""
        await self.pithos("PUT", self.alice, "images")
        r = await self.pithos("PUT", self.alice, "images/dir",
                              headers={"Content-Type": "application/directory",
                                       "X-Object-Sharing": f"read={self.bob}"}, body=b"")
        self.assertEqual(r.code, 201, r.body)
        image = await self.register(self.alice, "images/dir/disk.img")
        self.assertEqual((await self.registry.get(self.bob, image.id)).id, image.id)
        self.assertEqual([i.id for i in await self.registry.list(self.bob)], [image.id])
        await self.registry.add_member(self.alice, image.id, self.carol)
        with self.assertRaises(errors.NotFound):
            await self.registry.get(self.bob, image.id)
        self.assertEqual(await self.registry.list(self.bob), [])
        self.assertEqual([i.id for i in await self.registry.list(self.carol)], [image.id])


class ListTests(ImageCase):
    async def _three(self) -> tuple[Image, Image, Image]:
        a = await self.register(self.alice, "images/a", b"x" * 10, name="beta",
                                disk_format="extdump")
        self.clock.advance(10)
        b = await self.register(self.alice, "images/b", b"x" * 20, name="alpha",
                                container_format="ovf")
        self.clock.advance(10)
        c = await self.register(self.bob, "images/c", b"x" * 30, name="gamma",
                                is_public=True, status="error")
        return a, b, c

    async def test_default_order_and_sources(self):
        """A listing has the user's own and public images, newest
        registration first."""
        a, b, c = await self._three()
        self.assertEqual([i.id for i in await self.registry.list(self.alice)],
                         [c.id, b.id, a.id])
        self.assertEqual([i.id for i in await self.registry.list(self.carol)], [c.id])

    async def test_filters(self):
        """name, formats, status (any case) and size bounds filter the
        listing; an unknown filter or a bad size is a 400."""
        a, b, c = await self._three()

        async def ids(**filters: str) -> list[str]:
            return sorted(i.id for i in await self.registry.list(self.alice, filters=filters))

        self.assertEqual(await ids(name="alpha"), [b.id])
        self.assertEqual(await ids(disk_format="extdump"), [a.id])
        self.assertEqual(await ids(container_format="ovf"), [b.id])
        self.assertEqual(await ids(status="Error"), [c.id])
        self.assertEqual(await ids(size_min="20"), sorted([b.id, c.id]))
        self.assertEqual(await ids(size_min="11", size_max="20"), [b.id])
        self.assertEqual(await ids(owner=self.bob), [c.id])
        for bad in ({"size_min": "big"}, {"colour": "red"}):
            with self.assertRaises(errors.BadRequest):
                await self.registry.list(self.alice, filters=bad)

    async def test_sort(self):
        """sort_key and sort_dir order the listing; others are 400s."""
        a, b, c = await self._three()

        async def ids(key: str, direction: str) -> list[str]:
            return [i.id for i in await self.registry.list(self.alice, sort_key=key,
                                                           sort_dir=direction)]

        self.assertEqual(await ids("name", "asc"), [b.id, a.id, c.id])
        self.assertEqual(await ids("size", "desc"), [c.id, b.id, a.id])
        self.assertEqual(await ids("created_at", "asc"), [a.id, b.id, c.id])
        for key, direction in (("colour", "asc"), ("name", "up")):
            with self.assertRaises(errors.BadRequest):
                await self.registry.list(self.alice, sort_key=key, sort_dir=direction)

    async def test_shared_with(self):
        """shared_with lists the non-public images a member shares with the
        caller."""
        a, b, c = await self._three()
        await self.registry.add_member(self.alice, a.id, self.carol)
        self.assertEqual([i.id for i in await self.registry.shared_with(self.carol, self.alice)],
                         [a.id])
        self.assertEqual(await self.registry.shared_with(self.carol, self.bob), [])


class UpdateTests(ImageCase):
    async def test_update_merges_properties(self):
        """An update changes the fields given and merges properties: new
        keys added, given ones replaced, empty values removed."""
        image = await self.register(self.alice, properties={"a": "1", "b": "2", "c": "3"})
        self.clock.advance(5)
        updated = await self.registry.update(
            self.alice, image.id, {"name": "renamed", "disk_format": "ntfsdump",
                                   "status": "unavailable", "owner": self.bob,
                                   "properties": {"b": "two", "c": "", "d": "4"}})
        self.assertEqual(updated.properties, {"a": "1", "b": "two", "d": "4"})
        self.assertEqual((updated.name, updated.disk_format, updated.status, updated.owner),
                         ("renamed", "ntfsdump", "UNAVAILABLE", self.alice))
        self.assertEqual(updated.created_at, image.created_at)
        self.assertGreaterEqual(updated.updated_at, image.updated_at)
        self.assertEqual(await self.registry.get(self.alice, image.id), updated)

    async def test_public_toggle(self):
        """is_public puts ``*`` in the file's read sharing, which the object
        store lets absorb the other entries: a public image has no members;
        made private again, it has none either."""
        image = await self.register(self.alice)
        await self.registry.add_member(self.alice, image.id, self.bob)
        public = await self.registry.update(self.alice, image.id, {"is_public": "True"})
        self.assertEqual((public.is_public, public.members), (True, ()))
        info = await self.stack.backend.object(self.alice, self.alice, "images", "debian.img")
        self.assertEqual(info.sharing, Permissions(read=("*",)))
        private = await self.registry.update(self.alice, image.id, {"is_public": False})
        self.assertEqual((private.is_public, private.members), (False, ()))
        with self.assertRaises(errors.NotFound):
            await self.registry.get(self.bob, image.id)

    async def test_invalid_updates(self):
        """Unknown or read-only keys, an empty name and bad values are 400s."""
        image = await self.register(self.alice)
        for meta in ({"checksum": "x"}, {"size": 3}, {"name": ""}, {"status": "gone"},
                     {"container_format": "zip"}, {"properties": "x"}):
            with self.assertRaises(errors.BadRequest, msg=repr(meta)):
                await self.registry.update(self.alice, image.id, meta)

    async def test_only_the_owner_changes(self):
        """A member may read but not change an image (403); a stranger gets
        404."""
        image = await self.register(self.alice)
        await self.registry.add_member(self.alice, image.id, self.bob)
        for change in (lambda u: self.registry.update(u, image.id, {"name": "x"}),
                       lambda u: self.registry.unregister(u, image.id),
                       lambda u: self.registry.add_member(u, image.id, self.carol),
                       lambda u: self.registry.set_members(u, image.id, [])):
            with self.assertRaises(errors.Forbidden):
                await change(self.bob)
            with self.assertRaises(errors.NotFound):
                await change(self.carol)

    async def test_unregister_keeps_the_file(self):
        """Unregistering removes the image, not the file, its metadata or
        its sharing."""
        image = await self.register(self.alice)
        await self.pithos("POST", self.alice, "images/debian.img",
                          headers={"X-Object-Meta-Colour": "blue"})
        await self.registry.add_member(self.alice, image.id, self.bob)
        await self.registry.unregister(self.alice, image.id)
        with self.assertRaises(errors.NotFound):
            await self.registry.get(self.alice, image.id)
        self.assertEqual(await self.registry.list(self.alice), [])
        r = await self.pithos("GET", self.alice, "images/debian.img")
        self.assertEqual((r.code, r.body), (200, DATA))
        self.assertEqual(r.header("X-Object-Meta-Colour"), "blue")
        self.assertEqual(r.header("X-Object-Sharing"), f"read={self.bob}")


class MemberTests(ImageCase):
    async def test_members_are_read_sharing(self):
        """Members are the file's read sharing: set, add and remove change
        it; removing a non-member is no error."""
        image = await self.register(self.alice)
        await self.registry.set_members(self.alice, image.id, [self.bob, self.carol])
        self.assertEqual(sorted(await self.registry.members(self.alice, image.id)),
                         sorted([self.bob, self.carol]))
        r = await self.pithos("HEAD", self.alice, "images/debian.img")
        self.assertEqual(r.header("X-Object-Sharing"),
                         "read=" + ",".join(sorted([self.bob, self.carol])))
        await self.registry.remove_member(self.alice, image.id, self.carol)
        await self.registry.remove_member(self.alice, image.id, self.carol)
        self.assertEqual(await self.registry.members(self.bob, image.id), [self.bob])
        with self.assertRaises(errors.NotFound):
            await self.registry.get(self.carol, image.id)
        await self.registry.set_members(self.alice, image.id, [])
        self.assertEqual(await self.registry.members(self.alice, image.id), [])
        r = await self.pithos("HEAD", self.alice, "images/debian.img")
        self.assertIsNone(r.header("X-Object-Sharing"))

    async def test_public_image_keeps_public(self):
        """Changing the members of a public image leaves it public."""
        image = await self.register(self.alice, is_public=True)
        await self.registry.set_members(self.alice, image.id, [self.bob])
        await self.registry.add_member(self.alice, image.id, self.carol)
        await self.registry.remove_member(self.alice, image.id, self.carol)
        self.assertTrue((await self.registry.get(self.carol, image.id)).is_public)

    async def test_bad_members(self):
        """Empty names, ``*`` and names the object store cannot share with
        are 400s."""
        image = await self.register(self.alice)
        for bad in ([""], ["*"], ["a;b"], [3]):
            with self.assertRaises(errors.BadRequest, msg=repr(bad)):
                await self.registry.set_members(self.alice, image.id, bad)  # type: ignore


class ComputeViewTests(ImageCase):
    async def test_compute_image(self):
        """The compute view shows an available image as ACTIVE with progress
        100, its properties as metadata and links to both APIs."""
        image = await self.register(self.alice, properties={"OS": "debian"})
        view = compute_image(image, "http://h/compute/v2.0", "http://h/image/v1.0")
        self.assertEqual(view["status"], "ACTIVE")
        self.assertEqual(view["progress"], 100)
        self.assertEqual(view["metadata"], {"OS": "debian"})
        self.assertEqual((view["user_id"], view["tenant_id"]), (self.alice, self.alice))
        self.assertEqual(view["created"], "2023-11-14T22:13:20+00:00")
        self.assertEqual([link["href"] for link in view["links"]],
                         [f"http://h/compute/v2.0/images/{image.id}"] * 2
                         + [f"http://h/image/v1.0/images/{image.id}"])
        self.assertEqual(set(compute_image(image, detail=False)), {"id", "name", "links"})
