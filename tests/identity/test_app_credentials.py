"""Application credentials in process over a real PostgreSQL: create,
list, show, delete; the ``application_credential`` authentication method
by id and by name; what a token from one may do (roles, restriction,
access rules); and what ends them (expiry, deletion, deactivation, the
loss of the project)."""

from __future__ import annotations

import datetime
import uuid

import psycopg2
from twisted.internet import defer, threads

from snfd.testing.node import free_port
from snfd.testing.nodecase import NodeTestCase
from snfd.testing.stubhttp import serve
from snfd.web.auth import path_matches
from tests.identity.test_keystone import PASSWORD, KeystoneTestCase, d, subject

APPS = "/identity/v3/users/{}/application_credentials"


class AppCredentialTestCase(KeystoneTestCase):
    async def scoped(self, email: str, admin: bool = False) -> tuple[str, str]:
        """An active user and a token scoped to its base project (whose
        roles are kept in ``self.held``)."""
        uid, _ = await self.user(email, admin=admin)
        _, body, headers = await self.login(email, scope={"project": {"id": uid}})
        self.held = [r["name"] for r in body["token"]["roles"]]
        return uid, subject(headers)

    async def create(self, uid: str, token: str, **fields):
        fields.setdefault("name", "app-" + uuid.uuid4().hex[:8])
        return await self.call("POST", APPS.format(uid), {"application_credential": fields},
                               headers={"X-Auth-Token": token})

    async def app_login(self, cred: dict, scope=None):
        auth = {"identity": {"methods": ["application_credential"],
                             "application_credential": cred}}
        if scope is not None:
            auth["scope"] = scope
        return await self.call("POST", "/identity/v3/auth/tokens", {"auth": auth})

    def sql(self, statement: str, *args) -> None:
        conn = psycopg2.connect(self.dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(statement, args)
        finally:
            conn.close()


class ManageTests(AppCredentialTestCase):
    @defer.inlineCallbacks
    def test_create_show_list_delete(self):
        """The secret is in the creation answer only; list filters by name;
        a deleted credential is 404."""
        uid, token = yield d(self.scoped("ann@example.org"))
        h = {"X-Auth-Token": token}
        code, body, _ = yield d(self.create(uid, token, name="ci", description="for CI"))
        self.assertEqual(code, 201)
        cred = body["application_credential"]
        self.assertTrue(cred["secret"])
        self.assertEqual((cred["name"], cred["description"], cred["project_id"]),
                         ("ci", "for CI", uid))
        self.assertIn("member", self.held)
        self.assertEqual([r["name"] for r in cred["roles"]], self.held)
        self.assertEqual((cred["unrestricted"], cred["expires_at"], cred["access_rules"]),
                         (False, None, []))
        code, body, _ = yield d(self.call("GET", APPS.format(uid) + "/" + cred["id"],
                                          headers=h))
        self.assertEqual(code, 200)
        self.assertNotIn("secret", body["application_credential"])
        yield d(self.create(uid, token, name="other"))
        code, body, _ = yield d(self.call("GET", APPS.format(uid), headers=h))
        self.assertEqual(sorted(c["name"] for c in body["application_credentials"]),
                         ["ci", "other"])
        code, body, _ = yield d(self.call("GET", APPS.format(uid) + "?name=ci", headers=h))
        self.assertEqual([c["id"] for c in body["application_credentials"]], [cred["id"]])
        code, _, _ = yield d(self.create(uid, token, name="ci"))
        self.assertEqual(code, 409)
        code, _, _ = yield d(self.call("DELETE", APPS.format(uid) + "/" + cred["id"],
                                       headers=h))
        self.assertEqual(code, 204)
        code, body, _ = yield d(self.call("GET", APPS.format(uid) + "/" + cred["id"],
                                          headers=h))
        self.assertEqual((code, body["error"]["code"]), (404, 404))

    @defer.inlineCallbacks
    def test_secret_stored_hashed(self):
        """A given secret is used as is, and the database holds only an
        argon2 hash of it."""
        uid, token = yield d(self.scoped("ann@example.org"))
        code, body, _ = yield d(self.create(uid, token, secret="my own secret 42"))
        self.assertEqual(body["application_credential"]["secret"], "my own secret 42")
        conn = psycopg2.connect(self.dsn)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT secret_hash FROM identity_app_credentials")
            stored = cur.fetchone()[0]
        conn.close()
        self.assertTrue(stored.startswith("$argon2id$"))
        self.assertNotIn("my own secret", stored)

    @defer.inlineCallbacks
    def test_expires_at_echoed_and_validated(self):
        """expires_at comes back as Keystone writes it (UTC, no offset); one
        in the past or malformed is 400."""
        uid, token = yield d(self.scoped("ann@example.org"))
        when = datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.UTC).replace(
            tzinfo=None) + datetime.timedelta(hours=1)
        code, body, _ = yield d(self.create(uid, token, expires_at=when.isoformat()))
        self.assertEqual((code, body["application_credential"]["expires_at"]),
                         (201, when.strftime("%Y-%m-%dT%H:%M:%S.%f")))
        for bad in ("2001-01-01T00:00:00Z", "tomorrow", 5):
            code, _, _ = yield d(self.create(uid, token, expires_at=bad))
            self.assertEqual(code, 400, bad)

    @defer.inlineCallbacks
    def test_bad_bodies_and_roles(self):
        """Malformed bodies are 400; a role the creator does not hold is 400;
        an unscoped token cannot create one."""
        uid, token = yield d(self.scoped("ann@example.org"))
        for fields in ({"name": ""}, {"name": 5}, {"name": "x", "bogus": 1},
                       {"name": "x", "roles": [{"name": "admin"}]},
                       {"name": "x", "roles": [{"id": "nope"}]},
                       {"name": "x", "unrestricted": "yes"},
                       {"name": "x", "access_rules": [{"service": "compute"}]},
                       {"name": "x", "access_rules": [{"service": "compute", "path": "/a",
                                                       "method": "FETCH"}]}):
            code, body, _ = yield d(self.call("POST", APPS.format(uid),
                                              {"application_credential": fields},
                                              headers={"X-Auth-Token": token}))
            self.assertEqual((code, body["error"]["code"]), (400, 400), fields)
        _, _, headers = yield d(self.login("ann@example.org"))
        code, _, _ = yield d(self.create(uid, subject(headers)))
        self.assertEqual(code, 400)

    @defer.inlineCallbacks
    def test_only_own_credentials(self):
        """Another user may neither create, list, show nor delete a user's
        credentials (403); an administrator may read and delete them."""
        ann, ann_token = yield d(self.scoped("ann@example.org"))
        _, bob_token = yield d(self.scoped("bob@example.org"))
        _, root = yield d(self.scoped("root@example.org", admin=True))
        _, body, _ = yield d(self.create(ann, ann_token))
        cid = body["application_credential"]["id"]
        code, _, _ = yield d(self.create(ann, bob_token))
        self.assertEqual(code, 403)
        for method, path in (("GET", APPS.format(ann)), ("GET", APPS.format(ann) + "/" + cid),
                             ("DELETE", APPS.format(ann) + "/" + cid)):
            code, _, _ = yield d(self.call(method, path, headers={"X-Auth-Token": bob_token}))
            self.assertEqual(code, 403, path)
        code, _, _ = yield d(self.call("GET", APPS.format(ann) + "/" + cid,
                                       headers={"X-Auth-Token": root}))
        self.assertEqual(code, 200)
        code, _, _ = yield d(self.call("DELETE", APPS.format(ann) + "/" + cid,
                                       headers={"X-Auth-Token": root}))
        self.assertEqual(code, 204)


