"""The projects HTTP API, driven in process through TokenAuth and the Klein
routes: reply shapes and status codes, and faults (never a 500) for bad
JSON, wrong field types, foreign private projects and unknown ids."""

from __future__ import annotations

import json
import uuid
from typing import Any

from snfd.quota import Resource
from snfd.testing.nodecase import NodeTestCase
from snfd.web.auth import Principal
from tests.identity.test_projects import LATER, START

PROJECT_KEYS = {"id", "state", "creation_date", "name", "owner", "homepage", "description",
                "end_date", "join_policy", "leave_policy", "max_members", "private",
                "system_project", "resources"}
APPLICATION_KEYS = {"id", "state", "name", "owner", "applicant", "homepage", "description",
                    "start_date", "end_date", "comments", "join_policy", "leave_policy",
                    "max_members", "private", "resources"}
MEMBERSHIP_KEYS = {"id", "user", "project", "state", "requested", "accepted", "removed",
                   "allowed_actions"}

VM = Resource("cyclades.vm", "Virtual machines", None, "compute", "cyclades_compute",
              base_default=2, project_default=1)


def new_project(name: str = "demo.example.org", **kw: Any) -> dict[str, Any]:
    body = {"name": name, "end_date": LATER.isoformat().replace("+00:00", "Z"),
            "resources": {"cyclades.vm": {"project_capacity": 10, "member_capacity": 3}}}
    body.update(kw)
    return body


