"""Keystone v3's administration API over the Astakos model, in process over
a real PostgreSQL: users, projects, roles and their grants, role
assignments, groups, domains, the policy (administrators versus users),
tokens carrying implied roles, and ``allow_expired``."""

from __future__ import annotations

import datetime
from typing import Any

from twisted.internet import defer

from snfd.identity import roles
from tests.identity.test_keystone import PASSWORD, KeystoneTestCase, d, subject

V3 = "/identity/v3"
MEMBER = roles.role_id("member")
READER = roles.role_id("reader")
ADMIN = roles.role_id("admin")


class AdminTestCase(KeystoneTestCase):
    """An administrator (``self.admin``, ``self.admin_token``) and a plain
    user (``self.ann``, ``self.ann_token``)."""

    async def setUp(self) -> None:
        await super().setUp()
        self.admin, self.admin_token = await self.user("root@example.org", admin=True)
        self.ann, self.ann_token = await self.user("ann@example.org")

    async def v3(self, method: str, path: str, body: Any = None, token: str | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        hdrs = dict(headers or {})
        hdrs["X-Auth-Token"] = self.admin_token if token is None else token
        return await self.call(method, V3 + path, body, headers=hdrs)

    async def new_project(self, name: str = "web-team", **extra: Any) -> str:
        code, body, _ = await self.v3("POST", "/projects", {"project": {"name": name, **extra}})
        assert code == 201, body
        return str(body["project"]["id"])

    async def scoped(self, email: str, project: str) -> tuple[int, Any, Any]:
        return await self.login(email, scope={"project": {"id": project}})


class UserTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_create_show_list_login(self):
        """An administrator creates a user named by its email, with a
        password and a description (its display name); the user is active,
        listed, shown, and logs in at once."""
        code, body, _ = yield d(self.v3("POST", "/users", {"user": {
            "name": "bob@example.org", "password": "bob's long password",
            "description": "Bob Stone", "domain_id": "default"}}))
        self.assertEqual(code, 201)
        user = body["user"]
        self.assertEqual((user["name"], user["email"], user["enabled"], user["description"],
                          user["domain_id"], user["default_project_id"]),
                         ("bob@example.org", "bob@example.org", True, "Bob Stone",
                          "default", user["id"]))
        code, body, _ = yield d(self.v3("GET", f"/users/{user['id']}"))
        self.assertEqual((code, body["user"]["id"]), (200, user["id"]))
        code, body, _ = yield d(self.v3("GET", "/users?name=bob@example.org"))
        self.assertEqual([u["id"] for u in body["users"]], [user["id"]])
        code, _, _ = yield d(self.login("bob@example.org", "bob's long password"))
        self.assertEqual(code, 201)

    @defer.inlineCallbacks
    def test_list_filters(self):
        """``enabled`` and ``domain_id`` filter the list."""
        yield d(self.v3("POST", "/users", {"user": {"name": "off@example.org",
                                                    "enabled": False}}))
        _, body, _ = yield d(self.v3("GET", "/users?enabled=false"))
        self.assertEqual([u["name"] for u in body["users"]], ["off@example.org"])
        _, body, _ = yield d(self.v3("GET", "/users?enabled=true"))
        # admin@localhost is the administrator the service made at its start
        self.assertEqual(sorted(u["name"] for u in body["users"]),
                         ["admin@localhost", "ann@example.org", "root@example.org"])
        _, body, _ = yield d(self.v3("GET", "/users?domain_id=other"))
        self.assertEqual(body["users"], [])

    @defer.inlineCallbacks
    def test_username_apart_from_the_email(self):
        """A name that is not the email is the user's username: it is the
        Keystone name (shown, listed, in tokens), and a password login by
        name takes it (case-insensitive) as well as the email."""
        code, body, _ = yield d(self.v3("POST", "/users", {"user": {
            "name": "tempest-User-1", "email": "u1@example.org",
            "password": "u1's long password"}}))
        self.assertEqual(code, 201, body)
        user = body["user"]
        self.assertEqual((user["name"], user["email"]), ("tempest-User-1", "u1@example.org"))
        _, body, _ = yield d(self.v3("GET", "/users?name=tempest-User-1"))
        self.assertEqual([u["id"] for u in body["users"]], [user["id"]])
        for name in ("tempest-User-1", "TEMPEST-user-1", "U1@example.org"):
            code, body, _ = yield d(self.login(name, "u1's long password"))
            self.assertEqual(code, 201, name)
            self.assertEqual(body["token"]["user"]["name"], "tempest-User-1")
        code, _, _ = yield d(self.login("tempest-User-1", "wrong"))
        self.assertEqual(code, 401)

    @defer.inlineCallbacks
    def test_user_without_email(self):
        """Tempest's users have a name and no email: created, shown without
        an email, logging in by name; renamed by PATCH."""
        code, body, _ = yield d(self.v3("POST", "/users", {"user": {
            "name": "svc-1", "password": "svc's long password"}}))
        self.assertEqual(code, 201, body)
        uid = body["user"]["id"]
        self.assertNotIn("email", body["user"])
        code, _, _ = yield d(self.login("svc-1", "svc's long password"))
        self.assertEqual(code, 201)
        code, body, _ = yield d(self.v3("PATCH", f"/users/{uid}", {"user": {"name": "svc-2"}}))
        self.assertEqual((code, body["user"]["name"]), (200, "svc-2"))
        code, _, _ = yield d(self.login("svc-2", "svc's long password"))
        self.assertEqual(code, 201)
        code, _, _ = yield d(self.login("svc-1", "svc's long password"))
        self.assertEqual(code, 401)

    @defer.inlineCallbacks
    def test_names_and_emails_do_not_collide(self):
        """A username that is another user's email, or an email that is
        another user's username, is 409; a bad name is 400."""
        code, _, _ = yield d(self.v3("POST", "/users", {"user": {
            "name": "ann@example.org", "email": "other@example.org"}}))
        self.assertEqual(code, 409)
        yield d(self.v3("POST", "/users", {"user": {"name": "carol"}}))
        code, _, _ = yield d(self.v3("POST", "/users", {"user": {
            "name": "dave", "email": "carol"}}))
        self.assertEqual(code, 400)  # not an email address
        code, _, _ = yield d(self.v3("POST", "/users", {"user": {"name": "CAROL"}}))
        self.assertEqual(code, 409)
        code, body, _ = yield d(self.v3("POST", "/users", {"user": {"name": "has space"}}))
        self.assertEqual((code, body["error"]["code"]), (400, 400))
        code, _, _ = yield d(self.v3("POST", "/users", {"user": {
            "name": "x", "domain_id": "elsewhere"}}))
        self.assertEqual(code, 404)

    @defer.inlineCallbacks
    def test_duplicate_is_409(self):
        code, _, _ = yield d(self.v3("POST", "/users", {"user": {"name": "ANN@example.org"}}))
        self.assertEqual(code, 409)

    @defer.inlineCallbacks
    def test_update(self):
        """PATCH changes the email (the login name), the description, the
        password, and disables (deactivates: logins and tokens end) and
        enables the user."""
        code, body, _ = yield d(self.v3("PATCH", f"/users/{self.ann}", {"user": {
            "name": "ann.lee@example.org", "description": "Ann Lee-Smith",
            "password": "a brand new password"}}))
        self.assertEqual(code, 200)
        self.assertEqual((body["user"]["name"], body["user"]["description"]),
                         ("ann.lee@example.org", "Ann Lee-Smith"))
        code, _, _ = yield d(self.login("ann.lee@example.org", "a brand new password"))
        self.assertEqual(code, 201)
        code, body, _ = yield d(self.v3("PATCH", f"/users/{self.ann}",
                                        {"user": {"enabled": False}}))
        self.assertFalse(body["user"]["enabled"])
        code, _, _ = yield d(self.login("ann.lee@example.org", "a brand new password"))
        self.assertEqual(code, 401)
        code, body, _ = yield d(self.v3("PATCH", f"/users/{self.ann}",
                                        {"user": {"enabled": True}}))
        self.assertTrue(body["user"]["enabled"])
        code, _, _ = yield d(self.login("ann.lee@example.org", "a brand new password"))
        self.assertEqual(code, 201)

    @defer.inlineCallbacks
    def test_default_project(self):
        """default_project_id names an existing project; an unknown one is
        400."""
        pid = yield d(self.new_project())
        code, body, _ = yield d(self.v3("PATCH", f"/users/{self.ann}",
                                        {"user": {"default_project_id": pid}}))
        self.assertEqual((code, body["user"]["default_project_id"]), (200, pid))
        code, _, _ = yield d(self.v3("PATCH", f"/users/{self.ann}", {"user": {
            "default_project_id": "0f0f0f0f-0000-4000-8000-000000000000"}}))
        self.assertEqual(code, 400)

    @defer.inlineCallbacks
    def test_delete(self):
        """DELETE removes the user: 204, then 404, and its token is refused."""
        code, _, _ = yield d(self.v3("DELETE", f"/users/{self.ann}"))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("GET", f"/users/{self.ann}"))
        self.assertEqual(code, 404)
        code, _, _ = yield d(self.v3("GET", "/auth/projects", token=self.ann_token))
        self.assertEqual(code, 401)

    @defer.inlineCallbacks
    def test_policy(self):
        """A user reads itself and its projects, not others; creating,
        listing, changing and deleting users need an administrator."""
        code, _, _ = yield d(self.v3("GET", f"/users/{self.ann}", token=self.ann_token))
        self.assertEqual(code, 200)
        code, body, _ = yield d(self.v3("GET", f"/users/{self.ann}/projects",
                                        token=self.ann_token))
        self.assertEqual([p["id"] for p in body["projects"]], [self.ann])
        for method, path, body in (("GET", f"/users/{self.admin}", None),
                                   ("GET", "/users", None),
                                   ("POST", "/users", {"user": {"name": "x@example.org"}}),
                                   ("PATCH", f"/users/{self.ann}", {"user": {}}),
                                   ("DELETE", f"/users/{self.admin}", None)):
            code, err, _ = yield d(self.v3(method, path, body, token=self.ann_token))
            self.assertEqual((code, err["error"]["code"]), (403, 403), (method, path))

    @defer.inlineCallbacks
    def test_own_password(self):
        """POST /users/<id>/password with the original password, as in
        Keystone no token needed: 204, the new password logs in, the old
        token is refused; a wrong original is 401, whoever asks."""
        path = f"/users/{self.ann}/password"
        code, _, _ = yield d(self.v3("POST", path, {"user": {
            "original_password": "wrong", "password": "another long one"}},
            token=self.ann_token))
        self.assertEqual(code, 401)
        code, _, _ = yield d(self.call("POST", V3 + path, {"user": {
            "original_password": "wrong", "password": "another long one"}}))
        self.assertEqual(code, 401)
        code, _, _ = yield d(self.call("POST", V3 + path, {"user": {
            "original_password": PASSWORD, "password": "another long one"}}))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.login("ann@example.org", "another long one"))
        self.assertEqual(code, 201)
        code, _, _ = yield d(self.login("ann@example.org", PASSWORD))
        self.assertEqual(code, 401)
        code, _, _ = yield d(self.v3("GET", "/auth/projects", token=self.ann_token))
        self.assertEqual(code, 401)


    @defer.inlineCallbacks
    def test_password_change_is_throttled_as_logins(self):
        """Guessing the original password through /password is counted as
        failed logins are: after the account's limit, 429, even with the
        right one."""
        path = V3 + f"/users/{self.ann}/password"
        codes = []
        for _ in range(6):
            code, _, _ = yield d(self.call("POST", path, {"user": {
                "original_password": "a guess", "password": "another long one"}}))
            codes.append(code)
        self.assertEqual(codes[:5], [401] * 5)
        self.assertEqual(codes[5], 429)
        code, _, _ = yield d(self.call("POST", path, {"user": {
            "original_password": PASSWORD, "password": "another long one"}}))
        self.assertEqual(code, 429)


class ProjectTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_create_is_active_with_quota(self):
        """An administrator's project is active at once, in the Default
        domain's flat tree, with the resources' project defaults."""
        code, body, _ = yield d(self.v3("POST", "/projects", {"project": {
            "name": "web-team", "description": "The web team", "domain_id": "default"}}))
        self.assertEqual(code, 201)
        project = body["project"]
        self.assertEqual((project["name"], project["description"], project["enabled"],
                          project["parent_id"], project["is_domain"], project["domain_id"]),
                         ("web-team", "The web team", True, "default", False, "default"))
        state = yield d(self.services["identity"].projects.alive_projects([project["id"]]))
        self.assertEqual((state[0].state, state[0].system_project), ("active", False))

    @defer.inlineCallbacks
    def test_duplicate_name_is_409_and_bad_parent_403(self):
        yield d(self.new_project())
        code, _, _ = yield d(self.v3("POST", "/projects", {"project": {"name": "web-team"}}))
        self.assertEqual(code, 409)
        code, _, _ = yield d(self.v3("POST", "/projects", {"project": {
            "name": "other", "parent_id": self.ann}}))
        self.assertEqual(code, 403)
        code, _, _ = yield d(self.v3("POST", "/projects", {"project": {
            "name": "other", "is_domain": True}}))
        self.assertEqual(code, 403)

    @defer.inlineCallbacks
    def test_list_show_filters(self):
        """Administrators list every project (base projects included),
        filtered by name, enabled, domain_id, parent_id; a user lists its
        own with /users/<id>/projects (GET /projects is 403, as in
        Keystone) and may not show others' (403)."""
        pid = yield d(self.new_project())
        _, body, _ = yield d(self.v3("GET", "/projects"))
        self.assertLessEqual({self.admin, self.ann, pid}, {p["id"] for p in body["projects"]})
        _, body, _ = yield d(self.v3("GET", "/projects?name=web-team&parent_id=default"))
        self.assertEqual([p["id"] for p in body["projects"]], [pid])
        _, body, _ = yield d(self.v3("GET", "/projects?enabled=false"))
        self.assertEqual(body["projects"], [])
        _, body, _ = yield d(self.v3("GET", "/projects?domain_id=nope"))
        self.assertEqual(body["projects"], [])
        code, _, _ = yield d(self.v3("GET", "/projects", token=self.ann_token))
        self.assertEqual(code, 403)
        _, body, _ = yield d(self.v3("GET", f"/users/{self.ann}/projects",
                                     token=self.ann_token))
        self.assertEqual([(p["id"], p["name"]) for p in body["projects"]],
                         [(self.ann, f"system:{self.ann}")])
        code, _, _ = yield d(self.v3("GET", f"/projects/{pid}", token=self.ann_token))
        self.assertEqual(code, 403)
        code, body, _ = yield d(self.v3("GET", f"/projects/{pid}"))
        self.assertEqual((code, body["project"]["name"]), (200, "web-team"))

    @defer.inlineCallbacks
    def test_update_and_delete(self):
        """PATCH renames, describes, disables (suspends) and enables; DELETE
        terminates (then 404, and the name is free again)."""
        pid = yield d(self.new_project())
        code, body, _ = yield d(self.v3("PATCH", f"/projects/{pid}", {"project": {
            "name": "web-team-2", "description": "renamed", "enabled": False}}))
        self.assertEqual(code, 200)
        self.assertEqual((body["project"]["name"], body["project"]["description"],
                          body["project"]["enabled"]), ("web-team-2", "renamed", False))
        state = yield d(self.services["identity"].projects.alive_projects([pid]))
        self.assertEqual(state[0].state, "suspended")
        code, body, _ = yield d(self.v3("PATCH", f"/projects/{pid}",
                                        {"project": {"enabled": True}}))
        self.assertTrue(body["project"]["enabled"])
        code, _, _ = yield d(self.v3("DELETE", f"/projects/{pid}"))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("GET", f"/projects/{pid}"))
        self.assertEqual(code, 404)
        yield d(self.new_project("web-team-2"))

    @defer.inlineCallbacks
    def test_base_project_is_the_users(self):
        """A user's base project cannot be renamed, disabled or deleted (403)."""
        for method, body in (("PATCH", {"project": {"name": "mine"}}),
                             ("PATCH", {"project": {"enabled": False}}),
                             ("DELETE", None)):
            code, _, _ = yield d(self.v3(method, f"/projects/{self.ann}", body))
            self.assertEqual(code, 403)

    @defer.inlineCallbacks
    def test_users_may_not_manage_projects(self):
        pid = yield d(self.new_project())
        for method, path, body in (("POST", "/projects", {"project": {"name": "x"}}),
                                   ("PATCH", f"/projects/{pid}", {"project": {}}),
                                   ("DELETE", f"/projects/{pid}", None)):
            code, _, _ = yield d(self.v3(method, path, body, token=self.ann_token))
            self.assertEqual(code, 403)


class ProjectTagTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_tags(self):
        """Tags given at creation are shown and listed; the tag calls add,
        check, remove and replace them; the list filters select by them;
        a bad tag is 400; a plain user may not change them."""
        pid = yield d(self.new_project(tags=["blue", "big"]))
        other = yield d(self.new_project("other", tags=["blue"]))
        _, body, _ = yield d(self.v3("GET", f"/projects/{pid}"))
        self.assertEqual(body["project"]["tags"], ["blue", "big"])
        code, _, _ = yield d(self.v3("PUT", f"/projects/{pid}/tags/fast"))
        self.assertEqual(code, 201)
        code, _, _ = yield d(self.v3("GET", f"/projects/{pid}/tags/fast"))
        self.assertEqual(code, 204)
        _, body, _ = yield d(self.v3("GET", f"/projects/{pid}/tags"))
        self.assertEqual(body["tags"], ["blue", "big", "fast"])
        for query, expected in (("tags=blue,big", {pid}), ("tags-any=big,blue", {pid, other}),
                                ("not-tags=blue,big", {other}), ("not-tags-any=big", {other})):
            _, body, _ = yield d(self.v3("GET", f"/projects?{query}"))
            self.assertEqual({p["id"] for p in body["projects"]} & {pid, other}, expected,
                             query)
        code, _, _ = yield d(self.v3("DELETE", f"/projects/{pid}/tags/fast"))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("DELETE", f"/projects/{pid}/tags/fast"))
        self.assertEqual(code, 404)
        code, body, _ = yield d(self.v3("PUT", f"/projects/{pid}/tags", {"tags": ["x", "y"]}))
        self.assertEqual((code, body["tags"]), (200, ["x", "y"]))
        code, _, _ = yield d(self.v3("PATCH", f"/projects/{pid}",
                                     {"project": {"tags": ["a,b"]}}))
        self.assertEqual(code, 400)
        code, _, _ = yield d(self.v3("PUT", f"/projects/{pid}/tags",
                                     {"tags": [str(i) for i in range(81)]}))
        self.assertEqual(code, 400)
        code, _, _ = yield d(self.v3("PUT", f"/projects/{pid}/tags/z", token=self.ann_token))
        self.assertEqual(code, 403)


class UserExtraTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_extra_properties_are_kept(self):
        """Properties Keystone's API does not define are stored and shown
        back, changed by an update and removed by null."""
        code, body, _ = yield d(self.v3("POST", "/users", {"user": {
            "name": "eve", "project_id": "p-1", "team": {"size": 3}}}))
        self.assertEqual(code, 201)
        uid = body["user"]["id"]
        self.assertEqual((body["user"]["project_id"], body["user"]["team"]),
                         ("p-1", {"size": 3}))
        _, body, _ = yield d(self.v3("PATCH", f"/users/{uid}", {"user": {
            "project_id": "p-2", "team": None}}))
        self.assertEqual(body["user"]["project_id"], "p-2")
        self.assertNotIn("team", body["user"])
        _, body, _ = yield d(self.v3("GET", f"/users/{uid}"))
        self.assertEqual((body["user"]["project_id"], body["user"]["name"]), ("p-2", "eve"))


class RoleTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_roles_and_inferences(self):
        """The six fixed roles are listed and shown; member implies
        reader, manager member, admin manager; they cannot be created."""
        _, body, _ = yield d(self.v3("GET", "/roles", token=self.ann_token))
        self.assertEqual([r["name"] for r in body["roles"]],
                         ["admin", "manager", "member", "reader", "service", "ResellerAdmin"])
        _, body, _ = yield d(self.v3("GET", "/roles?name=member"))
        self.assertEqual([r["id"] for r in body["roles"]], [MEMBER])
        code, body, _ = yield d(self.v3("GET", f"/roles/{READER}"))
        self.assertEqual((code, body["role"]["name"]), (200, "reader"))
        _, body, _ = yield d(self.v3("GET", f"/roles/{ADMIN}/implies"))
        self.assertEqual([r["name"] for r in body["role_inference"]["implies"]], ["manager"])
        code, _, _ = yield d(self.v3("GET", f"/roles/{MEMBER}/implies/{READER}"))
        self.assertEqual(code, 200)
        code, _, _ = yield d(self.v3("GET", f"/roles/{READER}/implies/{MEMBER}"))
        self.assertEqual(code, 404)
        _, body, _ = yield d(self.v3("GET", "/role_inferences"))
        self.assertEqual({(i["prior_role"]["name"], i["implies"][0]["name"])
                          for i in body["role_inferences"]},
                         {("admin", "manager"), ("manager", "member"), ("member", "reader")})
        code, body, _ = yield d(self.v3("POST", "/roles", {"role": {"name": "x"}}))
        self.assertEqual(code, 403)
        self.assertIn("fixed", body["error"]["message"])
        code, _, _ = yield d(self.v3("GET", "/roles/nothing"))
        self.assertEqual(code, 404)


class AssignmentTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_grant_member_enrolls_and_token_roles(self):
        """Granting member enrolls the user: it scopes a token to the
        project, whose roles are member and reader; the grant is checked
        (204), listed, and revoking it removes the membership."""
        pid = yield d(self.new_project())
        code, _, _ = yield d(self.scoped("ann@example.org", pid))
        self.assertEqual(code, 401)
        grant = f"/projects/{pid}/users/{self.ann}/roles/{MEMBER}"
        code, _, _ = yield d(self.v3("PUT", grant))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("HEAD", grant))
        self.assertEqual(code, 204)
        code, body, _ = yield d(self.scoped("ann@example.org", pid))
        self.assertEqual(code, 201)
        self.assertEqual([r["name"] for r in body["token"]["roles"]], ["member", "reader"])
        _, body, _ = yield d(self.v3("GET", f"/projects/{pid}/users/{self.ann}/roles",
                                     token=self.ann_token))
        self.assertEqual([r["name"] for r in body["roles"]], ["member"])
        _, body, _ = yield d(self.v3("GET", f"/projects/{pid}", token=self.ann_token))
        self.assertEqual(body["project"]["id"], pid)
        code, _, _ = yield d(self.v3("DELETE", grant))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("HEAD", grant))
        self.assertEqual(code, 404)
        code, _, _ = yield d(self.v3("DELETE", grant))
        self.assertEqual(code, 404)
        code, _, _ = yield d(self.scoped("ann@example.org", pid))
        self.assertEqual(code, 401)

    @defer.inlineCallbacks
    def test_reader_is_told_apart(self):
        """A reader's token lists only reader; adding member later gives
        both; revoking member leaves the reader enrolled."""
        pid = yield d(self.new_project())
        yield d(self.v3("PUT", f"/projects/{pid}/users/{self.ann}/roles/{READER}"))
        _, body, _ = yield d(self.scoped("ann@example.org", pid))
        self.assertEqual([r["name"] for r in body["token"]["roles"]], ["reader"])
        yield d(self.v3("PUT", f"/projects/{pid}/users/{self.ann}/roles/{MEMBER}"))
        _, body, _ = yield d(self.scoped("ann@example.org", pid))
        self.assertEqual([r["name"] for r in body["token"]["roles"]], ["member", "reader"])
        yield d(self.v3("DELETE", f"/projects/{pid}/users/{self.ann}/roles/{MEMBER}"))
        code, body, _ = yield d(self.scoped("ann@example.org", pid))
        self.assertEqual((code, [r["name"] for r in body["token"]["roles"]]),
                         (201, ["reader"]))

    @defer.inlineCallbacks
    def test_admin_role_is_the_astakos_admin(self):
        """Granting admin makes the user an administrator (its token says
        admin, member, reader; it may list users); revoking it ends that."""
        pid = yield d(self.new_project())
        yield d(self.v3("PUT", f"/projects/{pid}/users/{self.ann}/roles/{ADMIN}"))
        code, body, headers = yield d(self.scoped("ann@example.org", pid))
        self.assertEqual([r["name"] for r in body["token"]["roles"]],
                         ["admin", "manager", "member", "reader"])
        code, _, _ = yield d(self.v3("GET", "/users", token=subject(headers)))
        self.assertEqual(code, 200)
        code, _, _ = yield d(self.v3("DELETE", f"/projects/{pid}/users/{self.ann}/roles/{ADMIN}"))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("GET", "/users", token=self.ann_token))
        self.assertEqual(code, 403)
        code, _, _ = yield d(self.scoped("ann@example.org", pid))
        self.assertEqual(code, 401)

    @defer.inlineCallbacks
    def test_admin_holds_while_a_grant_remains(self):
        """Admin granted on two projects and revoked on one (what tempest's
        cleanups do) leaves the user an administrator; revoked on the other
        too, it ends."""
        p1 = yield d(self.new_project("one"))
        p2 = yield d(self.new_project("two"))
        for pid in (p1, p2):
            yield d(self.v3("PUT", f"/projects/{pid}/users/{self.ann}/roles/{ADMIN}"))
        code, _, _ = yield d(self.v3("DELETE", f"/projects/{p2}/users/{self.ann}/roles/{ADMIN}"))
        self.assertEqual(code, 204)
        code, body, headers = yield d(self.scoped("ann@example.org", p1))
        self.assertEqual([r["name"] for r in body["token"]["roles"]],
                         ["admin", "manager", "member", "reader"])
        code, _, _ = yield d(self.v3("GET", "/users", token=subject(headers)))
        self.assertEqual(code, 200)
        code, _, _ = yield d(self.v3("DELETE", f"/projects/{p1}/users/{self.ann}/roles/{ADMIN}"))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("GET", "/users", token=self.ann_token))
        self.assertEqual(code, 403)

    @defer.inlineCallbacks
    def test_reseller_admin_role(self):
        """ResellerAdmin is granted on a project like member: a token
        scoped there carries it, and so does the caller the object store
        sees (``Principal.roles``); the user's unscoped token does not."""
        pid = yield d(self.new_project())
        reseller = roles.role_id("ResellerAdmin")
        _, body, _ = yield d(self.v3("GET", "/roles?name=ResellerAdmin"))
        self.assertEqual([r["id"] for r in body["roles"]], [reseller])
        code, _, _ = yield d(self.v3("PUT", f"/projects/{pid}/users/{self.ann}/roles/{reseller}"))
        self.assertEqual(code, 204)
        code, body, headers = yield d(self.scoped("ann@example.org", pid))
        self.assertEqual([r["name"] for r in body["token"]["roles"]], ["ResellerAdmin"])
        principal = yield d(self.accounts.authenticate(subject(headers)))
        self.assertEqual(principal.roles, ("ResellerAdmin",))
        unscoped = yield d(self.accounts.authenticate(self.ann_token))
        self.assertEqual(unscoped.roles, ())

    @defer.inlineCallbacks
    def test_role_assignments(self):
        """GET /role_assignments with user.id, scope.project.id, role.id,
        include_names and effective (implied roles listed too)."""
        pid = yield d(self.new_project())
        yield d(self.v3("PUT", f"/projects/{pid}/users/{self.ann}/roles/{MEMBER}"))
        _, body, _ = yield d(self.v3(
            "GET", f"/role_assignments?scope.project.id={pid}&include_names"))
        self.assertEqual(len(body["role_assignments"]), 1)
        a = body["role_assignments"][0]
        self.assertEqual(a["role"], {"id": MEMBER, "name": "member"})
        self.assertEqual((a["user"]["id"], a["user"]["name"]), (self.ann, "ann@example.org"))
        self.assertEqual((a["scope"]["project"]["id"], a["scope"]["project"]["name"]),
                         (pid, "web-team"))
        self.assertTrue(a["links"]["assignment"].endswith(
            f"/v3/projects/{pid}/users/{self.ann}/roles/{MEMBER}"))
        _, body, _ = yield d(self.v3("GET", f"/role_assignments?user.id={self.ann}"))
        self.assertEqual({(a["scope"]["project"]["id"], a["role"]["id"])
                          for a in body["role_assignments"]},
                         {(self.ann, MEMBER), (pid, MEMBER)})
        _, body, _ = yield d(self.v3(
            "GET", f"/role_assignments?user.id={self.ann}&scope.project.id={pid}&effective"))
        self.assertEqual([a["role"]["id"] for a in body["role_assignments"]], [MEMBER, READER])
        _, body, _ = yield d(self.v3("GET", f"/role_assignments?role.id={READER}"))
        self.assertEqual(body["role_assignments"], [])
        _, body, _ = yield d(self.v3("GET", "/role_assignments"))
        self.assertIn((self.admin, ADMIN), {(a["user"]["id"], a["role"]["id"])
                                            for a in body["role_assignments"]})

    @defer.inlineCallbacks
    def test_users_read_only_their_assignments(self):
        """A user lists its own assignments and roles; not others', and it
        grants nothing."""
        code, body, _ = yield d(self.v3("GET", f"/role_assignments?user.id={self.ann}",
                                        token=self.ann_token))
        self.assertEqual((code, len(body["role_assignments"])), (200, 1))
        for path in ("/role_assignments", f"/role_assignments?user.id={self.admin}",
                     f"/projects/{self.admin}/users/{self.admin}/roles"):
            code, _, _ = yield d(self.v3("GET", path, token=self.ann_token))
            self.assertEqual(code, 403, path)
        pid = yield d(self.new_project())
        code, _, _ = yield d(self.v3("PUT", f"/projects/{pid}/users/{self.ann}/roles/{MEMBER}",
                                     token=self.ann_token))
        self.assertEqual(code, 403)

    @defer.inlineCallbacks
    def test_base_projects_keep_their_user(self):
        """Nobody else can be granted a role on a user's base project, and
        its user cannot lose its last role there."""
        code, _, _ = yield d(self.v3("PUT", f"/projects/{self.ann}/users/{self.admin}/roles/"
                                     f"{MEMBER}"))
        self.assertEqual(code, 403)
        code, _, _ = yield d(self.v3("DELETE", f"/projects/{self.ann}/users/{self.ann}/roles/"
                                     f"{MEMBER}"))
        self.assertEqual(code, 403)

    @defer.inlineCallbacks
    def test_unknowns_are_404(self):
        pid = yield d(self.new_project())
        for path in (f"/projects/{pid}/users/{self.ann}/roles/nope",
                     f"/projects/{pid}/users/0f0f0f0f-0000-4000-8000-000000000000/roles/{MEMBER}",
                     f"/projects/0f0f0f0f-0000-4000-8000-000000000000/users/{self.ann}/roles/"
                     f"{MEMBER}"):
            code, body, _ = yield d(self.v3("PUT", path))
            self.assertEqual((code, body["error"]["code"]), (404, 404), path)


class SystemScopeTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_system_reader_reads_and_cannot_write(self):
        """A reader on the system gets a token scoped to the system
        (``system: {all: true}``, roles reader); with it, it lists and shows
        users, projects and assignments, and is refused every change."""
        grant = f"/system/users/{self.ann}/roles/{READER}"
        code, _, _ = yield d(self.login("ann@example.org", scope={"system": {"all": True}}))
        self.assertEqual(code, 401)  # no role on the system yet
        code, _, _ = yield d(self.v3("PUT", grant, token=self.ann_token))
        self.assertEqual(code, 403)
        code, _, _ = yield d(self.v3("PUT", grant))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("HEAD", grant))
        self.assertEqual(code, 204)
        _, body, _ = yield d(self.v3("GET", f"/system/users/{self.ann}/roles"))
        self.assertEqual([r["name"] for r in body["roles"]], ["reader"])
        code, body, headers = yield d(self.login("ann@example.org",
                                                 scope={"system": {"all": True}}))
        self.assertEqual(code, 201)
        token = body["token"]
        self.assertEqual((token["system"], [r["name"] for r in token["roles"]]),
                         ({"all": True}, ["reader"]))
        self.assertNotIn("project", token)
        reader = subject(headers)
        code, body, _ = yield d(self.v3("GET", "/auth/tokens", token=reader,
                                        headers={"X-Subject-Token": reader}))
        self.assertEqual((code, body["token"]["system"]), (200, {"all": True}))
        pid = yield d(self.new_project())
        for path in ("/users", f"/users/{self.admin}", "/projects", f"/projects/{pid}",
                     f"/users/{self.admin}/projects", "/role_assignments", "/groups"):
            code, _, _ = yield d(self.v3("GET", path, token=reader))
            self.assertEqual(code, 200, path)
        for method, path, data in (
                ("POST", "/users", {"user": {"name": "x@example.org"}}),
                ("POST", "/projects", {"project": {"name": "x"}}),
                ("PATCH", f"/projects/{pid}", {"project": {"description": "x"}}),
                ("PUT", f"/projects/{pid}/users/{self.ann}/roles/{MEMBER}", None),
                ("DELETE", f"/users/{self.admin}", None)):
            code, _, _ = yield d(self.v3(method, path, data, token=reader))
            self.assertEqual(code, 403, (method, path))
        # Her project-scoped token reads only what is hers.
        code, _, _ = yield d(self.v3("GET", "/users", token=self.ann_token))
        self.assertEqual(code, 403)

    @defer.inlineCallbacks
    def test_system_assignments_are_listed_and_revoked(self):
        """System grants appear in /role_assignments with a system scope
        (administrators hold admin there); ``scope.system`` filters them;
        revoking ends the system token's access."""
        yield d(self.v3("PUT", f"/system/users/{self.ann}/roles/{READER}"))
        _, body, _ = yield d(self.v3("GET", "/role_assignments?scope.system=all"
                                            "&include_names=true"))
        found = {(a["user"]["id"], a["role"]["name"]) for a in body["role_assignments"]}
        self.assertLessEqual({(self.ann, "reader"), (self.admin, "admin")}, found)
        self.assertEqual({r for _, r in found}, {"reader", "admin"})
        self.assertTrue(all(a["scope"] == {"system": {"all": True}}
                            for a in body["role_assignments"]))
        _, body, _ = yield d(self.v3("GET", f"/role_assignments?user.id={self.admin}"
                                            "&effective=true&scope.system=all"))
        self.assertEqual(sorted(a["role"]["id"] for a in body["role_assignments"]),
                         sorted([ADMIN, roles.role_id("manager"), MEMBER, READER]))
        _, body, _ = yield d(self.v3("GET", f"/role_assignments?user.id={self.ann}"))
        self.assertIn({"system": {"all": True}}, [a["scope"] for a in body["role_assignments"]])
        code, body, _ = yield d(self.v3("GET", "/role_assignments?user.id=nobody"))
        self.assertEqual((code, body["role_assignments"]), (200, []))
        code, _, _ = yield d(self.v3("PUT", f"/system/users/{self.ann}/roles/"
                                            f"{roles.role_id('service')}"))
        self.assertEqual(code, 403)
        code, _, _ = yield d(self.v3("DELETE", f"/system/users/{self.ann}/roles/{READER}"))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("DELETE", f"/system/users/{self.ann}/roles/{READER}"))
        self.assertEqual(code, 404)
        code, _, _ = yield d(self.login("ann@example.org", scope={"system": {"all": True}}))
        self.assertEqual(code, 401)

    @defer.inlineCallbacks
    def test_system_admin_is_the_administrator_flag(self):
        """admin on the system makes an administrator (its system token
        says admin, member, reader and may create users); revoking it ends
        that."""
        yield d(self.v3("PUT", f"/system/users/{self.ann}/roles/{ADMIN}"))
        code, body, headers = yield d(self.login("ann@example.org",
                                                 scope={"system": {"all": True}}))
        self.assertEqual([r["name"] for r in body["token"]["roles"]],
                         ["admin", "manager", "member", "reader"])
        code, _, _ = yield d(self.v3("POST", "/users", {"user": {"name": "c@example.org"}},
                                     token=subject(headers)))
        self.assertEqual(code, 201)
        yield d(self.v3("DELETE", f"/system/users/{self.ann}/roles/{ADMIN}"))
        code, _, _ = yield d(self.v3("GET", "/users", token=self.ann_token))
        self.assertEqual(code, 403)


class GroupTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_crud_and_members(self):
        """Groups are created, listed, shown, renamed (members follow),
        filled, checked, listed by user, emptied and deleted."""
        code, body, _ = yield d(self.v3("POST", "/groups", {"group": {
            "name": "ops", "description": "Operators"}}))
        self.assertEqual(code, 201)
        gid = body["group"]["id"]
        code, _, _ = yield d(self.v3("POST", "/groups", {"group": {"name": "ops"}}))
        self.assertEqual(code, 409)
        code, _, _ = yield d(self.v3("PUT", f"/groups/{gid}/users/{self.ann}"))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("HEAD", f"/groups/{gid}/users/{self.ann}"))
        self.assertEqual(code, 204)
        code, body, _ = yield d(self.v3("PATCH", f"/groups/{gid}", {"group": {"name": "sre"}}))
        self.assertEqual((code, body["group"]["name"]), (200, "sre"))
        _, body, _ = yield d(self.v3("GET", f"/groups/{gid}/users"))
        self.assertEqual([u["id"] for u in body["users"]], [self.ann])
        _, body, _ = yield d(self.v3("GET", f"/users/{self.ann}/groups", token=self.ann_token))
        self.assertEqual([g["name"] for g in body["groups"]], ["sre"])
        _, body, _ = yield d(self.v3("GET", "/groups?name=sre"))
        self.assertEqual([g["id"] for g in body["groups"]], [gid])
        code, _, _ = yield d(self.v3("DELETE", f"/groups/{gid}/users/{self.ann}"))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("HEAD", f"/groups/{gid}/users/{self.ann}"))
        self.assertEqual(code, 404)
        code, _, _ = yield d(self.v3("DELETE", f"/groups/{gid}"))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("GET", f"/groups/{gid}"))
        self.assertEqual(code, 404)
        code, _, _ = yield d(self.v3("GET", "/groups", token=self.ann_token))
        self.assertEqual(code, 403)

    @defer.inlineCallbacks
    def test_group_grant(self):
        """A role granted to a group on a project enrolls its members
        (present and future): they scope tokens there; effective listings
        show it through the group; revoking it removes them."""
        pid = yield d(self.new_project())
        _, body, _ = yield d(self.v3("POST", "/groups", {"group": {"name": "ops"}}))
        gid = body["group"]["id"]
        yield d(self.v3("PUT", f"/groups/{gid}/users/{self.ann}"))
        code, _, _ = yield d(self.v3("PUT", f"/projects/{pid}/groups/{gid}/roles/{MEMBER}"))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("HEAD", f"/projects/{pid}/groups/{gid}/roles/{MEMBER}"))
        self.assertEqual(code, 204)
        code, body, _ = yield d(self.scoped("ann@example.org", pid))
        # Astakos groups are roles in tokens too (Synnefo's behaviour).
        self.assertEqual([r["name"] for r in body["token"]["roles"]],
                         ["member", "reader", "ops"])
        _, body, _ = yield d(self.v3("GET", f"/role_assignments?group.id={gid}"))
        self.assertEqual([(a["group"]["id"], a["role"]["id"]) for a in body["role_assignments"]],
                         [(gid, MEMBER)])
        _, body, _ = yield d(self.v3(
            "GET", f"/role_assignments?effective&user.id={self.ann}&scope.project.id={pid}"))
        self.assertEqual([(a["role"]["id"], "membership" in a["links"])
                          for a in body["role_assignments"]], [(MEMBER, True), (READER, True)])
        bob, _ = yield d(self.user("bob@example.org"))
        yield d(self.v3("PUT", f"/groups/{gid}/users/{bob}"))
        code, _, _ = yield d(self.scoped("bob@example.org", pid))
        self.assertEqual(code, 201)
        code, _, _ = yield d(self.v3("DELETE", f"/projects/{pid}/groups/{gid}/roles/{MEMBER}"))
        self.assertEqual(code, 204)
        for email in ("ann@example.org", "bob@example.org"):
            code, _, _ = yield d(self.scoped(email, pid))
            self.assertEqual(code, 401)
        code, _, _ = yield d(self.v3("PUT", f"/projects/{pid}/groups/{gid}/roles/{ADMIN}"))
        self.assertEqual(code, 403)


class DomainAndTokenTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_domains_are_fixed(self):
        """Default is listed and shown; creating, changing or deleting a
        domain is 403 with a message saying why."""
        _, body, _ = yield d(self.v3("GET", "/domains"))
        self.assertEqual([x["id"] for x in body["domains"]], ["default"])
        for method, path, body in (("POST", "/domains", {"domain": {"name": "other"}}),
                                   ("PATCH", "/domains/default", {"domain": {}}),
                                   ("DELETE", "/domains/default", None)):
            code, err, _ = yield d(self.v3(method, path, body))
            self.assertEqual(code, 403)
            self.assertIn("one domain", err["error"]["message"])

    @defer.inlineCallbacks
    def test_allow_expired(self):
        """An expired token is 404 to GET /auth/tokens, shown with
        allow_expired=true to an administrator, and that flag is 403 for a
        plain user."""
        _, _, headers = yield d(self.login("ann@example.org"))
        token = subject(headers)
        self.clock.advance(datetime.timedelta(days=31).total_seconds())
        _, _, fresh = yield d(self.login("root@example.org", scope={"project": {
            "id": self.admin}}))
        admin = subject(fresh)
        code, _, _ = yield d(self.v3("GET", "/auth/tokens", token=admin,
                                     headers={"X-Subject-Token": token}))
        self.assertEqual(code, 404)
        code, body, _ = yield d(self.v3("GET", "/auth/tokens?allow_expired=true", token=admin,
                                        headers={"X-Subject-Token": token}))
        self.assertEqual((code, body["token"]["user"]["id"]), (200, self.ann))
        _, _, mine = yield d(self.login("ann@example.org"))
        code, _, _ = yield d(self.v3("GET", "/auth/tokens?allow_expired=true",
                                     token=subject(mine), headers={"X-Subject-Token": token}))
        self.assertEqual(code, 403)
