"""The Keystone API in process over a real PostgreSQL: version documents
(read by keystoneauth's discovery), v3 token issue/validate/revoke with
scoping, the resources OpenStack clients read, and Synnefo's v2.0 tokens."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

import psycopg2
from keystoneauth1 import access, discover
from twisted.internet import defer, reactor, task

from snfd.identity import project_store
from snfd.testing.node import free_port
from snfd.testing.nodecase import NodeTestCase
from snfd.testing.postgres import recorded_runs
from snfd.testing.stubhttp import serve

PUBLIC = "http://cloud.test"
PASSWORD = "correct horse battery"


def d(coro):
    return defer.ensureDeferred(coro)


class KeystoneTestCase(NodeTestCase):
    """A node running the identity service as the daemon builds it, over a
    fresh database, with ``PUBLIC`` as its public URL and a peer member
    running the storage and compute services (so that the catalog lists
    them); its clock is a ``task.Clock`` so that tokens can be made to
    expire."""

    plugins = ("identity",)
    overrides = {("identity", "public_url"): PUBLIC, ("identity", "max_body"): "4096"}

    async def setUp(self) -> None:
        await super().setUp()
        self.accounts = self.services["identity"].accounts
        self.dsn = self.node.dsn
        await self.add_member("pithos", "cyclades")

    async def user(self, email: str, admin: bool = False) -> tuple[str, str]:
        """An active user: ``(uuid, primary token)``."""
        user, token = await self.accounts.create_user(email, "Ann", "Lee", password=PASSWORD,
                                                      activate=True, admin=admin)
        return user.uuid, token or ""

    async def login(self, name: str, password: str = PASSWORD, scope: Any = None,
                    domain: Any = None, query: str = "") -> tuple[int, Any, Any]:
        user: dict[str, Any] = {"name": name, "password": password,
                                "domain": domain if domain is not None else {"name": "Default"}}
        auth: dict[str, Any] = {"identity": {"methods": ["password"],
                                             "password": {"user": user}}}
        if scope is not None:
            auth["scope"] = scope
        return await self.call("POST", "/identity/v3/auth/tokens" + query, {"auth": auth})

    def add_project(self, user_uuid: str, name: str) -> str:
        """An active project with ``user_uuid`` as an accepted member."""
        pid = str(uuid.uuid4())
        conn = psycopg2.connect(self.dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("INSERT INTO identity_projects (id, state, name, owner, description)"
                            " VALUES (%s, 'active', %s, %s, 'a project')", (pid, name, user_uuid))
                cur.execute("INSERT INTO identity_memberships (project, user_uuid, state)"
                            " VALUES (%s, %s, 'accepted')", (pid, user_uuid))
        finally:
            conn.close()
        return pid


def subject(headers: Any) -> str:
    return headers.getRawHeaders("x-subject-token")[0]


class VersionTests(KeystoneTestCase):
    @defer.inlineCallbacks
    def test_root_lists_versions(self):
        """GET /identity answers 300 with the v3 and v2.0 version entries."""
        for path in ("/identity", "/identity/"):
            code, body, _ = yield d(self.call("GET", path))
            self.assertEqual(code, 300)
            ids = [v["id"] for v in body["versions"]["values"]]
            self.assertEqual(ids, ["v3.14", "v2.0"])
            v3 = body["versions"]["values"][0]
            self.assertEqual(v3["status"], "stable")
            self.assertEqual(v3["links"], [{"rel": "self", "href": PUBLIC + "/identity/v3/"}])
            self.assertEqual(v3["media-types"][0]["type"],
                             "application/vnd.openstack.identity-v3+json")

    @defer.inlineCallbacks
    def test_version_documents(self):
        """GET /identity/v3 and /identity/v2.0 (with or without a slash)
        answer their one version."""
        for path, vid in (("/identity/v3", "v3.14"), ("/identity/v3/", "v3.14"),
                          ("/identity/v2.0", "v2.0"), ("/identity/v2.0/", "v2.0")):
            code, body, _ = yield d(self.call("GET", path))
            self.assertEqual((code, body["version"]["id"]), (200, vid))

    @defer.inlineCallbacks
    def test_keystoneauth_discovery(self):
        """keystoneauth's discovery finds v3 at /identity/v3/ from the root
        document and from the v3 document."""
        for path in ("/identity", "/identity/v3"):
            _, body, _ = yield d(self.call("GET", path))
            disc = discover.Discover(_FixedSession(body), PUBLIC + path)
            found = disc.data_for("3.0")
            self.assertEqual(found["url"], PUBLIC + "/identity/v3/")
            self.assertEqual(found["version"], (3, 14))

    @defer.inlineCallbacks
    def test_unknown_v3_path_is_keystone_error(self):
        """An unknown path under /identity/v3 gets Keystone's error body."""
        code, body, _ = yield d(self.call("GET", "/identity/v3/nothing/here"))
        self.assertEqual(code, 404)
        self.assertEqual(body["error"]["code"], 404)
        self.assertEqual(body["error"]["title"], "Not Found")


