"""EC2 credentials in process over a real PostgreSQL: create, list, show,
delete under ``/v3/users/<u>/credentials/OS-EC2``, the secret stored
encrypted and shown again, and who may do what."""

from __future__ import annotations

import uuid

import psycopg2
from twisted.internet import defer

from snfd.identity.app_credentials import SecretBox, load_key
from tests.identity.test_keystone import KeystoneTestCase, d

EC2 = "/identity/v3/users/{}/credentials/OS-EC2"


class Ec2Tests(KeystoneTestCase):
    @defer.inlineCallbacks
    def test_create_list_show_delete(self):
        """A credential for one of the user's projects: access and secret
        generated; listed, shown (with the same secret) and deleted (then
        404)."""
        uid, token = yield d(self.user("ann@example.org"))
        h = {"X-Auth-Token": token}
        code, body, _ = yield d(self.call("POST", EC2.format(uid), {"tenant_id": uid},
                                          headers=h))
        self.assertEqual(code, 201)
        cred = body["credential"]
        self.assertTrue(cred["access"] and cred["secret"])
        self.assertEqual((cred["user_id"], cred["tenant_id"]), (uid, uid))
        self.assertTrue(cred["links"]["self"].endswith(f"/OS-EC2/{cred['access']}"))
        yield d(self.call("POST", EC2.format(uid), {"tenant_id": uid}, headers=h))
        code, body, _ = yield d(self.call("GET", EC2.format(uid), headers=h))
        self.assertEqual(len(body["credentials"]), 2)
        self.assertIn(cred["access"], [c["access"] for c in body["credentials"]])
        code, body, _ = yield d(self.call("GET", EC2.format(uid) + "/" + cred["access"],
                                          headers=h))
        self.assertEqual(code, 200)
        for key in ("access", "secret", "user_id", "tenant_id"):
            self.assertEqual(body["credential"][key], cred[key])
        code, _, _ = yield d(self.call("DELETE", EC2.format(uid) + "/" + cred["access"],
                                       headers=h))
        self.assertEqual(code, 204)
        for method in ("GET", "DELETE"):
            code, body, _ = yield d(self.call(method, EC2.format(uid) + "/" + cred["access"],
                                              headers=h))
            self.assertEqual((code, body["error"]["code"]), (404, 404))

    @defer.inlineCallbacks
    def test_secret_stored_encrypted(self):
        """The database holds the secret only encrypted, under the key in
        the node's state directory."""
        uid, token = yield d(self.user("ann@example.org"))
        _, body, _ = yield d(self.call("POST", EC2.format(uid), {"tenant_id": uid},
                                       headers={"X-Auth-Token": token}))
        cred = body["credential"]
        conn = psycopg2.connect(self.dsn)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT secret FROM identity_ec2_credentials")
            sealed = bytes(cur.fetchone()[0])
        conn.close()
        self.assertNotIn(cred["secret"].encode(), sealed)
        key_file = self.state_dir / "credential-key"
        self.assertEqual(key_file.stat().st_mode & 0o777, 0o600)
        self.assertEqual(SecretBox(load_key(key_file)).open(cred["access"], sealed),
                         cred["secret"])

    @defer.inlineCallbacks
    def test_projects_and_owners(self):
        """A project the user is not a member of is 404, a missing tenant_id
        400; another user may not list, show, create or delete (403)."""
        ann, ann_token = yield d(self.user("ann@example.org"))
        bob, bob_token = yield d(self.user("bob@example.org"))
        h = {"X-Auth-Token": ann_token}
        for body, expected in (({"tenant_id": bob}, 404),
                               ({"tenant_id": str(uuid.uuid4())}, 404), ({}, 400)):
            code, _, _ = yield d(self.call("POST", EC2.format(ann), body, headers=h))
            self.assertEqual(code, expected, body)
        _, body, _ = yield d(self.call("POST", EC2.format(ann), {"tenant_id": ann}, headers=h))
        access = body["credential"]["access"]
        b = {"X-Auth-Token": bob_token}
        for method, path, body in (("GET", EC2.format(ann), None),
                                   ("POST", EC2.format(ann), {"tenant_id": ann}),
                                   ("GET", EC2.format(ann) + "/" + access, None),
                                   ("DELETE", EC2.format(ann) + "/" + access, None)):
            code, _, _ = yield d(self.call(method, path, body, headers=b))
            self.assertEqual(code, 403, (method, path))
        code, _, _ = yield d(self.call("GET", EC2.format(bob) + "/" + access, headers=b))
        self.assertEqual(code, 404)
