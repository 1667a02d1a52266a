"""Keystone's generic credential store (``/v3/credentials``) in process over
a real PostgreSQL: any type kept encrypted, ``ec2`` ones shared with
OS-EC2 (id = SHA-256 of the access key, kept when the blob changes), only
the blob changes, and who may do what."""

from __future__ import annotations

import hashlib
import json

import psycopg2
from twisted.internet import defer

from tests.identity.test_keystone_admin import AdminTestCase, d

CREDS = "/credentials"


class CredentialStoreTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_ec2_through_the_store(self):
        """An administrator makes an ec2 credential for Ann on a project: its
        id is the access key's SHA-256; Ann sees it under OS-EC2 too; a new
        blob (new access and secret) keeps the id; type, user and project
        cannot change; deleting ends it in both APIs."""
        pid = yield d(self.new_project())
        blob = json.dumps({"access": "AKIA-one", "secret": "s3cr3t-one"})
        code, body, _ = yield d(self.v3("POST", CREDS, {"credential": {
            "user_id": self.ann, "project_id": pid, "type": "ec2", "blob": blob}}))
        self.assertEqual(code, 201, body)
        cred = body["credential"]
        self.assertEqual(cred["id"], hashlib.sha256(b"AKIA-one").hexdigest())
        self.assertEqual((cred["user_id"], cred["project_id"], cred["type"]),
                         (self.ann, pid, "ec2"))
        _, body, _ = yield d(self.v3("GET", f"/users/{self.ann}/credentials/OS-EC2/AKIA-one",
                                     token=self.ann_token))
        self.assertEqual(body["credential"]["secret"], "s3cr3t-one")
        new = json.dumps({"access": "AKIA-two", "secret": "s3cr3t-two"})
        code, body, _ = yield d(self.v3("PATCH", f"{CREDS}/{cred['id']}",
                                        {"credential": {"blob": new}}))
        self.assertEqual((code, body["credential"]["id"]), (200, cred["id"]))
        _, body, _ = yield d(self.v3("GET", f"{CREDS}/{cred['id']}", token=self.ann_token))
        self.assertEqual(json.loads(body["credential"]["blob"]),
                         {"access": "AKIA-two", "secret": "s3cr3t-two"})
        code, body, _ = yield d(self.v3("PATCH", f"{CREDS}/{cred['id']}",
                                        {"credential": {"type": "totp"}}))
        self.assertEqual(code, 400)
        self.assertIn("only its blob", body["error"]["message"])
        code, _, _ = yield d(self.v3("POST", CREDS, {"credential": {
            "user_id": self.ann, "type": "ec2", "blob": new}}))
        self.assertEqual(code, 400)  # no project
        code, _, _ = yield d(self.v3("POST", CREDS, {"credential": {
            "user_id": self.ann, "project_id": pid, "type": "ec2", "blob": "not json"}}))
        self.assertEqual(code, 400)
        code, _, _ = yield d(self.v3("DELETE", f"{CREDS}/{cred['id']}"))
        self.assertEqual(code, 204)
        code, _, _ = yield d(self.v3("GET", f"/users/{self.ann}/credentials/OS-EC2/AKIA-two",
                                     token=self.ann_token))
        self.assertEqual(code, 404)

    @defer.inlineCallbacks
    def test_other_types_are_kept_encrypted(self):
        """A user stores a totp credential of its own: shown back as given,
        stored only encrypted; listed with the type filter."""
        code, body, _ = yield d(self.v3("POST", CREDS, {"credential": {
            "user_id": self.ann, "type": "totp", "blob": "JBSWY3DPEHPK3PXP"}},
            token=self.ann_token))
        self.assertEqual(code, 201, body)
        cid = body["credential"]["id"]
        _, body, _ = yield d(self.v3("GET", f"{CREDS}?type=totp", token=self.ann_token))
        self.assertEqual([(c["id"], c["blob"]) for c in body["credentials"]],
                         [(cid, "JBSWY3DPEHPK3PXP")])
        _, body, _ = yield d(self.v3("GET", f"{CREDS}?type=ec2", token=self.ann_token))
        self.assertEqual(body["credentials"], [])
        conn = psycopg2.connect(self.dsn)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT blob FROM identity_credentials WHERE id = %s", (cid,))
            stored = bytes(cur.fetchone()[0])
        conn.close()
        self.assertNotIn(b"JBSWY3DPEHPK3PXP", stored)

    @defer.inlineCallbacks
    def test_users_manage_only_their_own(self):
        """Ann cannot make a credential for another user or on a project not
        hers, does not see the administrator's, and gets 404 for it; the
        administrator lists everyone's."""
        _, body, _ = yield d(self.v3("POST", CREDS, {"credential": {
            "user_id": self.admin, "type": "totp", "blob": "x"}}))
        theirs = body["credential"]["id"]
        pid = yield d(self.new_project())
        for data in ({"user_id": self.admin, "type": "totp", "blob": "y"},
                     {"user_id": self.ann, "type": "ec2", "project_id": pid,
                      "blob": json.dumps({"access": "a", "secret": "b"})}):
            code, _, _ = yield d(self.v3("POST", CREDS, {"credential": data},
                                         token=self.ann_token))
            self.assertEqual(code, 403, data)
        _, body, _ = yield d(self.v3("GET", CREDS, token=self.ann_token))
        self.assertEqual(body["credentials"], [])
        _, body, _ = yield d(self.v3("GET", f"{CREDS}?user_id={self.admin}",
                                     token=self.ann_token))
        self.assertEqual(body["credentials"], [])
        for method in ("GET", "DELETE"):
            code, _, _ = yield d(self.v3(method, f"{CREDS}/{theirs}", token=self.ann_token))
            self.assertEqual(code, 404)
        _, body, _ = yield d(self.v3("GET", CREDS))
        self.assertIn(theirs, [c["id"] for c in body["credentials"]])
        for who in ("ann@example.org", "not-a-uuid"):
            code, _, _ = yield d(self.v3("POST", CREDS, {"credential": {
                "user_id": who, "type": "totp", "blob": "z"}}))
            self.assertEqual(code, 404, who)
        code, body, _ = yield d(self.v3("GET", CREDS + "?user_id=not-a-uuid"))
        self.assertEqual((code, body["credentials"]), (200, []))