class AuthTests(AppCredentialTestCase):
    @defer.inlineCallbacks
    def test_by_id_and_by_name(self):
        """By id and secret, by name and user id, by name and user name and
        domain: a token scoped to the credential's project with its roles,
        the method and the credential in the body."""
        uid, token = yield d(self.scoped("ann@example.org"))
        _, body, _ = yield d(self.create(uid, token, name="ci"))
        cred = body["application_credential"]
        for spec in ({"id": cred["id"], "secret": cred["secret"]},
                     {"name": "ci", "user": {"id": uid}, "secret": cred["secret"]},
                     {"name": "ci", "secret": cred["secret"],
                      "user": {"name": "ann@example.org", "domain": {"name": "Default"}}}):
            code, body, headers = yield d(self.app_login(spec))
            self.assertEqual(code, 201, spec)
            t = body["token"]
            self.assertEqual(t["methods"], ["application_credential"])
            self.assertEqual(t["project"]["id"], uid)
            self.assertEqual([r["name"] for r in t["roles"]], self.held)
            self.assertEqual(t["application_credential"],
                             {"id": cred["id"], "name": "ci", "restricted": True})
            self.assertIn("catalog", t)
            code, body, _ = yield d(self.call("GET", "/identity/v3/auth/projects",
                                              headers={"X-Auth-Token": subject(headers)}))
            self.assertEqual(code, 200)
            code, body, _ = yield d(self.call("GET", "/identity/v3/auth/tokens", headers={
                "X-Auth-Token": token, "X-Subject-Token": subject(headers)}))
            self.assertEqual(body["token"]["application_credential"]["id"], cred["id"])

    @defer.inlineCallbacks
    def test_wrong_secret_or_unknown(self):
        """A wrong secret, an unknown id or name, or a scope to another
        project is 401; a malformed method body is 400."""
        uid, token = yield d(self.scoped("ann@example.org"))
        other = self.add_project(uid, "science")
        _, body, _ = yield d(self.create(uid, token, name="ci"))
        cred = body["application_credential"]
        for spec in ({"id": cred["id"], "secret": "wrong"},
                     {"id": str(uuid.uuid4()), "secret": cred["secret"]},
                     {"id": "not-a-uuid", "secret": cred["secret"]},
                     {"name": "nope", "user": {"id": uid}, "secret": cred["secret"]},
                     {"name": "ci", "user": {"name": "bob@example.org"},
                      "secret": cred["secret"]}):
            code, body, _ = yield d(self.app_login(spec))
            self.assertEqual((code, body["error"]["code"]), (401, 401), spec)
        code, _, _ = yield d(self.app_login({"id": cred["id"], "secret": cred["secret"]},
                                            scope={"project": {"id": other}}))
        self.assertEqual(code, 401)
        code, _, _ = yield d(self.app_login({"id": cred["id"], "secret": cred["secret"]},
                                            scope={"project": {"id": uid}}))
        self.assertEqual(code, 201)
        for spec in ({"id": cred["id"]}, {"secret": "x"}, {"name": "ci", "secret": "x"}):
            code, _, _ = yield d(self.app_login(spec))
            self.assertEqual(code, 400, spec)

    @defer.inlineCallbacks
    def test_restricted_cannot_manage_credentials(self):
        """A token from a restricted credential cannot create or delete
        credentials, nor get another token (403); an unrestricted one can
        manage them."""
        uid, token = yield d(self.scoped("ann@example.org"))
        _, body, _ = yield d(self.create(uid, token, name="restricted"))
        restricted = body["application_credential"]
        _, body, _ = yield d(self.create(uid, token, name="free", unrestricted=True))
        free = body["application_credential"]
        _, _, headers = yield d(self.app_login({"id": restricted["id"],
                                                "secret": restricted["secret"]}))
        r_token = subject(headers)
        code, body, _ = yield d(self.create(uid, r_token))
        self.assertEqual((code, body["error"]["code"]), (403, 403))
        code, _, _ = yield d(self.call("DELETE", APPS.format(uid) + "/" + free["id"],
                                       headers={"X-Auth-Token": r_token}))
        self.assertEqual(code, 403)
        code, _, _ = yield d(self.call("POST", "/identity/v3/auth/tokens", {"auth": {
            "identity": {"methods": ["token"], "token": {"id": r_token}},
            "scope": {"project": {"id": uid}}}}))
        self.assertEqual(code, 403)
        code, _, _ = yield d(self.call("GET", APPS.format(uid),
                                       headers={"X-Auth-Token": r_token}))
        self.assertEqual(code, 200)
        _, _, headers = yield d(self.app_login({"id": free["id"], "secret": free["secret"]}))
        code, body, _ = yield d(self.create(uid, subject(headers), name="child"))
        self.assertEqual(code, 201)
        self.assertEqual([r["name"] for r in body["application_credential"]["roles"]],
                         self.held)

    @defer.inlineCallbacks
    def test_cannot_renew_the_users_token(self):
        """The web UI's token renewal (``POST /ui/token``) is refused to a
        token made from an application credential, even an unrestricted
        one: it would trade the credential for the user's full token.
        The user's own token still works afterwards."""
        uid, token = yield d(self.scoped("ann@example.org"))
        _, body, _ = yield d(self.create(uid, token, name="free", unrestricted=True))
        free = body["application_credential"]
        _, _, headers = yield d(self.app_login({"id": free["id"], "secret": free["secret"]}))
        code, body, _ = yield d(self.call("POST", "/ui/token",
                                          headers={"X-Auth-Token": subject(headers)}))
        self.assertEqual(code, 403, body)
        code, _, _ = yield d(self.call("GET", APPS.format(uid),
                                       headers={"X-Auth-Token": token}))
        self.assertEqual(code, 200)

    @defer.inlineCallbacks
    def test_roles_limit_the_token(self):
        """An administrator's credential with only ``member`` gives a token
        that is not an administrator's."""
        uid, token = yield d(self.scoped("root@example.org", admin=True))
        _, body, _ = yield d(self.create(uid, token, roles=[{"name": "member"}]))
        cred = body["application_credential"]
        self.assertEqual([r["name"] for r in cred["roles"]], ["member"])
        _, body, headers = yield d(self.app_login({"id": cred["id"],
                                                   "secret": cred["secret"]}))
        self.assertEqual([r["name"] for r in body["token"]["roles"]], ["member"])
        self.assertFalse(body["token"]["user"]["SNF:admin"])
        code, _, _ = yield d(self.call("GET", "/identity/v3/users",
                                       headers={"X-Auth-Token": subject(headers)}))
        self.assertEqual(code, 403)
        code, _, _ = yield d(self.call("GET", "/identity/v3/users",
                                       headers={"X-Auth-Token": token}))
        self.assertEqual(code, 200)

    @defer.inlineCallbacks
    def test_expired_credential_is_401(self):
        """Past its expires_at a credential gives no token (401), and its
        tokens expire with it."""
        uid, token = yield d(self.scoped("ann@example.org"))
        when = datetime.datetime.fromtimestamp(self.clock.seconds() + 3600, datetime.UTC)
        _, body, _ = yield d(self.create(uid, token, expires_at=when.isoformat()))
        cred = body["application_credential"]
        code, body, _ = yield d(self.app_login({"id": cred["id"], "secret": cred["secret"]}))
        self.assertEqual(code, 201)
        self.assertLessEqual(body["token"]["expires_at"][:19], when.strftime("%Y-%m-%dT%H:%M:%S"))
        self.clock.advance(3601)
        code, body, _ = yield d(self.app_login({"id": cred["id"], "secret": cred["secret"]}))
        self.assertEqual((code, body["error"]["code"]), (401, 401))

    @defer.inlineCallbacks
    def test_what_invalidates(self):
        """Deleting a credential ends its tokens; leaving the project or
        deactivation makes it refuse to authenticate (401); deleting the
        user deletes its credentials."""
        uid, token = yield d(self.scoped("ann@example.org"))
        other = self.add_project(uid, "science")
        _, _, headers = yield d(self.login("ann@example.org",
                                           scope={"project": {"id": other}}))
        _, body, _ = yield d(self.create(uid, subject(headers), name="science"))
        science = body["application_credential"]
        _, body, _ = yield d(self.create(uid, token, name="base"))
        base = body["application_credential"]
        _, _, headers = yield d(self.app_login({"id": base["id"], "secret": base["secret"]}))
        base_token = subject(headers)
        code, _, _ = yield d(self.call("DELETE", APPS.format(uid) + "/" + base["id"],
                                       headers={"X-Auth-Token": token}))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.call("GET", "/identity/v3/auth/projects",
                                       headers={"X-Auth-Token": base_token}))
        self.assertEqual(code, 401)
        self.sql("UPDATE identity_memberships SET state = 'removed' WHERE project = %s",
                 other)
        code, _, _ = yield d(self.app_login({"id": science["id"],
                                             "secret": science["secret"]}))
        self.assertEqual(code, 401)
        self.sql("UPDATE identity_memberships SET state = 'accepted' WHERE project = %s",
                 other)
        code, _, _ = yield d(self.app_login({"id": science["id"],
                                             "secret": science["secret"]}))
        self.assertEqual(code, 201)
        yield d(self.accounts.deactivate(uid))
        code, _, _ = yield d(self.app_login({"id": science["id"],
                                             "secret": science["secret"]}))
        self.assertEqual(code, 401)
        self.sql("DELETE FROM identity_users WHERE uuid = %s", uid)
        conn = psycopg2.connect(self.dsn)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM identity_app_credentials")
            self.assertEqual(cur.fetchone()[0], 0)
        conn.close()