class ProjectsAPITests(NodeTestCase):
    """A node running the identity service as the daemon builds it, its
    clock at ``START``, ``cyclades.vm`` registered with its quota holder,
    and four active users (admin an administrator) with their tokens."""

    plugins = ("identity",)

    async def setUp(self) -> None:
        await super().setUp()
        self.clock.advance(START.timestamp() - self.clock.seconds())
        identity = self.services["identity"]
        await identity.quota.register_resources("cyclades", [VM])
        self.tokens: dict[str, str] = {}
        for name, admin in (("admin", True), ("alice", False), ("bob", False),
                            ("carol", False)):
            email = f"{name}@example.org"
            user, token = await identity.accounts.create_user(email, activate=True,
                                                              admin=admin)
            self.tokens[name] = token or ""
            setattr(self, name, Principal(user=user.uuid, email=email, is_admin=admin))

    async def call(self, method: str, path: str, who: str | None = "alice",  # type: ignore[override]
                   body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        """Send a request as ``who`` (a user's name; another word is sent as
        the token itself; ``None``: no token)."""
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        token = self.tokens.get(who, who) if who else ""
        status, content, _ = await self.request(method, "/account/v1.0" + path, data,
                                                token=token)
        return status, (json.loads(content) if content else None)

    async def fault(self, expected: int, method: str, path: str, **kw: Any) -> dict:
        code, body = await self.call(method, path, **kw)
        self.assertEqual(code, expected, body)
        ((name, inner),) = body.items()
        self.assertEqual(inner["code"], expected)
        return inner

    async def create(self, who: str = "alice", **kw: Any) -> tuple[str, int]:
        code, body = await self.call("POST", "/projects", who=who, body=new_project(**kw))
        self.assertEqual(code, 201, body)
        return body["id"], body["application"]

    async def approved(self, **kw: Any) -> str:
        pid, app_id = await self.create(**kw)
        code, _ = await self.call("POST", f"/projects/{pid}/action", who="admin",
                                  body={"approve": {"app_id": app_id, "reason": "ok"}})
        self.assertEqual(code, 200)
        return pid

    # -- projects --

    async def test_create_and_read(self):
        """POST /projects answers 201 with id and application; the owner's
        GET shows every reference field and the pending last application."""
        pid, app_id = await self.create(description="about", private=True, max_members=5)
        code, body = await self.call("GET", f"/projects/{pid}")
        self.assertEqual(code, 200)
        self.assertEqual(set(body), PROJECT_KEYS | {"last_application"})
        self.assertEqual((body["id"], body["state"], body["owner"], body["private"],
                          body["max_members"], body["system_project"], body["end_date"]),
                         (pid, "uninitialized", self.alice.user, True, 5, False,
                          LATER.isoformat()))
        self.assertEqual(set(body["last_application"]), APPLICATION_KEYS)
        self.assertEqual((body["last_application"]["id"], body["last_application"]["state"]),
                         (app_id, "pending"))
        self.assertEqual(body["resources"],
                         {"cyclades.vm": {"project_capacity": 10, "member_capacity": 3}})

    async def test_approve_and_public_view(self):
        """After approval the project is active; another user sees it
        without the application."""
        pid = await self.approved()
        code, body = await self.call("GET", f"/projects/{pid}", who="bob")
        self.assertEqual((code, body["state"]), (200, "active"))
        self.assertEqual(set(body), PROJECT_KEYS)

    async def test_modify(self):
        """PUT /projects/<id> files a modification: 201 with a new
        application id."""
        pid = await self.approved()
        code, body = await self.call("PUT", f"/projects/{pid}",
                                     body={"description": "changed"})
        self.assertEqual(code, 201)
        self.assertEqual(body["id"], pid)
        _, project = await self.call("GET", f"/projects/{pid}")
        self.assertEqual(project["last_application"]["id"], body["application"])
        self.assertEqual(project["last_application"]["description"], "changed")
        await self.fault(403, "PUT", f"/projects/{pid}", who="bob", body={"description": "x"})

    async def test_listing(self):
        """GET /projects filters by state and mode; an unknown state or mode
        is a bad request."""
        pid = await self.approved()
        await self.create(name="pending.example.org")
        code, body = await self.call("GET", "/projects?state=active")
        self.assertEqual(code, 200)
        self.assertEqual(sorted(p["id"] for p in body), sorted([pid, self.alice.user]))
        code, body = await self.call("GET", "/projects?mode=member", who="bob")
        self.assertEqual([p["id"] for p in body], [self.bob.user])
        code, body = await self.call("GET", f"/projects?owner={self.alice.user}&name=x.org")
        self.assertEqual((code, body), (200, []))
        await self.fault(400, "GET", "/projects?state=bogus")
        await self.fault(400, "GET", "/projects?name=a%00b")
        await self.fault(400, "GET", "/projects?mode=bogus")

    async def test_needs_token(self):
        """Without a token every route is 401; with a bad one too."""
        await self.fault(401, "GET", "/projects", who=None)
        await self.fault(401, "POST", "/projects/memberships", who=None,
                         body={"join": {"project": self.alice.user}})
        await self.fault(401, "GET", "/projects", who="wrong")

    async def test_bad_bodies(self):
        """Broken JSON, non-objects and empty bodies are bad requests."""
        for raw in (b"{not json", b"[1, 2]", b"", b"\xff\xfe", b'"text"'):
            await self.fault(400, "POST", "/projects", raw=raw)
        pid = await self.approved()
        for raw in (b"{", b"[]", b""):
            await self.fault(400, "POST", f"/projects/{pid}/action", raw=raw)
            await self.fault(400, "POST", "/projects/memberships", raw=raw)

    async def test_wrong_field_types(self):
        """Each wrongly typed or invalid field is a 400 that names it."""
        cases = [
            ({"name": 5}, "name"),
            ({"name": "not a domain"}, "domain"),
            ({"private": "yes"}, "private"),
            ({"max_members": -1}, "max_members"),
            ({"max_members": True}, "max_members"),
            ({"end_date": "tomorrow"}, "end_date"),
            ({"end_date": 12}, "end_date"),
            ({"start_date": "2031-13-01"}, "start_date"),
            ({"join_policy": "sometimes"}, "join"),
            ({"leave_policy": 1}, "leave"),
            ({"homepage": ["x"]}, "homepage"),
            ({"description": "a\x00b"}, "description"),
            ({"end_date": "0001-01-01T00:00:00+14:00"}, "end_date"),
            ({"owner": "nobody"}, "nobody"),
            ({"resources": ["cyclades.vm"]}, "resources"),
            ({"resources": {"cyclades.vm": {"project_capacity": 1}}}, "cyclades.vm"),
            ({"resources": {"cyclades.vm": {"project_capacity": 1, "member_capacity": 2}}},
             "member_capacity"),
            ({"resources": {"no.such": {"project_capacity": 1, "member_capacity": 1}}},
             "no.such"),
        ]
        for change, word in cases:
            inner = await self.fault(400, "POST", "/projects", body=new_project(**change))
            self.assertIn(word, inner["message"], change)
        body = new_project()
        del body["end_date"]
        await self.fault(400, "POST", "/projects", body=body)
        del body["name"]
        await self.fault(400, "POST", "/projects", body=body)

    async def test_foreign_private_and_unknown_projects(self):
        """A foreign private project is 403; unknown and malformed ids are
        404."""
        pid = await self.approved(private=True)
        await self.fault(403, "GET", f"/projects/{pid}", who="bob")
        await self.fault(404, "GET", f"/projects/{uuid.uuid4()}")
        await self.fault(404, "GET", "/projects/not-a-uuid")
        await self.fault(404, "POST", f"/projects/{uuid.uuid4()}/action", who="admin",
                         body={"suspend": {}})

    async def test_project_actions(self):
        """Actions: one recognized action with its app_id; non-admins are
        forbidden; a stale app_id conflicts; success is 200 with no body."""
        pid, app_id = await self.create()
        path = f"/projects/{pid}/action"
        await self.fault(403, "POST", path, body={"approve": {"app_id": app_id}})
        await self.fault(400, "POST", path, who="admin", body={"approve": {}})
        await self.fault(400, "POST", path, who="admin", body={"approve": {"app_id": "x"}})
        await self.fault(400, "POST", path, who="admin", body={"approve": "yes"})
        for reason in (5, "a\x00b"):
            await self.fault(400, "POST", path, who="admin",
                             body={"approve": {"app_id": app_id, "reason": reason}})
        await self.fault(400, "POST", path, who="admin", body={"frobnicate": {}})
        await self.fault(400, "POST", path, who="admin",
                         body={"approve": {"app_id": app_id}, "deny": {"app_id": app_id}})
        await self.fault(404, "POST", path, who="admin",
                         body={"approve": {"app_id": 10**30}})
        await self.fault(409, "POST", path, who="admin", body={"suspend": {}})
        code, body = await self.call("POST", path, who="admin",
                                     body={"approve": {"app_id": str(app_id)}})
        self.assertEqual((code, body), (200, None))
        await self.fault(409, "POST", path, who="admin", body={"approve": {"app_id": app_id}})
        await self.fault(403, "POST", path, body={"suspend": {"reason": "x"}})
        code, _ = await self.call("POST", path, who="admin", body={"suspend": None})
        self.assertEqual(code, 200)
        _, project = await self.call("GET", f"/projects/{pid}")
        self.assertEqual(project["state"], "suspended")
        self.assertIn("deactivation_date", project)

    async def test_wrong_method(self):
        """A method a route does not take is a fault, not a 500."""
        pid = await self.approved()
        await self.fault(405, "DELETE", f"/projects/{pid}")
        await self.fault(405, "PUT", "/projects/memberships")

    # -- memberships --

    async def test_join_accept_and_read(self):
        """Joining answers the membership id; the member and the owner read
        it with its allowed actions; the owner accepts it."""
        pid = await self.approved()
        code, body = await self.call("POST", "/projects/memberships", who="bob",
                                     body={"join": {"project": pid}})
        self.assertEqual(code, 200)
        mid = body["id"]
        code, membership = await self.call("GET", f"/projects/memberships/{mid}")
        self.assertEqual(code, 200)
        self.assertEqual(set(membership), MEMBERSHIP_KEYS)
        self.assertEqual((membership["user"], membership["project"], membership["state"],
                          membership["allowed_actions"], membership["accepted"]),
                         (self.bob.user, pid, "requested", ["accept", "reject"], None))
        code, body = await self.call("POST", f"/projects/memberships/{mid}/action",
                                     body={"accept": "welcome"})
        self.assertEqual((code, body), (200, None))
        _, membership = await self.call("GET", f"/projects/memberships/{mid}", who="bob")
        self.assertEqual((membership["state"], membership["allowed_actions"]),
                         ("accepted", ["leave"]))
        self.assertIsNotNone(membership["accepted"])
        code, listed = await self.call("GET", f"/projects/memberships?project={pid}")
        self.assertEqual([m["id"] for m in listed], [mid])
        await self.fault(403, "GET", f"/projects/memberships/{mid}", who="carol")

    async def test_enroll(self):
        """The owner enrolls by email; a missing or non-string email is a
        bad request, an unknown one a conflict."""
        pid = await self.approved()
        code, body = await self.call("POST", "/projects/memberships",
                                     body={"enroll": {"project": pid,
                                                      "user": "carol@example.org"}})
        self.assertEqual(code, 200)
        _, membership = await self.call("GET", f"/projects/memberships/{body['id']}")
        self.assertEqual((membership["user"], membership["state"]),
                         (self.carol.user, "accepted"))
        await self.fault(400, "POST", "/projects/memberships",
                         body={"enroll": {"project": pid}})
        await self.fault(400, "POST", "/projects/memberships",
                         body={"enroll": {"project": pid, "user": ["x"]}})
        await self.fault(409, "POST", "/projects/memberships",
                         body={"enroll": {"project": pid, "user": "nobody@example.org"}})

    async def test_membership_faults(self):
        """Bad membership requests and actions are 400, unknown ids 404,
        state errors 409."""
        pid = await self.approved()
        await self.fault(400, "POST", "/projects/memberships", body={"join": {"project": []}})
        await self.fault(400, "POST", "/projects/memberships", body={"join": "x"})
        await self.fault(400, "POST", "/projects/memberships", body={"leave": {}})
        await self.fault(404, "POST", "/projects/memberships", body={"join": {"project": 5}})
        await self.fault(409, "POST", "/projects/memberships",
                         body={"join": {"project": self.bob.user}})
        await self.fault(404, "GET", "/projects/memberships/999999")
        await self.fault(404, "GET", f"/projects/memberships/{10**30}")
        await self.fault(404, "GET", "/projects/memberships/abc")
        _, body = await self.call("POST", "/projects/memberships", who="bob",
                                  body={"join": {"project": pid}})
        action = f"/projects/memberships/{body['id']}/action"
        await self.fault(400, "POST", action, who="bob", body={"leave": 5})
        await self.fault(400, "POST", action, who="bob", body={"explode": ""})
        await self.fault(409, "POST", action, who="bob", body={"leave": ""})
        await self.fault(404, "POST", "/projects/memberships/999999/action",
                         body={"accept": ""})
        code, _ = await self.call("POST", action, who="bob", body={"cancel": None})
        self.assertEqual(code, 200)
