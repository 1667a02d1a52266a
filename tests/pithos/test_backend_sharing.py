"""Sharing in the storage backend: who may read and write what, through
the object's own sharing, directory objects, groups, ``*``, container and
account ACLs; what other users see in listings; public links."""

from __future__ import annotations

import string

from snfd import errors
from snfd.pithos import reads
from snfd.pithos.backend import ANONYMOUS
from snfd.pithos.model import Permissions
from snfd.testing.postgres import recorded_statements
from tests.pithos.test_backend import ALICE, BOB, BS, CAROL, BackendTestCase

DIR = "application/directory"


class SharingTests(BackendTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        await self.container()

    async def test_read_share(self):
        """A read share lets that user read (allowed_to read) but not
        write (Forbidden) nor see the history (Forbidden); anyone else
        gets Forbidden, as for a missing object (Swift's 403)."""
        await self.put("o", b"secret", permissions=Permissions(read=(BOB,)))
        seen = await self.backend.object(BOB, ALICE, "c", "o")
        self.assertEqual((seen.size, seen.allowed_to, seen.sharing, seen.public),
                         (6, "read", None, None))
        await self.fails(errors.Forbidden, self.put("o", b"x", user=BOB, account=ALICE))
        await self.fails(errors.Forbidden, self.backend.delete_object(BOB, ALICE, "c", "o"))
        await self.fails(errors.Forbidden, self.backend.object(CAROL, ALICE, "c", "o"))
        await self.fails(errors.Forbidden, self.backend.object(CAROL, ALICE, "c", "absent"))
        await self.fails(errors.Forbidden, self.put("o", b"x", user=CAROL, account=ALICE))
        await self.fails(errors.Forbidden, self.backend.versions(BOB, ALICE, "c", "o"))
        await self.fails(errors.Forbidden, self.backend.versions(CAROL, ALICE, "c", "o"))
        self.assertEqual(len(await self.backend.versions(ALICE, ALICE, "c", "o")), 1)

    async def test_write_share(self):
        """Write implies read; a writer may overwrite, update meta and
        delete, but not change sharing or publish."""
        await self.put("o", permissions=Permissions(write=(BOB,)))
        v = await self.put("o", b"by bob", user=BOB, account=ALICE)
        self.assertEqual(v.muser, BOB)
        self.assertEqual((await self.backend.object(BOB, ALICE, "c", "o")).allowed_to, "write")
        await self.backend.update_object(BOB, ALICE, "c", "o", {"X-Object-Meta-A": "1"}, False)
        await self.fails(errors.Forbidden, self.backend.update_object(
            BOB, ALICE, "c", "o", None, False, permissions=Permissions(read=(CAROL,))))
        await self.fails(errors.Forbidden, self.backend.update_object(
            BOB, ALICE, "c", "o", None, False, public=True))
        await self.backend.delete_object(BOB, ALICE, "c", "o")
        await self.fails(errors.NotFound, self.backend.object(ALICE, ALICE, "c", "o"))

    async def test_delete_drops_sharing(self):
        """Deleting an object drops its sharing: recreated, it is private."""
        await self.put("o", permissions=Permissions(read=(BOB,)))
        await self.backend.delete_object(ALICE, ALICE, "c", "o")
        await self.put("o")
        await self.fails(errors.Forbidden, self.backend.object(BOB, ALICE, "c", "o"))

    async def test_directory_inheritance(self):
        """Sharing on a directory object applies to the objects under it
        (shared_by names it); the closest sharing wins; a non-directory
        object passes nothing on; new objects may be created under a
        writable directory."""
        await self.put("docs", b"", content_type=DIR, permissions=Permissions(read=(BOB,)))
        await self.put("docs/a/b")
        await self.put("docs/private", permissions=Permissions(read=(CAROL,)))
        await self.put("plain", permissions=Permissions(read=(BOB,)))
        await self.put("plain/x")
        seen = await self.backend.object(BOB, ALICE, "c", "docs/a/b")
        self.assertEqual((seen.shared_by, seen.allowed_to), (f"{ALICE}/c/docs", "read"))
        owner = await self.backend.object(ALICE, ALICE, "c", "docs/a/b")
        self.assertEqual((owner.shared_by, owner.sharing),
                         (f"{ALICE}/c/docs", Permissions(read=(BOB,))))
        await self.fails(errors.Forbidden, self.backend.object(BOB, ALICE, "c", "docs/private"))
        await self.fails(errors.Forbidden, self.backend.object(BOB, ALICE, "c", "plain/x"))
        await self.put("work", b"", content_type="application/folder",
                       permissions=Permissions(write=(CAROL,)))
        await self.put("work/new", b"hi", user=CAROL, account=ALICE)
        self.assertEqual((await self.backend.object(ALICE, ALICE, "c", "work/new")).muser,
                         CAROL)
        await self.fails(errors.Forbidden, self.put("elsewhere", user=CAROL, account=ALICE))

    async def test_groups_and_everyone(self):
        """Entries '<owner>:<group>' grant the group's members (as they
        are now); '*' grants every user."""
        await self.backend.update_account(ALICE, ALICE, None, False, {"team": [BOB]})
        await self.put("g", permissions=Permissions(read=(f"{ALICE}:team",)))
        await self.put("all", permissions=Permissions(read=("*",)))
        await self.backend.object(BOB, ALICE, "c", "g")
        await self.fails(errors.Forbidden, self.backend.object(CAROL, ALICE, "c", "g"))
        await self.backend.update_account(ALICE, ALICE, None, False, {"team": [CAROL]})
        await self.backend.object(CAROL, ALICE, "c", "g")
        await self.fails(errors.Forbidden, self.backend.object(BOB, ALICE, "c", "g"))
        await self.backend.object(BOB, ALICE, "c", "all")
        await self.backend.object(CAROL, ALICE, "c", "all")

    async def test_sharing_syntax(self):
        """Entries are stored without spaces, lowercased; '*' absorbs the
        rest; bad entries are BadRequest."""
        v = await self.put("o", permissions=Permissions(read=(" Bob-UUID ", "x"),
                                                        write=("a", "*", "b")))
        self.assertEqual(v.sharing, Permissions(read=(BOB, "x"), write=("*",)))
        for bad in ("a,b", "a;b", "a=b", ":g", "a:b:c"):
            await self.fails(errors.BadRequest,
                             self.put("p", permissions=Permissions(read=(bad,))))

    async def test_public_links(self):
        """Publishing gives a 16-character [0-9a-zA-Z] token that reads the
        latest version without a user; the normal API does not open the
        object to others; unpublishing and deleting withdraw it."""
        v = await self.put("o", b"v1", public=True)
        token = v.public
        self.assertEqual(len(token), 16)
        self.assertTrue(set(token) <= set(string.digits + string.ascii_letters))
        await self.put("o", b"v2!")
        got = await self.backend.public_object(token)
        self.assertEqual((got.name, got.size, got.public), ("o", 3, token))
        self.assertEqual((await self.backend.object(ALICE, ALICE, "c", "o")).public, token)
        await self.fails(errors.Forbidden, self.backend.object(BOB, ALICE, "c", "o"))
        again = await self.backend.update_object(ALICE, ALICE, "c", "o", None, False,
                                                 public=True)
        self.assertEqual(again.public, token)
        await self.backend.update_object(ALICE, ALICE, "c", "o", None, False, public=False)
        await self.fails(errors.NotFound, self.backend.public_object(token))
        v = await self.backend.update_object(ALICE, ALICE, "c", "o", None, False, public=True)
        self.assertNotEqual(v.public, token)
        await self.backend.delete_object(ALICE, ALICE, "c", "o")
        await self.fails(errors.NotFound, self.backend.public_object(v.public))
        await self.fails(errors.NotFound, self.backend.public_object("nope"))

    async def test_anonymous_reads_public_objects_only(self):
        """``ANONYMOUS`` (the caller of a public link) reads and lists the
        public objects and nothing else: not what is shared with ``*``,
        not the history, not other containers or the account; it writes
        nothing."""
        await self.put("pub", b"v1", public=True)
        v2 = await self.put("pub", b"v2!")
        await self.put("star", permissions=Permissions(write=("*",)))
        await self.put("private")
        got = await self.backend.object(ANONYMOUS, ALICE, "c", "pub")
        self.assertEqual((got.size, got.serial), (3, v2.serial))
        for name in ("star", "private", "absent"):
            await self.fails(errors.NotFound, self.backend.object(ANONYMOUS, ALICE, "c", name))
        listed = await self.backend.objects(ANONYMOUS, ALICE, "c")
        self.assertEqual([o.name for o in listed], ["pub"])
        await self.fails(errors.Forbidden, self.backend.object(ANONYMOUS, ALICE, "c", "pub",
                                                               version=v2.serial - 1))
        await self.fails(errors.Forbidden, self.backend.versions(ANONYMOUS, ALICE, "c", "pub"))
        await self.fails(errors.NotFound, self.backend.container(ANONYMOUS, ALICE, "c"))
        await self.fails(errors.NotFound, self.backend.account(ANONYMOUS, ALICE))
        await self.fails(errors.Forbidden, self.put("pub", b"x", user=ANONYMOUS,
                                                    account=ALICE))
        await self.backend.update_object(ALICE, ALICE, "c", "pub", None, False, public=False)
        await self.fails(errors.NotFound, self.backend.object(ANONYMOUS, ALICE, "c", "pub"))
        self.assertEqual(await self.backend.objects(ANONYMOUS, ALICE, "c"), [])

    async def test_token_grows_on_collision(self):
        """A token already taken makes the next one a character longer."""
        backend = self.make_backend(public_token_length=1)
        lengths = set()
        for i in range(70):  # more objects than 1-character tokens
            await self.put(f"o{i}")
            info = await backend.update_object(ALICE, ALICE, "c", f"o{i}", None, False,
                                               public=True)
            lengths.add(len(info.public))
        self.assertEqual(min(lengths), 1)
        self.assertGreater(max(lengths), 1)

    async def test_listings_for_others(self):
        """Another user lists only the objects they may read, sees only
        containers with something shared with them, gets the account's
        name and time only, and NotFound where nothing is shared."""
        await self.put("docs", b"", content_type=DIR, permissions=Permissions(read=(BOB,)))
        await self.put("docs/a")
        await self.put("docs/b", permissions=Permissions(read=(CAROL,)))
        await self.put("mine")
        await self.put("shared", permissions=Permissions(write=(BOB,)), public=True)
        await self.put("pub", public=True)
        await self.container("other")
        await self.put("x", container="other")
        found = await self.backend.objects(BOB, ALICE, "c")
        self.assertEqual([(o.name, o.allowed_to, o.sharing, o.public) for o in found],
                         [("docs", "read", None, None), ("docs/a", "read", None, None),
                          ("shared", "write", None, None)])
        self.assertEqual(await self.names(BOB, delimiter="/"), ["docs", "docs/ (dir)", "shared"])
        self.assertEqual([c.name for c in await self.backend.containers(BOB, ALICE)], ["c"])
        await self.fails(errors.Forbidden, self.backend.objects(BOB, ALICE, "other"))
        await self.fails(errors.Forbidden, self.backend.container(BOB, ALICE, "other"))
        cinfo = await self.backend.container(BOB, ALICE, "c")
        self.assertEqual((cinfo.count, cinfo.bytes, cinfo.meta), (0, 0, {}))
        info = await self.backend.account(BOB, ALICE)
        self.assertEqual((info.count, info.bytes, info.groups), (0, 0, {}))
        self.assertGreater(info.mtime, 0)
        await self.fails(errors.Forbidden, self.backend.account(BOB, ALICE, until=2000.0))
        await self.fails(errors.Forbidden, self.backend.objects(BOB, ALICE, "c", public=True))
        await self.fails(errors.Forbidden, self.backend.objects(BOB, ALICE, "c", until=2000.0))
        await self.fails(errors.Forbidden, self.backend.account(CAROL + "x", ALICE))
        await self.fails(errors.Forbidden, self.backend.containers(CAROL + "x", ALICE))
        self.assertEqual([c.name for c in await self.backend.containers(CAROL, ALICE)], ["c"])
        self.assertEqual(await self.names(CAROL), ["docs/b"])

    async def test_sharers(self):
        """sharers() lists the accounts sharing something with the user
        (directly, by group or '*'), not the user's own, with marker and
        limit; public links do not count."""
        await self.put("o", permissions=Permissions(read=(CAROL,)))
        await self.container("c", user=BOB)
        await self.backend.update_account(BOB, BOB, None, False, {"friends": [CAROL]})
        await self.put("b", user=BOB, permissions=Permissions(read=(f"{BOB}:friends",)))
        await self.container("c", user="dave")
        await self.put("d", user="dave", permissions=Permissions(read=("*",)))
        await self.container("c", user="erin")
        await self.put("e", user="erin", public=True)
        names = [s.name for s in await self.backend.sharers(CAROL)]
        self.assertEqual(names, sorted([ALICE, BOB, "dave"]))
        self.tick()
        await self.put("late", b"x")
        [alice] = await self.backend.sharers(CAROL, limit=1)
        self.assertEqual((alice.name, alice.mtime), (ALICE, self.clock.seconds()))
        names = [s.name for s in await self.backend.sharers(CAROL, marker=ALICE, limit=1)]
        self.assertEqual(names, [BOB])
        self.assertEqual([s.name for s in await self.backend.sharers("dave")], [])

    async def test_container_and_account_acls(self):
        """Sharing on the container path (or the account path) governs
        every object without closer sharing; the owner sees it as the
        container's/account's sharing; the reader sees the statistics."""
        await self.put("a", b"123")
        await self.put("b", permissions=Permissions(read=(CAROL,)))
        await self.backend.update_container(ALICE, ALICE, "c", None, False, None,
                                            permissions=Permissions(read=(BOB,)))
        self.assertEqual((await self.backend.container(ALICE, ALICE, "c")).sharing,
                         Permissions(read=(BOB,)))
        seen = await self.backend.object(BOB, ALICE, "c", "a")
        self.assertEqual((seen.allowed_to, seen.shared_by), ("read", None))
        await self.fails(errors.Forbidden, self.backend.object(BOB, ALICE, "c", "b"))
        self.assertEqual(await self.names(BOB), ["a"])
        info = await self.backend.container(BOB, ALICE, "c")
        self.assertEqual((info.count, info.bytes), (2, 7))
        await self.fails(errors.Forbidden, self.put("new", user=BOB, account=ALICE))
        await self.fails(errors.Forbidden, self.backend.update_container(
            BOB, ALICE, "c", {"X-Container-Meta-A": "1"}, False, None))
        await self.fails(errors.Forbidden, self.backend.delete_container(BOB, ALICE, "c"))

        await self.backend.update_account(ALICE, ALICE, None, False, None,
                                          permissions=Permissions(write=(CAROL,)))
        self.assertEqual((await self.backend.account(ALICE, ALICE)).sharing,
                         Permissions(write=(CAROL,)))
        await self.container("d")
        await self.put("new", b"x", user=CAROL, account=ALICE, container="d")
        self.assertEqual([c.name for c in await self.backend.containers(CAROL, ALICE)],
                         ["c", "d"])
        # The container's own sharing is closer than the account's.
        await self.fails(errors.Forbidden, self.backend.object(CAROL, ALICE, "c", "a"))

    async def test_copy_permissions(self):
        """Copying needs read on the source and write on the destination;
        moving needs write on the source."""
        await self.put("r", permissions=Permissions(read=(BOB,)))
        await self.container("c", user=BOB)
        copied = await self.backend.copy_object(BOB, ALICE, "c", "r", BOB, "c", "mine")
        self.assertEqual(copied.account, BOB)
        await self.fails(errors.Forbidden, self.backend.copy_object(
            BOB, ALICE, "c", "r", BOB, "c", "moved", move=True))
        await self.fails(errors.Forbidden, self.backend.copy_object(
            BOB, BOB, "c", "mine", ALICE, "c", "into-alice"))
        await self.fails(errors.NotFound, self.backend.copy_object(
            CAROL, ALICE, "c", "r", CAROL, "c", "x"))


class OwnerReadTests(BackendTestCase):
    """The owner's reads of an object and a container are one statement
    each, outside a transaction, and answer what the general reads answer."""

    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        await self.container()

    async def general(self, name: str, version: int | None = None):
        return await self.db.run("t", reads.object_txn, BS, ALICE, ALICE, "c", name, version)

    async def test_same_answer_as_the_general_read(self):
        await self.put("docs", b"", content_type=DIR, permissions=Permissions(read=(BOB,)))
        await self.put("docs/sub/a", b"aaa", meta={"X-Object-Meta-K": "v"})
        await self.put("notdir", b"", permissions=Permissions(read=(CAROL,)))
        await self.put("notdir/b", b"b")  # its ancestor's sharing does not govern
        old = await self.put("own", b"one", permissions=Permissions(write=(BOB,)))
        await self.put("own", b"two" * 3000, public=True)
        await self.backend.update_object(ALICE, ALICE, "c", "own", {"X-Object-Meta-A": "1"},
                                         False)
        gone = await self.put("gone", b"x")
        await self.backend.delete_object(ALICE, ALICE, "c", "gone")
        await self.backend.update_account(ALICE, ALICE, None, False, None,
                                          Permissions(read=(CAROL,)))
        cases = [("docs/sub/a", None), ("notdir/b", None), ("own", None),
                 ("own", old.serial), ("docs", None), ("gone", gone.serial)]
        for name, version in cases:
            mine = await self.backend.object(ALICE, ALICE, "c", name, version)
            self.assertEqual(mine, await self.general(name, version), (name, version))
        self.assertEqual((await self.backend.object(ALICE, ALICE, "c", "docs/sub/a")).shared_by,
                         f"{ALICE}/c/docs")
        self.assertIsNotNone((await self.backend.object(ALICE, ALICE, "c", "own")).public)
        for name, version in [("gone", None), ("absent", None), ("own", gone.serial),
                              ("own", 10 ** 9)]:
            mine_fault = await self.fails(errors.NotFound,
                                          self.backend.object(ALICE, ALICE, "c", name, version))
            general_fault = await self.fails(errors.NotFound, self.general(name, version))
            self.assertEqual(str(mine_fault), str(general_fault), (name, version))

    async def test_one_statement_each(self):
        await self.put("o", b"x", permissions=Permissions(read=(BOB,)))
        recorded = recorded_statements(self, self.db)
        await self.backend.object(ALICE, ALICE, "c", "o")
        await self.backend.container(ALICE, ALICE, "c")
        # A connection's first use of a prepared statement prepares it.
        ran = [(r.how, r.name, [sql for sql in r.statements if not sql.startswith("PREPARE")])
               for r in recorded]
        self.assertEqual([(how, name, len(sqls)) for how, name, sqls in ran],
                         [("read", "pithos.object", 1), ("read", "pithos.container", 1)])
        await self.backend.object(BOB, ALICE, "c", "o")  # another user's: a transaction
        self.assertEqual(recorded[-1].how, "run")