class AccessRuleTests(AppCredentialTestCase):
    def test_path_patterns(self):
        """``*`` matches one segment, ``**`` any number (none too)."""
        self.assertTrue(path_matches("/v3/auth/projects", "/v3/auth/projects/"))
        self.assertTrue(path_matches("/v2.1/servers/*/ips", "/v2.1/servers/abc/ips"))
        self.assertFalse(path_matches("/v2.1/servers/*/ips", "/v2.1/servers/a/b/ips"))
        self.assertFalse(path_matches("/v2.1/servers/*", "/v2.1/servers"))
        self.assertTrue(path_matches("/v1/**", "/v1"))
        self.assertTrue(path_matches("/v1/**", "/v1/AUTH_x/c/o"))
        self.assertTrue(path_matches("/v1/**/o", "/v1/AUTH_x/c/o"))
        self.assertFalse(path_matches("/v1/**/o", "/v1/AUTH_x/c/p"))

    @defer.inlineCallbacks
    def test_rules_stored_listed_enforced(self):
        """Rules are stored with ids, listed and shown under the user, shared
        by identical rules; a token of the credential may call only what
        they allow (401 otherwise); a rule in use cannot be deleted (403)."""
        uid, token = yield d(self.scoped("ann@example.org"))
        rules = [{"service": "identity", "method": "GET", "path": "/v3/auth/projects"},
                 {"service": "compute", "method": "GET", "path": "/v2.1/servers/*/ips"}]
        code, body, _ = yield d(self.create(uid, token, access_rules=rules))
        self.assertEqual(code, 201)
        cred = body["application_credential"]
        shown = [{k: v for k, v in r.items() if k != "id"} for r in cred["access_rules"]]
        self.assertEqual(sorted(shown, key=lambda r: r["service"]), rules[::-1])
        h = {"X-Auth-Token": token}
        code, body, _ = yield d(self.call("GET", f"/identity/v3/users/{uid}/access_rules",
                                          headers=h))
        self.assertEqual(len(body["access_rules"]), 2)
        rule_id = cred["access_rules"][0]["id"]
        code, body, _ = yield d(self.call(
            "GET", f"/identity/v3/users/{uid}/access_rules/{rule_id}", headers=h))
        self.assertEqual((code, body["access_rule"]["id"]), (200, rule_id))
        _, body, _ = yield d(self.create(uid, token, access_rules=rules[:1]))
        second = body["application_credential"]
        self.assertIn(second["access_rules"][0]["id"],
                      [r["id"] for r in cred["access_rules"]])

        _, body, headers = yield d(self.app_login({"id": cred["id"],
                                                   "secret": cred["secret"]}))
        self.assertEqual(len(body["token"]["application_credential"]["access_rules"]), 2)
        limited = {"X-Auth-Token": subject(headers)}
        code, _, _ = yield d(self.call("GET", "/identity/v3/auth/projects", headers=limited))
        self.assertEqual(code, 200)
        for method, path in (("GET", "/identity/v3/projects"),
                             ("GET", f"/identity/v3/users/{uid}"),
                             ("GET", APPS.format(uid))):
            code, body, _ = yield d(self.call(method, path, headers=limited))
            self.assertEqual((code, body["error"]["code"]), (401, 401), path)

        code, _, _ = yield d(self.call(
            "DELETE", f"/identity/v3/users/{uid}/access_rules/{rule_id}", headers=h))
        self.assertEqual(code, 403)
        for c in (cred, second):
            yield d(self.call("DELETE", APPS.format(uid) + "/" + c["id"], headers=h))
        code, _, _ = yield d(self.call(
            "DELETE", f"/identity/v3/users/{uid}/access_rules/{rule_id}", headers=h))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.call(
            "GET", f"/identity/v3/users/{uid}/access_rules/{rule_id}", headers=h))
        self.assertEqual(code, 404)


