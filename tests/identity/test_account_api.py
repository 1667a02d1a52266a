"""The account API (/account/v1.0) driven in process over a real PostgreSQL:
resources, quotas, the commission protocol with its faults and component
isolation, user catalogs, feedback, the default project, and input
validation (never a 500)."""

from __future__ import annotations

import json
from typing import Any

import psycopg2

from snfd.identity.service import ADMIN_EMAIL
from snfd.quota import Resource, user_and_project
from snfd.testing.nodecase import NodeTestCase

VM = Resource("cyclades.vm", "Virtual machines", None, "compute", "cyclades_compute",
              base_default=2)
TOTAL_RAM = Resource("cyclades.total_ram", "All RAM", "bytes", "compute", "cyclades_compute",
                     ui_visible=False, api_visible=False, base_default=1024)
DISK = Resource("pithos.diskspace", "Storage space", "bytes", "object-store",
                "pithos_object-store", base_default=1000)

MAX_BODY = 4096


def vm_provisions(user: str, quantity: int = 1) -> list[dict[str, Any]]:
    return [p.as_json() for p in user_and_project(user, user, "cyclades.vm", quantity)]


class AccountAPITests(NodeTestCase):
    """A node running the identity service as the daemon builds it; the
    compute and storage resources registered with its quota holder, two
    users (alice, bob), the node's bootstrap administrator, and the
    component tokens of cyclades and pithos."""

    plugins = ("identity",)
    overrides = {("identity", "max_body"): str(MAX_BODY)}

    async def setUp(self) -> None:
        await super().setUp()
        identity = self.services["identity"]
        self.accounts = identity.accounts
        self.dsn = self.node.dsn
        await identity.quota.register_resources("cyclades", [VM, TOTAL_RAM])
        await identity.quota.register_resources("pithos", [DISK])
        alice, self.alice_token = await self.accounts.create_user(
            "alice@example.org", "Alice", "A", activate=True)
        bob, self.bob_token = await self.accounts.create_user(
            "Bob@example.org", "Bob", "B", activate=True)
        self.alice, self.bob = alice.uuid, bob.uuid
        # The administrator the service created at its start on the empty cluster.
        self.admin = (await self.accounts.get_user(ADMIN_EMAIL)).uuid
        self.cyclades = await self.accounts.set_component("cyclades")
        self.pithos = await self.accounts.set_component("pithos")

    async def call(self, method: str, path: str, token: str | None = None,  # type: ignore[override]
                   body: Any = None, raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON body or None, or the raw bytes if not JSON)."""
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        status, content, _ = await self.request(method, "/account/v1.0" + path, data,
                                                token=token or "", headers=hdrs)
        if status >= 500:
            self.fail(f"{method} {path} answered {status}: {content!r}")
        if not content:
            return status, None
        try:
            return status, json.loads(content)
        except ValueError:
            return status, content

    async def issue(self, token: str, provisions: list[dict[str, Any]], **extra: Any) -> int:
        status, body = await self.call("POST", "/commissions", token,
                                       {"provisions": provisions, **extra})
        self.assertEqual(status, 201, body)
        return body["serial"]

    async def vm_quota(self, user: str) -> dict[str, int]:
        status, body = await self.call("GET", f"/service_quotas?user={user}", self.cyclades)
        self.assertEqual(status, 200, body)
        return body[user][user]["cyclades.vm"]

    # -- resources and quotas ---------------------------------------------

    async def test_resources_are_public(self):
        """GET /resources needs no token and lists API-visible resources
        with their service, description and unit."""
        status, body = await self.call("GET", "/resources")
        self.assertEqual(status, 200)
        self.assertEqual(sorted(body), ["cyclades.vm", "pithos.diskspace"])
        self.assertEqual(body["pithos.diskspace"]["service"], "pithos_object-store")
        self.assertEqual(body["pithos.diskspace"]["unit"], "bytes")
        self.assertEqual(body["cyclades.vm"]["description"], "Virtual machines")
        self.assertEqual(body["cyclades.vm"]["service_type"], "compute")

    async def test_user_quotas(self):
        """GET /quotas shows the user's visible resources in their base
        project, with usage and pending moving as a commission is issued."""
        status, body = await self.call("GET", "/quotas", self.alice_token)
        self.assertEqual(status, 200)
        self.assertEqual(list(body), [self.alice])
        self.assertEqual(sorted(body[self.alice]), ["cyclades.vm", "pithos.diskspace"])
        self.assertEqual(body[self.alice]["cyclades.vm"],
                         {"limit": 2, "usage": 0, "pending": 0, "project_limit": 2,
                          "project_usage": 0, "project_pending": 0})
        await self.issue(self.cyclades, vm_provisions(self.alice))
        _, body = await self.call("GET", "/quotas", self.alice_token)
        self.assertEqual(body[self.alice]["cyclades.vm"],
                         {"limit": 2, "usage": 1, "pending": 1, "project_limit": 2,
                          "project_usage": 1, "project_pending": 1})

    async def test_quotas_need_a_user_token(self):
        """GET /quotas without a token is 401, with a service token 403."""
        self.assertEqual((await self.call("GET", "/quotas"))[0], 401)
        self.assertEqual((await self.call("GET", "/quotas", self.cyclades))[0], 403)

    async def test_service_quotas_show_only_the_components_resources(self):
        """GET /service_quotas lists every user's holdings of the calling
        component's resources only, hidden ones included; ?user= filters,
        an unknown user is 404."""
        status, body = await self.call("GET", "/service_quotas", self.cyclades)
        self.assertEqual(status, 200)
        self.assertEqual(sorted(body), sorted([self.alice, self.bob, self.admin]))
        self.assertEqual(sorted(body[self.alice][self.alice]),
                         ["cyclades.total_ram", "cyclades.vm"])
        _, body = await self.call("GET", "/service_quotas", self.pithos)
        self.assertEqual(sorted(body[self.bob][self.bob]), ["pithos.diskspace"])
        status, body = await self.call("GET", f"/service_quotas?user={self.bob}", self.pithos)
        self.assertEqual((status, list(body)), (200, [self.bob]))
        status, body = await self.call(
            "GET", f"/service_quotas?user={self.bob},{self.alice}", self.pithos)
        self.assertEqual(sorted(body), sorted([self.alice, self.bob]))
        status, body = await self.call(
            "GET", f"/service_quotas?project={self.bob}", self.pithos)
        self.assertEqual(list(body), [self.bob])
        status, body = await self.call("GET", "/service_quotas?user=nobody", self.pithos)
        self.assertEqual(status, 404)
        self.assertIn("itemNotFound", body)

    async def test_service_project_quotas(self):
        """GET /service_project_quotas shows project holdings with only the
        project_* fields; ?project= filters, an unknown project is 404."""
        status, body = await self.call(
            "GET", f"/service_project_quotas?project={self.alice}", self.pithos)
        self.assertEqual(status, 200)
        self.assertEqual(body, {self.alice: {"pithos.diskspace": {
            "project_limit": 1000, "project_usage": 0, "project_pending": 0}}})
        _, body = await self.call("GET", "/service_project_quotas", self.cyclades)
        self.assertEqual(sorted(body), sorted([self.alice, self.bob, self.admin]))
        status, _ = await self.call("GET", "/service_project_quotas?project=none", self.pithos)
        self.assertEqual(status, 404)

    # -- commissions ------------------------------------------------------------

    async def test_issue_list_and_get(self):
        """An issued commission is listed as pending and shows its name,
        issue time and provisions."""
        serial = await self.issue(self.cyclades, vm_provisions(self.alice), name="create vm")
        status, body = await self.call("GET", "/commissions", self.cyclades)
        self.assertEqual((status, body), (200, [serial]))
        status, body = await self.call("GET", f"/commissions/{serial}", self.cyclades)
        self.assertEqual(status, 200)
        self.assertEqual(body["serial"], serial)
        self.assertEqual(body["name"], "create vm")
        self.assertIn("T", body["issue_time"])
        self.assertEqual(
            sorted(body["provisions"], key=lambda p: p["holder"]),
            sorted(vm_provisions(self.alice), key=lambda p: p["holder"]))

    async def test_accept_one(self):
        """Accepting a commission ends it (no longer pending, GET 404) and
        turns its pending usage into usage."""
        serial = await self.issue(self.cyclades, vm_provisions(self.alice))
        status, body = await self.call("POST", f"/commissions/{serial}/action",
                                       self.cyclades, {"accept": ""})
        self.assertEqual((status, body), (200, None))
        self.assertEqual((await self.call("GET", "/commissions", self.cyclades))[1], [])
        self.assertEqual((await self.call("GET", f"/commissions/{serial}", self.cyclades))[0],
                         404)
        quota = await self.vm_quota(self.alice)
        self.assertEqual((quota["usage"], quota["pending"]), (1, 0))
        status, _ = await self.call("POST", f"/commissions/{serial}/action",
                                    self.cyclades, {"accept": ""})
        self.assertEqual(status, 404)

    async def test_reject_one(self):
        """Rejecting a commission undoes it."""
        serial = await self.issue(self.cyclades, vm_provisions(self.alice))
        status, _ = await self.call("POST", f"/commissions/{serial}/action",
                                    self.cyclades, {"reject": ""})
        self.assertEqual(status, 200)
        quota = await self.vm_quota(self.alice)
        self.assertEqual((quota["usage"], quota["pending"]), (0, 0))

    async def test_action_needs_exactly_one_of_accept_or_reject(self):
        """An action body with neither, both or other keys is 400, and the
        commission stays pending."""
        serial = await self.issue(self.cyclades, vm_provisions(self.alice))
        for body in ({}, {"accept": "", "reject": ""}, {"accept": "", "later": 1}, []):
            status, reply = await self.call("POST", f"/commissions/{serial}/action",
                                            self.cyclades, body)
            self.assertEqual(status, 400, body)
            self.assertIn("badRequest", reply)
        self.assertEqual((await self.call("GET", "/commissions", self.cyclades))[1], [serial])

    async def test_auto_accept(self):
        """auto_accept resolves the commission in the same call."""
        await self.issue(self.cyclades, vm_provisions(self.alice, 2), auto_accept=True)
        self.assertEqual((await self.call("GET", "/commissions", self.cyclades))[1], [])
        quota = await self.vm_quota(self.alice)
        self.assertEqual((quota["usage"], quota["pending"]), (2, 0))

    async def test_bulk_resolution_lists_failures(self):
        """POST /commissions/action accepts and rejects what it can and
        lists unknown serials (404) and serials in both lists (400) as
        failed cloud faults."""
        s1 = await self.issue(self.cyclades, vm_provisions(self.alice))
        s2 = await self.issue(self.cyclades, vm_provisions(self.bob))
        s3 = await self.issue(self.cyclades, vm_provisions(self.bob))
        status, body = await self.call("POST", "/commissions/action", self.cyclades,
                                       {"accept": [s1, 424242, s3], "reject": [s2, s3]})
        self.assertEqual(status, 200)
        self.assertEqual(body["accepted"], [s1])
        self.assertEqual(body["rejected"], [s2])
        failed = dict((s, f) for s, f in body["failed"])
        self.assertEqual(sorted(failed), sorted([424242, s3]))
        self.assertEqual(failed[424242]["itemNotFound"]["code"], 404)
        self.assertEqual(failed[s3]["badRequest"]["code"], 400)
        self.assertEqual((await self.call("GET", "/commissions", self.cyclades))[1], [s3])

    async def test_over_limit_fault_carries_data(self):
        """An import beyond the limit is 413 overLimit whose data names the
        provision, NoCapacityError, the limit and the usage; nothing is
        charged."""
        status, body = await self.call("POST", "/commissions", self.cyclades,
                                       {"provisions": vm_provisions(self.alice, 3)})
        self.assertEqual(status, 413)
        data = body["overLimit"]["data"]
        self.assertEqual(data["name"], "NoCapacityError")
        self.assertEqual((data["limit"], data["usage"]), (2, 0))
        self.assertEqual(data["provision"]["resource"], "cyclades.vm")
        self.assertEqual(data["provision"]["quantity"], 3)
        self.assertEqual((await self.vm_quota(self.alice))["usage"], 0)
        status, body = await self.call("POST", "/commissions", self.cyclades,
                                       {"provisions": vm_provisions(self.alice, -1)})
        self.assertEqual(status, 413)
        self.assertEqual(body["overLimit"]["data"]["name"], "NoQuantityError")

    async def test_force_passes_the_limit(self):
        """force lets an import exceed the limit."""
        await self.issue(self.cyclades, vm_provisions(self.alice, 3), force=True)
        self.assertEqual((await self.vm_quota(self.alice))["usage"], 3)

    async def test_missing_holding_fault_carries_data(self):
        """A provision on a holding that does not exist is 404 itemNotFound
        with data naming NoHoldingError and the provision."""
        provisions = [{"holder": "user:ghost", "source": "project:ghost",
                       "resource": "cyclades.vm", "quantity": 1}]
        status, body = await self.call("POST", "/commissions", self.cyclades,
                                       {"provisions": provisions})
        self.assertEqual(status, 404)
        data = body["itemNotFound"]["data"]
        self.assertEqual(data["name"], "NoHoldingError")
        self.assertEqual(data["provision"], provisions[0])

    async def test_components_are_isolated(self):
        """One component neither sees nor resolves another's commissions."""
        serial = await self.issue(self.cyclades, vm_provisions(self.alice))
        self.assertEqual((await self.call("GET", "/commissions", self.pithos))[1], [])
        self.assertEqual((await self.call("GET", f"/commissions/{serial}", self.pithos))[0],
                         404)
        status, _ = await self.call("POST", f"/commissions/{serial}/action", self.pithos,
                                    {"accept": ""})
        self.assertEqual(status, 404)
        status, body = await self.call("POST", "/commissions/action", self.pithos,
                                       {"reject": [serial]})
        self.assertEqual((body["rejected"], [s for s, _ in body["failed"]]), ([], [serial]))
        self.assertEqual((await self.call("GET", "/commissions", self.cyclades))[1], [serial])
        self.assertEqual((await self.vm_quota(self.alice))["pending"], 1)

    async def test_user_tokens_are_refused_on_service_endpoints(self):
        """Every service endpoint answers 403 to a user token and 401
        without a token."""
        endpoints = [("GET", "/service_quotas"), ("GET", "/service_project_quotas"),
                     ("GET", "/commissions"), ("POST", "/commissions"),
                     ("GET", "/commissions/1"), ("POST", "/commissions/1/action"),
                     ("POST", "/commissions/action"), ("POST", "/service/user_catalogs"),
                     ("POST", "/service/resources")]
        for method, path in endpoints:
            body = {} if method == "POST" else None
            status, reply = await self.call(method, path, self.alice_token, body)
            self.assertEqual(status, 403, (method, path, reply))
            status, _ = await self.call(method, path, None, body)
            self.assertEqual(status, 401, (method, path))

    async def test_service_tokens_are_refused_on_user_endpoints(self):
        """User endpoints answer 403 to a service token."""
        for path in ("/user_catalogs", "/feedback", "/myaccount/default_project"):
            status, _ = await self.call("POST", path, self.cyclades, {})
            self.assertEqual(status, 403, path)

    async def test_bad_commission_bodies_are_400(self):
        """Malformed JSON, wrong types (quantity "1", true, 1.5), missing or
        unknown fields and NUL characters are 400 badRequest and issue
        nothing."""
        good = vm_provisions(self.alice)[0]
        bad_provisions = [
            {**good, "quantity": "1"}, {**good, "quantity": True}, {**good, "quantity": 1.5},
            {**good, "quantity": None}, {**good, "quantity": 2**70},
            {k: v for k, v in good.items() if k != "source"}, {**good, "extra": 1},
            {**good, "holder": 5}, {**good, "holder": ""}, {**good, "source": 5},
            {**good, "resource": None}, {**good, "holder": "user:\x00"}, "provision", None,
        ]
        bodies: list[Any] = [{"provisions": [p]} for p in bad_provisions]
        bodies += [
            {}, {"provisions": None}, {"provisions": good}, {"provisions": "x"},
            {"provisions": [good], "force": "yes"}, {"provisions": [good], "force": 1},
            {"provisions": [good], "auto_accept": None}, {"provisions": [good], "name": 3},
            {"provisions": [good], "name": "a\x00b"}, {"provisions": [good], "unknown": 1},
            {"provisions": [{**good, "quantity": 2**61}] * 3}, [good], "text", 5, None,
        ]
        for body in bodies:
            status, reply = await self.call("POST", "/commissions", self.cyclades,
                                            raw=json.dumps(body).encode())
            self.assertEqual(status, 400, body)
            self.assertIn("badRequest", reply, body)
        for raw in (b"", b"{", b"\xff\xfe", b"{'a': 1}", b"NaN-ish"):
            status, reply = await self.call("POST", "/commissions", self.cyclades, raw=raw)
            self.assertEqual(status, 400, raw)
        self.assertEqual((await self.call("GET", "/commissions", self.cyclades))[1], [])

    async def test_oversized_body_is_413(self):
        """A body beyond the configured limit is 413 overLimit."""
        body = {"provisions": vm_provisions(self.alice), "name": "x" * MAX_BODY}
        status, reply = await self.call("POST", "/commissions", self.cyclades, body)
        self.assertEqual(status, 413)
        self.assertIn("overLimit", reply)

    async def test_bad_bulk_bodies(self):
        """Bulk resolution needs lists of integers (400 otherwise); serials
        out of range simply fail as not found."""
        for body in ({"accept": "1"}, {"accept": [True]}, {"reject": ["1"]},
                     {"accept": [1.5]}, {"accept": [], "undo": []}, [1]):
            status, _ = await self.call("POST", "/commissions/action", self.cyclades, body)
            self.assertEqual(status, 400, body)
        status, body = await self.call("POST", "/commissions/action", self.cyclades,
                                       {"accept": [2**70, -1], "reject": None})
        self.assertEqual(status, 200)
        self.assertEqual(sorted(s for s, _ in body["failed"]), [-1, 2**70])

    async def test_unknown_serials_are_404(self):
        """An unknown, non-numeric or out-of-range serial in the path is 404."""
        for path in ("/commissions/4242", "/commissions/abc", "/commissions/-1",
                     "/commissions/99999999999999999999999"):
            status, body = await self.call("GET", path, self.cyclades)
            self.assertEqual(status, 404, path)
            self.assertIn("itemNotFound", body)
        status, _ = await self.call("POST", "/commissions/4242/action", self.cyclades,
                                    {"reject": ""})
        self.assertEqual(status, 404)

    async def test_garbage_never_makes_a_500(self):
        """Every POST endpoint answers garbage with a 4xx fault."""
        paths = ["/commissions", "/commissions/1/action", "/commissions/action",
                 "/user_catalogs", "/service/user_catalogs", "/service/resources",
                 "/feedback", "/myaccount/default_project"]
        garbage = [b"", b"null", b"[]", b'"x"', b"{", b"\xff", b'{"a": 1}', b"0",
                   b'{"uuids": {"a": 1}}', b'{"resources": [{"name": 1}]}',
                   b"feedback_msg=%FF", b'{"project_id": ["x"]}']
        for path in paths:
            for token in (self.cyclades, self.alice_token):
                for raw in garbage:
                    status, _ = await self.call("POST", path, token, raw=raw)
                    self.assertTrue(400 <= status < 500 or status == 200, (path, raw, status))

    # -- users ------------------------------------------------------------------

    async def test_user_catalogs(self):
        """POST /user_catalogs maps uuids to emails and emails (any case)
        to uuids, leaving unknown ones out; null means nobody."""
        status, body = await self.call(
            "POST", "/user_catalogs", self.alice_token,
            {"uuids": [self.bob, "nope"], "displaynames": ["ALICE@example.org", "x@y"]})
        self.assertEqual(status, 200)
        self.assertEqual(body, {"uuid_catalog": {self.bob: "Bob@example.org"},
                                "displayname_catalog": {"ALICE@example.org": self.alice}})
        _, body = await self.call("POST", "/user_catalogs", self.alice_token,
                                  {"uuids": None, "displaynames": None})
        self.assertEqual(body, {"uuid_catalog": {}, "displayname_catalog": {}})

    async def test_service_user_catalogs_null_means_everyone(self):
        """The service variant answers every user for a null list."""
        status, body = await self.call("POST", "/service/user_catalogs", self.pithos,
                                       {"uuids": None, "displaynames": []})
        self.assertEqual(status, 200)
        self.assertEqual(body["uuid_catalog"], {self.alice: "alice@example.org",
                                                self.bob: "Bob@example.org",
                                                self.admin: ADMIN_EMAIL})
        self.assertEqual(body["displayname_catalog"], {})
        _, body = await self.call("POST", "/service/user_catalogs", self.pithos,
                                  {"displaynames": None})
        self.assertEqual(body["displayname_catalog"], {"alice@example.org": self.alice,
                                                       "Bob@example.org": self.bob,
                                                       ADMIN_EMAIL: self.admin})

    async def test_user_catalogs_bad_input(self):
        """Catalog requests with non-list or non-string entries are 400."""
        for body in ({"displaynames": "x"}, {"uuids": [1]}, {"displaynames": [None]},
                     {"uuids": [], "emails": []}):
            status, _ = await self.call("POST", "/user_catalogs", self.alice_token, body)
            self.assertEqual(status, 400, body)

    async def test_feedback_is_stored(self):
        """POST /feedback with form fields stores the message; without a
        message it is 400."""
        status, _ = await self.call(
            "POST", "/feedback", self.alice_token,
            raw=b"feedback_msg=It+works%21&feedback_data=%7B%22v%22%3A1%7D",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 200)
        status, _ = await self.call("POST", "/feedback", self.bob_token,
                                    raw=b"feedback_msg=raw+body")
        self.assertEqual(status, 200)
        status, _ = await self.call("POST", "/feedback", self.alice_token,
                                    raw=b"feedback_data=x")
        self.assertEqual(status, 400)
        conn = psycopg2.connect(self.dsn)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT user_uuid::text, message, data FROM identity_feedback"
                            " ORDER BY id")
                rows = cur.fetchall()
        finally:
            conn.close()
        self.assertEqual(rows, [(self.alice, "It works!", '{"v":1}'),
                                (self.bob, "raw body", "")])

    async def test_default_project(self):
        """A user may make a project they are a member of their default
        (200); another project is 403, a missing id 400."""
        status, _ = await self.call("POST", "/myaccount/default_project", self.alice_token,
                                    {"project_id": self.alice})
        self.assertEqual(status, 200)
        self.assertEqual((await self.accounts.get_user(self.alice)).default_project,
                         self.alice)
        status, _ = await self.call("POST", "/myaccount/default_project", self.alice_token,
                                    {"project_id": self.bob})
        self.assertEqual(status, 403)
        status, _ = await self.call("POST", "/myaccount/default_project", self.alice_token,
                                    {})
        self.assertEqual(status, 400)

    # -- resource registration ------------------------------------------------

    async def test_register_resources(self):
        """A component registers its resources: they are listed, existing
        base projects get their default; another component's origin, a
        malformed definition or a user token are refused."""
        ip = {"name": "cyclades.floating_ip", "description": "Floating IPs", "unit": None,
              "service_type": "network", "service_origin": "cyclades_network",
              "base_default": 1}
        status, body = await self.call("POST", "/service/resources", self.cyclades,
                                       {"resources": [ip]})
        self.assertEqual((status, body), (200, {"resources": ["cyclades.floating_ip"]}))
        _, listing = await self.call("GET", "/resources")
        self.assertEqual(listing["cyclades.floating_ip"]["service"], "cyclades_network")
        _, quotas = await self.call("GET", "/quotas", self.bob_token)
        self.assertEqual(quotas[self.bob]["cyclades.floating_ip"]["limit"], 1)
        status, _ = await self.call("POST", "/service/resources", self.pithos,
                                    {"resources": [ip]})
        self.assertEqual(status, 400)
        for bad in ({**ip, "base_default": -1}, {**ip, "base_default": "1"},
                    {**ip, "ui_visible": "yes"}, {**ip, "colour": "red"},
                    {k: v for k, v in ip.items() if k != "service_type"}):
            status, _ = await self.call("POST", "/service/resources", self.cyclades,
                                        {"resources": [bad]})
            self.assertEqual(status, 400, bad)
        status, _ = await self.call("POST", "/service/resources", self.cyclades,
                                    {"resources": ip})
        self.assertEqual(status, 400)