class _FixedResponse:
    def __init__(self, body):
        self._body = body
        self.headers: dict[str, str] = {}
        self.text = json.dumps(body)

    def json(self):
        return self._body


class _FixedSession:
    """Stands for a keystoneauth session: every GET answers one document."""

    def __init__(self, body):
        self._fixed = body

    def get(self, url, **kwargs):
        return _FixedResponse(self._fixed)


class PasswordTests(KeystoneTestCase):
    @defer.inlineCallbacks
    def test_scoped_by_id(self):
        """A password login scoped to the base project by id gives 201, the
        token in X-Subject-Token and the full body, which keystoneauth parses."""
        uid, _ = yield d(self.user("ann@example.org"))
        code, body, headers = yield d(self.login("ann@example.org",
                                                 scope={"project": {"id": uid}}))
        self.assertEqual(code, 201)
        token = body["token"]
        self.assertEqual(token["methods"], ["password"])
        self.assertEqual(token["user"], {"id": uid, "name": "ann@example.org",
                                         "domain": {"id": "default", "name": "Default"},
                                         "password_expires_at": None,
                                         "SNF:display_name": "Ann Lee", "SNF:admin": False,
                                         "SNF:groups": []})
        self.assertEqual(token["project"], {"id": uid, "name": f"system:{uid}",
                                            "domain": {"id": "default", "name": "Default"}})
        self.assertEqual([r["name"] for r in token["roles"]], ["member", "reader"])
        self.assertFalse(token["is_domain"])
        self.assertRegex(token["expires_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        self.assertRegex(token["issued_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        self.assertEqual(len(token["audit_ids"]), 1)
        ref = access.create(resp=None, body=body, auth_token=subject(headers))
        self.assertEqual((ref.project_id, ref.user_id, ref.username), (uid, uid,
                                                                      "ann@example.org"))
        self.assertEqual(ref.project_domain_id, "default")
        self.assertTrue(ref.project_scoped)
        self.assertIsNotNone(ref.expires)
        self.assertEqual(ref.service_catalog.url_for(service_type="identity",
                                                     interface="public"),
                         PUBLIC + "/identity/v3")
        self.assertEqual(ref.service_catalog.url_for(service_type="object-store",
                                                     interface="public"),
                         f"{PUBLIC}/object-store/v1/{uid}")
        self.assertEqual(ref.service_catalog.url_for(service_type="compute",
                                                     interface="internal",
                                                     region_name="RegionOne"),
                         PUBLIC + "/compute/v2.1")

    @defer.inlineCallbacks
    def test_token_works_as_x_auth_token(self):
        """The issued token authenticates further requests."""
        uid, _ = yield d(self.user("ann@example.org"))
        _, _, headers = yield d(self.login("ann@example.org", scope={"project": {"id": uid}}))
        code, body, _ = yield d(self.call("GET", "/identity/v3/auth/projects",
                                          headers={"X-Auth-Token": subject(headers)}))
        self.assertEqual(code, 200)
        self.assertEqual([p["id"] for p in body["projects"]], [uid])

    @defer.inlineCallbacks
    def test_login_by_user_id_and_domain_id(self):
        """The user may be named by id, the domain by id ``default``."""
        uid, _ = yield d(self.user("ann@example.org"))
        auth = {"identity": {"methods": ["password"], "password": {"user": {
            "id": uid, "password": PASSWORD, "domain": {"id": "default"}}}}}
        code, body, _ = yield d(self.call("POST", "/identity/v3/auth/tokens", {"auth": auth}))
        self.assertEqual(code, 201)
        self.assertEqual(body["token"]["user"]["id"], uid)

    @defer.inlineCallbacks
    def test_scoped_by_name_and_domain(self):
        """A project is found by name in the Default domain: the base
        project as system:<uuid> and another project by its name."""
        uid, _ = yield d(self.user("ann@example.org"))
        other = self.add_project(uid, "science")
        for name, pid in ((f"system:{uid}", uid), ("science", other)):
            code, body, _ = yield d(self.login(
                "ann@example.org", scope={"project": {"name": name,
                                                      "domain": {"name": "Default"}}}))
            self.assertEqual(code, 201)
            self.assertEqual(body["token"]["project"]["id"], pid)
            self.assertEqual(body["token"]["project"]["name"], name)

    @defer.inlineCallbacks
    def test_unscoped(self):
        """No scope (or "unscoped") gives a token with no project, roles or
        catalog."""
        yield d(self.user("ann@example.org"))
        for scope in (None, "unscoped"):
            code, body, headers = yield d(self.login("ann@example.org", scope=scope))
            self.assertEqual(code, 201)
            self.assertNotIn("project", body["token"])
            self.assertNotIn("catalog", body["token"])
            ref = access.create(body=body, auth_token=subject(headers))
            self.assertFalse(ref.project_scoped or ref.domain_scoped)
            self.assertEqual(ref.user_id, body["token"]["user"]["id"])

    @defer.inlineCallbacks
    def test_nocatalog(self):
        """?nocatalog leaves the catalog out of a scoped token."""
        uid, _ = yield d(self.user("ann@example.org"))
        code, body, _ = yield d(self.login("ann@example.org", scope={"project": {"id": uid}},
                                           query="?nocatalog"))
        self.assertEqual(code, 201)
        self.assertNotIn("catalog", body["token"])
        self.assertEqual(body["token"]["project"]["id"], uid)

    @defer.inlineCallbacks
    def test_admin_and_group_roles(self):
        """An administrator's scoped token has the admin role and those it
        implies (member, reader); groups are roles too."""
        uid, _ = yield d(self.user("root@example.org", admin=True))
        conn = psycopg2.connect(self.dsn)
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO identity_groups VALUES ('ops')")
            cur.execute("INSERT INTO identity_user_groups VALUES (%s, 'ops')", (uid,))
        conn.close()
        _, body, _ = yield d(self.login("root@example.org", scope={"project": {"id": uid}}))
        self.assertEqual([r["name"] for r in body["token"]["roles"]],
                         ["admin", "manager", "member", "reader", "ops"])

    @defer.inlineCallbacks
    def test_wrong_password_is_401_keystone_error(self):
        """A wrong password gets 401 with Keystone's error body."""
        yield d(self.user("ann@example.org"))
        code, body, _ = yield d(self.login("ann@example.org", password="wrong password!"))
        self.assertEqual(code, 401)
        self.assertEqual(set(body), {"error"})
        self.assertEqual(body["error"]["code"], 401)
        self.assertEqual(body["error"]["title"], "Unauthorized")
        code, _, _ = yield d(self.login("nobody@example.org"))
        self.assertEqual(code, 401)

    @defer.inlineCallbacks
    def test_other_domain_is_401(self):
        """A user or project domain other than Default is refused (401)."""
        uid, _ = yield d(self.user("ann@example.org"))
        code, body, _ = yield d(self.login("ann@example.org", domain={"name": "Elsewhere"}))
        self.assertEqual((code, body["error"]["code"]), (401, 401))
        code, _, _ = yield d(self.login("ann@example.org", domain={"id": "other"}))
        self.assertEqual(code, 401)
        code, _, _ = yield d(self.login(
            "ann@example.org", scope={"project": {"name": f"system:{uid}",
                                                  "domain": {"id": "nope"}}}))
        self.assertEqual(code, 401)

    @defer.inlineCallbacks
    def test_foreign_or_unknown_project_is_401(self):
        """Scoping to a project the user is not a member of is 401."""
        yield d(self.user("ann@example.org"))
        bob, _ = yield d(self.user("bob@example.org"))
        for scope in ({"project": {"id": bob}}, {"project": {"id": "not-a-uuid"}},
                      {"project": {"name": "missing", "domain": {"id": "default"}}},
                      {"domain": {"id": "default"}}):
            code, body, _ = yield d(self.login("ann@example.org", scope=scope))
            self.assertEqual(code, 401, scope)
            self.assertEqual(body["error"]["code"], 401)

    @defer.inlineCallbacks
    def test_bad_bodies_are_400(self):
        """Malformed JSON and wrong shapes are 400 with a message, never 500."""
        yield d(self.user("ann@example.org"))
        path = "/identity/v3/auth/tokens"
        bodies = [
            None, [], {}, {"auth": []}, {"auth": {}}, {"auth": {"identity": {}}},
            {"auth": {"identity": {"methods": "password"}}},
            {"auth": {"identity": {"methods": []}}},
            {"auth": {"identity": {"methods": ["password"]}}},
            {"auth": {"identity": {"methods": ["password"], "password": {"user": {}}}}},
            {"auth": {"identity": {"methods": ["password"], "password": {
                "user": {"name": "ann@example.org"}}}}},
            {"auth": {"identity": {"methods": ["password"], "password": {
                "user": {"name": 5, "password": "x"}}}}},
            {"auth": {"identity": {"methods": ["token"], "token": {}}}},
            {"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "ann@example.org", "password": PASSWORD}}}, "scope": 7}},
            {"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "ann@example.org", "password": PASSWORD}}},
                "scope": {"project": {}}}},
        ]
        for body in bodies:
            raw = b"" if body is None else json.dumps(body).encode()
            code, reply, _ = yield d(self.call("POST", path, raw=raw))
            self.assertEqual(code, 400, body)
            self.assertEqual(reply["error"]["code"], 400)
            self.assertTrue(reply["error"]["message"])
        code, reply, _ = yield d(self.call("POST", path, raw=b"{not json"))
        self.assertEqual((code, reply["error"]["code"]), (400, 400))

    @defer.inlineCallbacks
    def test_unknown_method_is_401(self):
        """An authentication method other than password and token is 401."""
        code, body, _ = yield d(self.call("POST", "/identity/v3/auth/tokens", {
            "auth": {"identity": {"methods": ["totp"], "totp": {}}}}))
        self.assertEqual((code, body["error"]["code"]), (401, 401))


class TokenMethodTests(KeystoneTestCase):
    @defer.inlineCallbacks
    def test_rescope_keeps_expiry_and_audit_chain(self):
        """Rescoping an unscoped token gives a new scoped token with the same
        expiry and the first token's audit id in its chain."""
        uid, _ = yield d(self.user("ann@example.org"))
        _, first, headers = yield d(self.login("ann@example.org"))
        self.clock.advance(60)
        code, body, headers2 = yield d(self.call("POST", "/identity/v3/auth/tokens", {
            "auth": {"identity": {"methods": ["token"], "token": {"id": subject(headers)}},
                     "scope": {"project": {"id": uid}}}}))
        self.assertEqual(code, 201)
        token = body["token"]
        self.assertNotEqual(subject(headers2), subject(headers))
        self.assertEqual(token["expires_at"], first["token"]["expires_at"])
        self.assertEqual(token["audit_ids"][1], first["token"]["audit_ids"][0])
        self.assertEqual(token["methods"], ["token", "password"])
        self.assertEqual(token["project"]["id"], uid)

    @defer.inlineCallbacks
    def test_primary_token_rescopes(self):
        """The user's Synnefo (primary) token can be exchanged for a scoped
        v3 token."""
        uid, primary = yield d(self.user("ann@example.org"))
        code, body, _ = yield d(self.call("POST", "/identity/v3/auth/tokens", {
            "auth": {"identity": {"methods": ["token"], "token": {"id": primary}},
                     "scope": {"project": {"name": f"system:{uid}",
                                           "domain": {"id": "default"}}}}}))
        self.assertEqual(code, 201)
        self.assertEqual(body["token"]["project"]["id"], uid)

    @defer.inlineCallbacks
    def test_bad_token_is_401(self):
        """An unknown token in the token method is 401."""
        code, body, _ = yield d(self.call("POST", "/identity/v3/auth/tokens", {
            "auth": {"identity": {"methods": ["token"], "token": {"id": "nope"}}}}))
        self.assertEqual((code, body["error"]["code"]), (401, 401))


class ValidationTests(KeystoneTestCase):
    @defer.inlineCallbacks
    def test_validate_head_delete_own_token(self):
        """A user checks (GET 200 with body, HEAD 200) and revokes (DELETE
        204) a token; then it is gone (404) and no longer authenticates."""
        uid, primary = yield d(self.user("ann@example.org"))
        _, issued, headers = yield d(self.login("ann@example.org",
                                                scope={"project": {"id": uid}}))
        token = subject(headers)
        auth = {"X-Auth-Token": primary, "X-Subject-Token": token}
        code, body, rheaders = yield d(self.call("GET", "/identity/v3/auth/tokens",
                                                 headers=auth))
        self.assertEqual(code, 200)
        self.assertEqual(subject(rheaders), token)
        self.assertEqual(body["token"]["project"], issued["token"]["project"])
        self.assertEqual(body["token"]["audit_ids"], issued["token"]["audit_ids"])
        self.assertIn("catalog", body["token"])
        code, body, _ = yield d(self.call("GET", "/identity/v3/auth/tokens?nocatalog",
                                          headers=auth))
        self.assertNotIn("catalog", body["token"])
        code, body, _ = yield d(self.call("HEAD", "/identity/v3/auth/tokens", headers=auth))
        self.assertEqual((code, body), (200, None))
        code, body, _ = yield d(self.call("DELETE", "/identity/v3/auth/tokens", headers=auth))
        self.assertEqual((code, body), (204, None))
        for method in ("GET", "HEAD", "DELETE"):
            code, _, _ = yield d(self.call(method, "/identity/v3/auth/tokens", headers=auth))
            self.assertEqual(code, 404, method)
        code, _, _ = yield d(self.call("GET", "/identity/v3/auth/projects",
                                       headers={"X-Auth-Token": token}))
        self.assertEqual(code, 401)

    @defer.inlineCallbacks
    def test_expired_token(self):
        """An expired subject token is 404; as X-Auth-Token it is 401."""
        _, primary = yield d(self.user("ann@example.org"))
        _, _, headers = yield d(self.login("ann@example.org"))
        self.clock.advance(datetime.timedelta(days=31).total_seconds())
        code, body, _ = yield d(self.call("GET", "/identity/v3/auth/tokens", headers={
            "X-Auth-Token": primary, "X-Subject-Token": subject(headers)}))
        self.assertEqual(code, 401)  # the primary token expired as well
        admin, admin_token = yield d(self.user("root@example.org", admin=True))
        code, body, _ = yield d(self.call("GET", "/identity/v3/auth/tokens", headers={
            "X-Auth-Token": admin_token, "X-Subject-Token": subject(headers)}))
        self.assertEqual((code, body["error"]["code"]), (404, 404))

    @defer.inlineCallbacks
    def test_other_users_token_needs_admin(self):
        """One user cannot check or revoke another user's token (403); an
        administrator can."""
        _, ann = yield d(self.user("ann@example.org"))
        _, bob = yield d(self.user("bob@example.org"))
        _, root = yield d(self.user("root@example.org", admin=True))
        for method in ("GET", "DELETE"):
            code, body, _ = yield d(self.call(method, "/identity/v3/auth/tokens", headers={
                "X-Auth-Token": bob, "X-Subject-Token": ann}))
            self.assertEqual((code, body["error"]["code"]), (403, 403))
        code, body, _ = yield d(self.call("GET", "/identity/v3/auth/tokens", headers={
            "X-Auth-Token": root, "X-Subject-Token": ann}))
        self.assertEqual(code, 200)
        self.assertEqual(body["token"]["user"]["name"], "ann@example.org")
        code, _, _ = yield d(self.call("DELETE", "/identity/v3/auth/tokens", headers={
            "X-Auth-Token": root, "X-Subject-Token": ann}))
        self.assertEqual(code, 204)

    @defer.inlineCallbacks
    def test_caller_and_subject_required(self):
        """Checking a token needs X-Auth-Token (401) and X-Subject-Token (400)."""
        _, ann = yield d(self.user("ann@example.org"))
        code, body, _ = yield d(self.call("GET", "/identity/v3/auth/tokens",
                                          headers={"X-Subject-Token": ann}))
        self.assertEqual((code, body["error"]["code"]), (401, 401))
        code, body, _ = yield d(self.call("GET", "/identity/v3/auth/tokens",
                                          headers={"X-Auth-Token": ann}))
        self.assertEqual((code, body["error"]["code"]), (400, 400))
        code, _, _ = yield d(self.call("GET", "/identity/v3/auth/tokens", headers={
            "X-Auth-Token": ann, "X-Subject-Token": "unknown"}))
        self.assertEqual(code, 404)


class ValidationCacheTests(KeystoneTestCase):
    """A repeated validation is answered from the token cache, without the
    database, until a change to the token's user, project or roles
    notifies every node."""

    async def validate(self, caller: str, token: str) -> tuple[int, Any]:
        code, body, _ = await self.call("GET", "/identity/v3/auth/tokens", headers={
            "X-Auth-Token": caller, "X-Subject-Token": token})
        return code, body

    async def answer_becomes(self, caller: str, token: str, code: int) -> Any:
        for _ in range(500):
            got, body = await self.validate(caller, token)
            if got == code:
                return body
            await task.deferLater(reactor, 0.02, lambda: None)
        self.fail(f"the validation never answered {code}")

    async def scoped(self, uid: str) -> tuple[str, str]:
        pid = self.add_project(uid, "alpha")
        _, _, headers = await self.login("ann@example.org", scope={"project": {"id": pid}})
        return pid, subject(headers)

    async def test_second_validation_reads_nothing(self):
        uid, primary = await self.user("ann@example.org")
        _, token = await self.scoped(uid)
        code, first = await self.validate(primary, token)
        self.assertEqual((code, first["token"]["project"]["name"]), (200, "alpha"))
        reads = recorded_runs(self, self.accounts.db)
        code, again = await self.validate(primary, token)
        self.assertEqual((code, again), (200, first))
        self.assertEqual(reads, [])

    async def test_first_validation_is_one_interaction(self):
        """A scoped token not yet cached is validated in one interaction
        that reads the token, its project and the roles, and its body is
        the one given when it was issued (where the project and the roles
        are read apart)."""
        uid, primary = await self.user("ann@example.org")
        pid = self.add_project(uid, "alpha")
        code, issued, headers = await self.login("ann@example.org",
                                                 scope={"project": {"id": pid}})
        self.assertEqual(code, 201)
        self.assertEqual((await self.validate(primary, primary))[0], 200)  # the caller cached
        reads = recorded_runs(self, self.accounts.db)
        code, body = await self.validate(primary, subject(headers))
        self.assertEqual(code, 200)
        self.assertEqual(reads, ["identity.validate_token"])
        self.assertEqual(body["token"]["project"]["name"], "alpha")
        self.assertEqual(body, issued)

    async def test_membership_removed(self):
        """Removing the member ends its scoped token's validation at once."""
        uid, primary = await self.user("ann@example.org")
        pid, token = await self.scoped(uid)
        self.assertEqual((await self.validate(primary, token))[0], 200)
        membership = await self.accounts.db.run(
            "t", project_store.membership_of_txn, pid, uid)
        await self.accounts.db.run("t", project_store.set_membership_state_txn, membership.id,
                                   "removed", datetime.datetime.now(datetime.UTC))
        await self.answer_becomes(primary, token, 404)

    async def test_project_suspended(self):
        uid, primary = await self.user("ann@example.org")
        pid, token = await self.scoped(uid)
        self.assertEqual((await self.validate(primary, token))[0], 200)
        await self.accounts.db.run("t", project_store.set_project_state_txn, pid, "suspended",
                                   datetime.datetime.now(datetime.UTC))
        await self.answer_becomes(primary, token, 404)

    async def test_member_roles_changed(self):
        uid, primary = await self.user("ann@example.org")
        pid, token = await self.scoped(uid)
        code, body = await self.validate(primary, token)
        self.assertIn("member", [r["name"] for r in body["token"]["roles"]])
        membership = await self.accounts.db.run(
            "t", project_store.membership_of_txn, pid, uid)
        await self.accounts.db.run("t", project_store.set_member_roles_txn, membership.id,
                                   ["reader"])
        for _ in range(500):
            _, body = await self.validate(primary, token)
            if "member" not in [r["name"] for r in body["token"]["roles"]]:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        else:
            self.fail("the role taken away still shows")

    async def test_role_lookups_by_uuid(self):
        """The membership and group-role lookups compare uuids (their
        indexes serve): any case of a uuid finds the member, what is no
        uuid finds nothing."""
        uid, _ = await self.user("ann@example.org")
        pid = self.add_project(uid, "alpha")
        db = self.accounts.db
        for user, project in ((uid, pid), (uid.upper(), pid.upper())):
            found = await db.run("t", project_store.member_roles_txn, user=user, project=project)
            self.assertEqual([(m.user, m.project) for m in found], [(uid, pid)])
            self.assertEqual(await db.run("t", project_store.group_roles_txn, user=user,
                                          project=project), [])
        for bad in ("ann", uid[:-1], uid + "0"):
            self.assertEqual(await db.run("t", project_store.member_roles_txn, user=bad), [])
            self.assertEqual(await db.run("t", project_store.group_roles_txn, user=bad), [])


class ResourceTests(KeystoneTestCase):
    @defer.inlineCallbacks
    def test_catalog_projects_domains(self):
        """auth/catalog, users/<id>/projects, projects/<id>, domains and
        auth/domains answer the caller's view; listing every project
        (GET /projects) is an administrator's (403, as in Keystone)."""
        uid, token = yield d(self.user("ann@example.org"))
        other = self.add_project(uid, "science")
        h = {"X-Auth-Token": token}
        code, body, _ = yield d(self.call("GET", "/identity/v3/auth/catalog", headers=h))
        self.assertEqual(code, 200)
        self.assertIn("identity", [s["type"] for s in body["catalog"]])
        code, _, _ = yield d(self.call("GET", "/identity/v3/projects", headers=h))
        self.assertEqual(code, 403)
        code, body, _ = yield d(self.call("GET", f"/identity/v3/users/{uid}/projects",
                                          headers=h))
        self.assertEqual([p["id"] for p in body["projects"]], [uid, other])
        self.assertEqual(body["projects"][1]["name"], "science")
        self.assertEqual(body["projects"][1]["domain_id"], "default")
        code, body, _ = yield d(self.call("GET", f"/identity/v3/projects/{other}", headers=h))
        self.assertEqual((code, body["project"]["name"]), (200, "science"))
        code, _, _ = yield d(self.call("GET", f"/identity/v3/projects/{uuid.uuid4()}",
                                       headers=h))
        self.assertEqual(code, 404)
        for path in ("/identity/v3/auth/domains", "/identity/v3/domains"):
            code, body, _ = yield d(self.call("GET", path, headers=h))
            self.assertEqual([x["id"] for x in body["domains"]], ["default"])
        code, body, _ = yield d(self.call("GET", "/identity/v3/domains/default", headers=h))
        self.assertEqual(body["domain"]["name"], "Default")
        code, _, _ = yield d(self.call("GET", "/identity/v3/domains/other", headers=h))
        self.assertEqual(code, 404)

    @defer.inlineCallbacks
    def test_users_self_or_admin(self):
        """users/<id> and users/<id>/projects are for the user themself or an
        administrator (403 otherwise); listing users is for administrators."""
        ann, ann_token = yield d(self.user("ann@example.org"))
        bob, bob_token = yield d(self.user("bob@example.org"))
        _, root = yield d(self.user("root@example.org", admin=True))
        code, body, _ = yield d(self.call("GET", f"/identity/v3/users/{ann}",
                                          headers={"X-Auth-Token": ann_token}))
        self.assertEqual((code, body["user"]["name"]), (200, "ann@example.org"))
        code, body, _ = yield d(self.call("GET", f"/identity/v3/users/{ann}/projects",
                                          headers={"X-Auth-Token": ann_token}))
        self.assertEqual([p["id"] for p in body["projects"]], [ann])
        for path in (f"/identity/v3/users/{ann}", f"/identity/v3/users/{ann}/projects",
                     "/identity/v3/users"):
            code, body, _ = yield d(self.call("GET", path, headers={"X-Auth-Token": bob_token}))
            self.assertEqual((code, body["error"]["code"]), (403, 403), path)
        code, body, _ = yield d(self.call("GET", f"/identity/v3/users/{bob}",
                                          headers={"X-Auth-Token": root}))
        self.assertEqual(body["user"]["id"], bob)
        code, body, _ = yield d(self.call("GET", "/identity/v3/users?name=bob@example.org",
                                          headers={"X-Auth-Token": root}))
        self.assertEqual([u["id"] for u in body["users"]], [bob])
        code, _, _ = yield d(self.call("GET", f"/identity/v3/users/{uuid.uuid4()}",
                                       headers={"X-Auth-Token": root}))
        self.assertEqual(code, 404)

    @defer.inlineCallbacks
    def test_resources_need_a_user(self):
        """Without X-Auth-Token the resources are 401."""
        code, body, _ = yield d(self.call("GET", "/identity/v3/auth/projects"))
        self.assertEqual((code, body["error"]["code"]), (401, 401))


class V2Tests(KeystoneTestCase):
    @defer.inlineCallbacks
    def test_public_catalog(self):
        """An empty POST /identity/v2.0/tokens gives only the catalog."""
        code, body, _ = yield d(self.call("POST", "/identity/v2.0/tokens", raw=b""))
        self.assertEqual(code, 200)
        self.assertEqual(set(body["access"]), {"serviceCatalog"})
        names = [s["name"] for s in body["access"]["serviceCatalog"]]
        self.assertIn("astakos_identity", names)
        identity = next(s for s in body["access"]["serviceCatalog"] if s["type"] == "identity")
        self.assertEqual(identity["endpoints"][0]["publicURL"], PUBLIC + "/identity/v2.0")

    @defer.inlineCallbacks
    def test_synnefo_forms_return_the_same_token(self):
        """The token form and the uuid/token form return the same token,
        the user's details and the catalog (Synnefo's shape)."""
        uid, primary = yield d(self.user("ann@example.org"))
        other = self.add_project(uid, "science")
        for auth in ({"token": {"id": primary}},
                     {"token": {"id": primary}, "tenantName": uid},
                     {"passwordCredentials": {"username": uid, "password": primary}}):
            code, body, _ = yield d(self.call("POST", "/identity/v2.0/tokens", {"auth": auth}))
            self.assertEqual(code, 200, auth)
            a = body["access"]
            self.assertEqual(a["token"]["id"], primary)
            self.assertEqual(a["token"]["tenant"], {"id": uid, "name": "Ann Lee"})
            self.assertEqual(a["user"]["id"], uid)
            self.assertEqual(a["user"]["name"], "Ann Lee")
            self.assertEqual(a["user"]["roles_links"], [])
            self.assertEqual(a["user"]["projects"], [uid, other])
            self.assertIn("object-store", [s["type"] for s in a["serviceCatalog"]])
            store = next(s for s in a["serviceCatalog"] if s["type"] == "object-store")
            self.assertEqual(store["endpoints"][0]["publicURL"], PUBLIC + "/object-store/v1")
            ref = access.create(body=body)
            self.assertEqual((ref.auth_token, ref.user_id), (primary, uid))
            self.assertEqual(ref.service_catalog.url_for(service_type="compute"),
                             PUBLIC + "/compute/v2.0")

    @defer.inlineCallbacks
    def test_tenant_name_must_conform(self):
        """A tenantName other than the user's uuid is 400 "Not conforming
        tenantName"; a wrong uuid for the token is 401."""
        uid, primary = yield d(self.user("ann@example.org"))
        code, body, _ = yield d(self.call("POST", "/identity/v2.0/tokens", {
            "auth": {"token": {"id": primary}, "tenantName": str(uuid.uuid4())}}))
        self.assertEqual(code, 400)
        self.assertEqual(body["badRequest"]["message"], "Not conforming tenantName")
        code, body, _ = yield d(self.call("POST", "/identity/v2.0/tokens", {
            "auth": {"passwordCredentials": {"username": str(uuid.uuid4()),
                                             "password": primary}}}))
        self.assertEqual((code, list(body)), (401, ["unauthorized"]))
        code, body, _ = yield d(self.call("POST", "/identity/v2.0/tokens", {
            "auth": {"token": {"id": "bad"}}}))
        self.assertEqual((code, list(body)), (401, ["unauthorized"]))

    @defer.inlineCallbacks
    def test_classic_password_login(self):
        """passwordCredentials with the email and password issue a new token
        scoped to the base project (or the tenant asked for)."""
        uid, primary = yield d(self.user("ann@example.org"))
        other = self.add_project(uid, "science")
        code, body, _ = yield d(self.call("POST", "/identity/v2.0/tokens", {
            "auth": {"passwordCredentials": {"username": "ann@example.org",
                                             "password": PASSWORD}}}))
        self.assertEqual(code, 200)
        token = body["access"]["token"]
        self.assertNotEqual(token["id"], primary)
        self.assertEqual(token["tenant"]["id"], uid)
        code, body, _ = yield d(self.call("GET", "/identity/v3/auth/projects",
                                          headers={"X-Auth-Token": token["id"]}))
        self.assertEqual(code, 200)
        code, body, _ = yield d(self.call("POST", "/identity/v2.0/tokens", {
            "auth": {"passwordCredentials": {"username": "ann@example.org",
                                             "password": PASSWORD},
                     "tenantName": "science"}}))
        self.assertEqual(body["access"]["token"]["tenant"], {"id": other, "name": "science"})
        code, body, _ = yield d(self.call("POST", "/identity/v2.0/tokens", {
            "auth": {"passwordCredentials": {"username": "ann@example.org",
                                             "password": PASSWORD},
                     "tenantName": uid}}))
        self.assertEqual(body["access"]["token"]["tenant"], {"id": uid, "name": "Ann Lee"})
        code, body, _ = yield d(self.call("POST", "/identity/v2.0/tokens", {
            "auth": {"passwordCredentials": {"username": "ann@example.org",
                                             "password": PASSWORD},
                     "tenantId": str(uuid.uuid4())}}))
        self.assertEqual((code, list(body)), (401, ["unauthorized"]))
        code, body, _ = yield d(self.call("POST", "/identity/v2.0/tokens", {
            "auth": {"passwordCredentials": {"username": "ann@example.org",
                                             "password": "wrong password"}}}))
        self.assertEqual((code, list(body)), (401, ["unauthorized"]))

    @defer.inlineCallbacks
    def test_bad_v2_bodies(self):
        """Malformed v2.0 requests are 400 in the usual fault shape."""
        for raw in (b"{", b"[]", b'{"auth": 1}', b'{"auth": {}}',
                    b'{"auth": {"token": {}}}', b'{"auth": {"passwordCredentials": {}}}'):
            code, body, _ = yield d(self.call("POST", "/identity/v2.0/tokens", raw=raw))
            self.assertEqual((code, list(body)), (400, ["badRequest"]), raw)

    @defer.inlineCallbacks
    def test_tenants(self):
        """GET /identity/v2.0/tenants lists the caller's projects."""
        uid, primary = yield d(self.user("ann@example.org"))
        code, body, _ = yield d(self.call("GET", "/identity/v2.0/tenants",
                                          headers={"X-Auth-Token": primary}))
        self.assertEqual(code, 200)
        self.assertEqual([t["id"] for t in body["tenants"]], [uid])



class KeystoneauthTests(NodeTestCase):
    """keystoneauth1 itself, in a thread, against the node's root served
    over real HTTP by this process."""

    plugins = ("identity",)

    async def setUp(self) -> None:
        # The public URL is the served address, known before the node is built.
        port = free_port()
        self.public = f"http://127.0.0.1:{port}"
        self.overrides = {("identity", "public_url"): self.public}
        await super().setUp()
        self.accounts = self.services["identity"].accounts
        serve(self, self.node.root, port)

    @defer.inlineCallbacks
    def test_generic_password_plugin(self):
        """keystoneauth's generic password plugin, given the unversioned
        /identity URL, discovers v3, gets a project-scoped token by project
        name and domain, and finds endpoints in its catalog."""
        from twisted.internet import threads

        user, _ = yield d(self.accounts.create_user("ann@example.org", password=PASSWORD,
                                                    activate=True))
        public = self.public

        def client():
            from keystoneauth1 import session as ks_session
            from keystoneauth1.identity import generic

            auth = generic.Password(auth_url=public + "/identity", username="ann@example.org",
                                    password=PASSWORD, project_name=f"system:{user.uuid}",
                                    user_domain_name="Default", project_domain_name="Default")
            sess = ks_session.Session(auth=auth)
            ref = auth.get_access(sess)
            identity = sess.get_endpoint(service_type="identity", interface="public")
            projects = sess.get(public + "/identity/v3/auth/projects").json()
            return ref.version, ref.project_id, ref.user_id, identity, projects

        version, project, user_id, identity, projects = yield threads.deferToThread(client)
        self.assertEqual((version, project, user_id), ("v3", user.uuid, user.uuid))
        self.assertEqual(identity, public + "/identity/v3")
        self.assertEqual([p["id"] for p in projects["projects"]], [user.uuid])

    @defer.inlineCallbacks
    def test_openstacksdk_connection(self):
        """An openstacksdk connection authenticates and lists the user's
        projects and its own user through the identity proxy."""
        from twisted.internet import threads

        user, _ = yield d(self.accounts.create_user("ann@example.org", password=PASSWORD,
                                                    activate=True))
        public = self.public

        def client():
            import openstack

            conn = openstack.connect(
                auth_url=public + "/identity/v3", username="ann@example.org",
                password=PASSWORD, project_id=user.uuid, user_domain_name="Default",
                region_name="RegionOne", identity_api_version="3")
            try:
                projects = [p.id for p in conn.identity.user_projects(user.uuid)]
                me = conn.identity.get_user(conn.current_user_id)
                return projects, me.name, conn.current_project_id
            finally:
                conn.close()

        projects, name, current = yield threads.deferToThread(client)
        self.assertEqual((projects, name, current), ([user.uuid], "ann@example.org", user.uuid))