class KeystoneauthAppCredentialTests(NodeTestCase):
    """keystoneauth's ``v3applicationcredential`` plugin, in a thread,
    against the node served over real HTTP by this process."""

    plugins = ("identity",)

    async def setUp(self) -> None:
        port = free_port()
        self.public = f"http://127.0.0.1:{port}"
        self.overrides = {("identity", "public_url"): self.public}
        await super().setUp()
        self.accounts = self.services["identity"].accounts
        serve(self, self.node.root, port)

    @defer.inlineCallbacks
    def test_v3applicationcredential_plugin(self):
        """A credential made with openstacksdk's identity proxy authenticates
        keystoneauth's application credential plugin by id and by name."""
        user, _ = yield d(self.accounts.create_user("ann@example.org", password=PASSWORD,
                                                    activate=True))
        public = self.public

        def client():
            import openstack
            from keystoneauth1 import session as ks_session
            from keystoneauth1.identity import v3

            conn = openstack.connect(
                auth_url=public + "/identity/v3", username="ann@example.org",
                password=PASSWORD, project_id=user.uuid, user_domain_name="Default",
                region_name="RegionOne", identity_api_version="3")
            try:
                made = conn.identity.create_application_credential(
                    user=user.uuid, name="sdk-made")
            finally:
                conn.close()
            found = []
            for auth in (v3.ApplicationCredential(
                    auth_url=public + "/identity/v3", application_credential_id=made.id,
                    application_credential_secret=made.secret),
                    v3.ApplicationCredential(
                        auth_url=public + "/identity/v3",
                        application_credential_name="sdk-made",
                        application_credential_secret=made.secret,
                        user_id=user.uuid)):
                sess = ks_session.Session(auth=auth)
                ref = auth.get_access(sess)
                found.append((ref.project_id, ref.user_id,
                              sess.get_endpoint(service_type="identity")))
            return found

        found = yield threads.deferToThread(client)
        self.assertEqual(found, [(user.uuid, user.uuid, self.public + "/identity/v3")] * 2)
