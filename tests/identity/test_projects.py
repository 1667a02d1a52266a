"""Projects on real PostgreSQL: system projects and their holdings, the
application lifecycle, membership policies, max_members, the quota limits
that follow approval, suspension, termination, reinstatement and leaving,
and the expiry duty."""

from __future__ import annotations

import datetime
import uuid

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from snfd import errors
from snfd.identity import project_store
from snfd.identity.project_store import Capacity
from snfd.identity.projects import ApplicationSpec, Projects, parse_application
from snfd.testing.identity import identity_database
from snfd.testing.postgres import query, started_pool
from snfd.web.auth import Principal

UTC = datetime.UTC
START = datetime.datetime(2030, 1, 1, tzinfo=UTC)
LATER = START + datetime.timedelta(days=365)



class Fixture:
    """A migrated database, a pool, a clock at START and SQL helpers."""

    def __init__(self, case: unittest.TestCase):
        self.dsn = identity_database(case)
        self.db = started_pool(case, self.dsn)
        self.clock = Clock()
        self.clock.advance(START.timestamp())
        self.projects = Projects(self.db, self.clock)

    def sql(self, statement: str, args: tuple = ()) -> list[tuple]:
        return query(self.dsn, statement, *args)

    def add_resource(self, name: str, base_default: int = 0, project_default: int = 0,
                     allow_in_projects: bool = True, api_visible: bool = True) -> None:
        self.sql(
            """INSERT INTO identity_resources (name, service_type, service_origin,
                   api_visible, ui_visible, allow_in_projects, base_default, project_default)
               VALUES (%s, 'compute', 'cyclades_compute', %s, %s, %s, %s, %s)""",
            (name, api_visible, api_visible, allow_in_projects, base_default, project_default))

    async def add_user(self, email: str, admin: bool = False, state: str = "active",
                       system_project: bool = True) -> Principal:
        uid = str(uuid.uuid4())
        self.sql("INSERT INTO identity_users (uuid, email, state, is_admin)"
                 " VALUES (%s, %s, %s, %s)", (uid, email, state, admin))
        if system_project:
            await self.projects.create_system_project(uid)
        return Principal(user=uid, email=email, is_admin=admin)

    def limit(self, holder: str, source: str, resource: str) -> int | None:
        rows = self.sql('SELECT "limit" FROM identity_holdings'
                        " WHERE holder = %s AND source = %s AND resource = %s",
                        (holder, source, resource))
        return rows[0][0] if rows else None

    def usage(self, holder: str, source: str, resource: str) -> tuple[int, int] | None:
        rows = self.sql("SELECT usage_min, usage_max FROM identity_holdings"
                        " WHERE holder = %s AND source = %s AND resource = %s",
                        (holder, source, resource))
        return rows[0] if rows else None

    def project_limit(self, project: str, resource: str) -> int | None:
        return self.limit(f"project:{project}", "", resource)

    def member_limit(self, user: Principal, project: str, resource: str) -> int | None:
        return self.limit(f"user:{user.user}", f"project:{project}", resource)


def spec(name: str = "demo.example.org", **kw) -> ApplicationSpec:
    body = {"name": name, "end_date": LATER.isoformat()}
    body.update(kw)
    return parse_application(body, new=True)


VM = {"cyclades.vm": {"project_capacity": 10, "member_capacity": 3}}


class ProjectsTestCase(unittest.TestCase):
    async def asyncSetUp(self) -> None:
        self.f = Fixture(self)
        self.projects = self.f.projects
        self.f.add_resource("cyclades.vm", base_default=2, project_default=1)
        self.f.add_resource("pithos.diskspace", base_default=100, project_default=7)
        self.f.add_resource("cyclades.hidden", base_default=5, api_visible=False)
        self.f.add_resource("cyclades.nope", allow_in_projects=False)
        self.admin = await self.f.add_user("admin@example.org", admin=True)
        self.alice = await self.f.add_user("alice@example.org")
        self.bob = await self.f.add_user("bob@example.org")
        self.carol = await self.f.add_user("carol@example.org")

    def setUp(self):
        return defer.ensureDeferred(self.asyncSetUp())

    async def active_project(self, owner: Principal | None = None, **kw) -> str:
        """An approved project owned by ``owner`` (alice)."""
        owner = owner or self.alice
        kw.setdefault("resources", VM)
        pid, app_id = await self.projects.submit_application(owner, spec(**kw))
        await self.projects.application_action(self.admin, pid, "approve", app_id)
        return pid

    async def member(self, pid: str, user: Principal) -> int:
        """Make ``user`` an accepted member of ``pid``; the membership id."""
        m = await self.projects.join(user, pid)
        if m.state == "requested":
            m = await self.projects.membership_action(self.alice, m.id, "accept")
        self.assertEqual(m.state, "accepted")
        return m.id

    async def assertFault(self, kind: type, coro) -> errors.Fault:
        try:
            await coro
        except kind as e:
            return e
        except errors.Fault as e:
            self.fail(f"expected {kind.__name__}, got {type(e).__name__}: {e.message}")
        self.fail(f"expected {kind.__name__}, nothing was raised")


class SystemProjectTests(ProjectsTestCase):
    async def test_system_project_shape(self):
        """A user's system project has the user's uuid as id, is active,
        private, closed, owned by the user with one accepted member, and
        grants every visible resource's base_default."""
        d = await self.projects.get_project(self.alice, self.alice.user)
        p = d.project
        self.assertEqual(
            (p.id, p.name, p.state, p.system_project, p.private, p.join_policy,
             p.leave_policy, p.owner, p.max_members),
            (self.alice.user, f"system:{self.alice.user}", "active", True, True, "closed",
             "closed", self.alice.user, 1))
        self.assertEqual(p.resources, {"cyclades.vm": Capacity(2, 2),
                                       "pithos.diskspace": Capacity(100, 100),
                                       "cyclades.nope": Capacity(0, 0)})
        members = await self.projects.list_memberships(self.alice, self.alice.user)
        self.assertEqual([(m.membership.user, m.membership.state) for m in members],
                         [(self.alice.user, "accepted")])

    async def test_system_project_holdings(self):
        """The system project holds base_default for every resource (also
        hidden ones), on the project holding and on the member's."""
        uid = self.alice.user
        for res, value in (("cyclades.vm", 2), ("pithos.diskspace", 100),
                           ("cyclades.hidden", 5)):
            self.assertEqual(self.f.project_limit(uid, res), value)
            self.assertEqual(self.f.member_limit(self.alice, uid, res), value)

    async def test_default_project_and_idempotence(self):
        """Creating the system project makes it the default project, and
        creating it again changes nothing."""
        again = await self.projects.create_system_project(self.alice.user)
        self.assertEqual(again.id, self.alice.user)
        rows = self.f.sql("SELECT default_project::text FROM identity_users WHERE uuid = %s",
                          (self.alice.user,))
        self.assertEqual(rows, [(self.alice.user,)])
        self.assertEqual(self.f.sql("SELECT count(*) FROM identity_memberships"
                                    " WHERE project = %s", (self.alice.user,)), [(1,)])

    async def test_system_project_cannot_be_terminated_or_joined(self):
        """Terminating a system project or joining it is a conflict."""
        await self.assertFault(errors.Conflict, self.projects.project_action(
            self.admin, self.alice.user, "terminate"))
        await self.assertFault(errors.Conflict, self.projects.join(self.bob, self.alice.user))

    async def test_projects_of_user(self):
        """projects_of_user lists the system project first, then active
        projects where the user is accepted; suspended ones drop out."""
        pid = await self.active_project()
        self.assertEqual([p.id for p in await self.projects.projects_of_user(self.bob.user)],
                         [self.bob.user])
        await self.member(pid, self.bob)
        self.assertEqual([p.id for p in await self.projects.projects_of_user(self.bob.user)],
                         [self.bob.user, pid])
        await self.projects.project_action(self.admin, pid, "suspend")
        self.assertEqual([p.id for p in await self.projects.projects_of_user(self.bob.user)],
                         [self.bob.user])

    async def test_new_resource_reaches_every_project(self):
        """A resource registered later is granted to system projects at
        base_default and to other projects at project_default, with
        holdings for the project and its accepted members."""
        pid = await self.active_project()
        await self.member(pid, self.bob)
        self.f.add_resource("cyclades.ram", base_default=4, project_default=3)
        await self.projects.ensure_resource_holdings("cyclades.ram")
        self.assertEqual(self.f.member_limit(self.bob, self.bob.user, "cyclades.ram"), 4)
        self.assertEqual(self.f.project_limit(self.bob.user, "cyclades.ram"), 4)
        self.assertEqual(self.f.project_limit(pid, "cyclades.ram"), 3)
        self.assertEqual(self.f.member_limit(self.bob, pid, "cyclades.ram"), 3)
        d = await self.projects.get_project(self.alice, pid)
        self.assertEqual(d.project.resources["cyclades.ram"], Capacity(3, 3))


class ApplicationTests(ProjectsTestCase):
    async def test_new_project_is_uninitialized(self):
        """An application creates an uninitialized project whose pending
        last application the applicant sees; nothing is granted yet."""
        pid, app_id = await self.projects.submit_application(
            self.alice, spec(resources=VM, description="d", max_members=4, private=True))
        d = await self.projects.get_project(self.alice, pid)
        self.assertEqual((d.project.state, d.project.owner, d.project.max_members,
                          d.project.private), ("uninitialized", self.alice.user, 4, True))
        self.assertEqual((d.last_application.id, d.last_application.state,
                          d.last_application.applicant), (app_id, "pending", self.alice.user))
        self.assertIsNone(self.f.project_limit(pid, "cyclades.vm"))

    async def test_approval_activates_and_grants(self):
        """Approval makes the project active; its holding gets the
        requested project_capacity, unrequested resources get
        project_default."""
        pid = await self.active_project()
        d = await self.projects.get_project(self.alice, pid)
        self.assertEqual(d.project.state, "active")
        self.assertEqual(d.last_application.state, "approved")
        self.assertEqual(d.project.resources["cyclades.vm"], Capacity(10, 3))
        self.assertEqual(d.project.resources["pithos.diskspace"], Capacity(7, 7))
        self.assertEqual(self.f.project_limit(pid, "cyclades.vm"), 10)
        self.assertEqual(self.f.project_limit(pid, "pithos.diskspace"), 7)

    async def test_approval_needs_admin(self):
        """Only administrators approve or deny; the applicant is forbidden."""
        pid, app_id = await self.projects.submit_application(self.alice, spec())
        for action in ("approve", "deny"):
            await self.assertFault(errors.Forbidden, self.projects.application_action(
                self.alice, pid, action, app_id))

    async def test_cancel_deletes_uninitialized_project(self):
        """Cancelling the first application deletes the project; a second
        cancel is a conflict."""
        pid, app_id = await self.projects.submit_application(self.alice, spec())
        await self.projects.application_action(self.alice, pid, "cancel", app_id)
        d = await self.projects.get_project(self.alice, pid)
        self.assertEqual((d.project.state, d.last_application.state), ("deleted", "cancelled"))
        await self.assertFault(errors.Conflict, self.projects.application_action(
            self.alice, pid, "cancel", app_id))

    async def test_deny_then_dismiss(self):
        """A denied first application leaves the project uninitialized;
        dismissing it deletes the project; dismissing a pending one is a
        conflict."""
        pid, app_id = await self.projects.submit_application(self.alice, spec())
        await self.assertFault(errors.Conflict, self.projects.application_action(
            self.alice, pid, "dismiss", app_id))
        await self.projects.application_action(self.admin, pid, "deny", app_id, "no")
        d = await self.projects.get_project(self.alice, pid)
        self.assertEqual((d.project.state, d.last_application.state,
                          d.last_application.response), ("uninitialized", "denied", "no"))
        await self.projects.application_action(self.alice, pid, "dismiss", app_id)
        d = await self.projects.get_project(self.alice, pid)
        self.assertEqual(d.project.state, "deleted")

    async def test_only_applicant_cancels(self):
        """Another user may not cancel someone's application."""
        pid, app_id = await self.projects.submit_application(self.alice, spec())
        await self.assertFault(errors.Forbidden, self.projects.application_action(
            self.bob, pid, "cancel", app_id))

    async def test_app_id_must_be_last_application(self):
        """Acting on an application that is not the project's last one is a
        conflict; an unknown application is not found."""
        pid = await self.active_project()
        d = await self.projects.get_project(self.alice, pid)
        first = d.last_application.id
        _, second = await self.projects.submit_application(
            self.alice, ApplicationSpec(description="new"), pid)
        await self.assertFault(errors.Conflict, self.projects.application_action(
            self.admin, pid, "approve", first))
        other = await self.active_project(name="other.example.org")
        await self.assertFault(errors.Conflict, self.projects.application_action(
            self.admin, other, "approve", second))
        await self.assertFault(errors.NotFound, self.projects.application_action(
            self.admin, pid, "approve", 999999))

    async def test_modification_replaces_and_applies(self):
        """A modification replaces the pending one before it; approving it
        changes only what it names and updates members' limits."""
        pid = await self.active_project()
        await self.member(pid, self.bob)
        _, first = await self.projects.submit_application(
            self.alice, ApplicationSpec(description="first"), pid)
        _, second = await self.projects.submit_application(
            self.alice, parse_application(
                {"homepage": "http://x.org", "resources": {
                    "cyclades.vm": {"project_capacity": 20, "member_capacity": 5}}}, new=False),
            pid)
        d = await self.projects.get_project(self.alice, pid)
        self.assertEqual(d.last_application.id, second)
        old = self.f.sql("SELECT state FROM identity_project_applications WHERE id = %s",
                         (first,))
        self.assertEqual(old, [("replaced",)])
        await self.projects.application_action(self.admin, pid, "approve", second)
        d = await self.projects.get_project(self.alice, pid)
        self.assertEqual((d.project.homepage, d.project.description, d.project.name),
                         ("http://x.org", "", "demo.example.org"))
        self.assertEqual(d.project.resources["cyclades.vm"], Capacity(20, 5))
        self.assertEqual(self.f.project_limit(pid, "cyclades.vm"), 20)
        self.assertEqual(self.f.member_limit(self.bob, pid, "cyclades.vm"), 5)

    async def test_modification_rules(self):
        """Only the owner or an administrator modifies; an uninitialized
        project cannot be modified; a system project keeps its name."""
        pid = await self.active_project()
        await self.assertFault(errors.Forbidden, self.projects.submit_application(
            self.bob, ApplicationSpec(description="x"), pid))
        fresh, _ = await self.projects.submit_application(
            self.alice, spec(name="fresh.example.org"))
        await self.assertFault(errors.Conflict, self.projects.submit_application(
            self.alice, ApplicationSpec(description="x"), fresh))
        await self.assertFault(errors.Conflict, self.projects.submit_application(
            self.alice, ApplicationSpec(name="mine.example.org"), self.alice.user))
        await self.projects.submit_application(
            self.alice, ApplicationSpec(resources={"cyclades.vm": Capacity(9, 9)}),
            self.alice.user)

    async def test_resource_validation(self):
        """Unknown, hidden and non-project resources, negative capacities
        and member capacity above project capacity are bad requests."""
        for resources in ({"no.such": {"project_capacity": 1, "member_capacity": 1}},
                          {"cyclades.hidden": {"project_capacity": 1, "member_capacity": 1}},
                          {"cyclades.nope": {"project_capacity": 1, "member_capacity": 1}}):
            await self.assertFault(errors.BadRequest, self.projects.submit_application(
                self.alice, spec(resources=resources)))
        for bad in ({"cyclades.vm": {"project_capacity": -1, "member_capacity": 0}},
                    {"cyclades.vm": {"project_capacity": 1, "member_capacity": 2}},
                    {"cyclades.vm": {"project_capacity": "1", "member_capacity": 1}},
                    {"cyclades.vm": 5}, ["cyclades.vm"]):
            self.assertRaises(errors.BadRequest, spec, resources=bad)

    async def test_end_date_in_the_past(self):
        """An end date before now is a bad request."""
        body = {"name": "demo.example.org", "end_date": "2029-01-01T00:00:00Z"}
        await self.assertFault(errors.BadRequest, self.projects.submit_application(
            self.alice, parse_application(body, new=True)))

    async def test_pending_application_quota(self):
        """Pending applications count against astakos.pending_app in the
        system project: over the limit is a conflict, administrators are
        not limited, and resolving an application frees its slot."""
        self.f.add_resource("astakos.pending_app", base_default=1, allow_in_projects=False,
                            api_visible=False)
        await self.projects.ensure_resource_holdings("astakos.pending_app")
        pid, app_id = await self.projects.submit_application(self.alice, spec())
        uid = self.alice.user
        self.assertEqual(self.f.usage(f"user:{uid}", f"project:{uid}", "astakos.pending_app"),
                         (1, 1))
        await self.assertFault(errors.Conflict, self.projects.submit_application(
            self.alice, spec(name="two.example.org")))
        # Replacing one's own pending application is no new application.
        await self.projects.submit_application(self.admin, spec(name="a1.example.org"))
        await self.projects.submit_application(self.admin, spec(name="a2.example.org"))
        await self.projects.application_action(self.alice, pid, "cancel", app_id)
        self.assertEqual(self.f.usage(f"project:{uid}", "", "astakos.pending_app"), (0, 0))
        await self.projects.submit_application(self.alice, spec(name="two.example.org"))

    async def test_name_conflict_on_approval(self):
        """Approving a project named like a live one is a conflict."""
        await self.active_project()
        pid, app_id = await self.projects.submit_application(self.bob, spec())
        await self.assertFault(errors.Conflict, self.projects.application_action(
            self.admin, pid, "approve", app_id))

    async def test_unknown_owner(self):
        """An owner that is not an active user is a bad request."""
        await self.assertFault(errors.BadRequest, self.projects.submit_application(
            self.alice, spec(owner=str(uuid.uuid4()))))


class VisibilityTests(ProjectsTestCase):
    async def test_private_project_hidden_from_non_members(self):
        """A private project is forbidden to non-members and missing from
        their listing, but visible to members (without its application)."""
        pid = await self.active_project(private=True)
        await self.assertFault(errors.Forbidden, self.projects.get_project(self.bob, pid))
        listed = await self.projects.list_projects(self.bob)
        self.assertNotIn(pid, [d.project.id for d in listed])
        await self.member(pid, self.carol)
        d = await self.projects.get_project(self.carol, pid)
        self.assertEqual((d.project.id, d.privileged, d.last_application), (pid, False, None))

    async def test_public_active_project_visible(self):
        """An active public project is visible to anyone; an uninitialized
        one only to its applicant and administrators."""
        pid = await self.active_project()
        d = await self.projects.get_project(self.bob, pid)
        self.assertFalse(d.privileged)
        pending, _ = await self.projects.submit_application(
            self.alice, spec(name="pending.example.org"))
        await self.assertFault(errors.Forbidden, self.projects.get_project(self.bob, pending))
        d = await self.projects.get_project(self.admin, pending)
        self.assertTrue(d.privileged)

    async def test_listing_filters_and_modes(self):
        """Listing filters by state and name; mode=member keeps active
        projects the caller belongs to; bad filters are bad requests."""
        pid = await self.active_project()
        await self.projects.submit_application(self.alice, spec(name="pending.example.org"))
        active = await self.projects.list_projects(self.alice, states=["active"],
                                                   names=["demo.example.org"])
        self.assertEqual([d.project.id for d in active], [pid])
        mine = await self.projects.list_projects(self.bob, mode="member")
        self.assertEqual([d.project.id for d in mine], [self.bob.user])
        everyone = await self.projects.list_projects(self.admin, owners=[self.alice.user])
        self.assertEqual(len(everyone), 3)
        await self.assertFault(errors.BadRequest, self.projects.list_projects(
            self.alice, states=["bogus"]))
        await self.assertFault(errors.BadRequest, self.projects.list_projects(
            self.alice, mode="bogus"))

    async def test_unknown_project(self):
        """Unknown or malformed project ids are not found."""
        for pid in (str(uuid.uuid4()), "not-a-uuid"):
            await self.assertFault(errors.NotFound, self.projects.get_project(self.alice, pid))


class MembershipTests(ProjectsTestCase):
    async def test_moderated_join_and_accept(self):
        """Under a moderated policy a join is a request; the owner's accept
        gives the member holdings at member_capacity."""
        pid = await self.active_project()
        m = await self.projects.join(self.bob, pid)
        self.assertEqual(m.state, "requested")
        self.assertIsNone(self.f.member_limit(self.bob, pid, "cyclades.vm"))
        await self.assertFault(errors.Forbidden, self.projects.membership_action(
            self.bob, m.id, "accept"))
        m = await self.projects.membership_action(self.alice, m.id, "accept")
        self.assertEqual(m.state, "accepted")
        self.assertEqual(self.f.member_limit(self.bob, pid, "cyclades.vm"), 3)
        self.assertEqual(self.f.member_limit(self.bob, pid, "pithos.diskspace"), 7)

    async def test_auto_join(self):
        """Under an auto policy a join is accepted at once; a second join
        is a conflict."""
        pid = await self.active_project(join_policy="auto")
        m = await self.projects.join(self.bob, pid)
        self.assertEqual(m.state, "accepted")
        self.assertEqual(self.f.member_limit(self.bob, pid, "cyclades.vm"), 3)
        await self.assertFault(errors.Conflict, self.projects.join(self.bob, pid))

    async def test_closed_join(self):
        """Under a closed policy joining and enrolling are conflicts."""
        pid = await self.active_project(join_policy="closed")
        await self.assertFault(errors.Conflict, self.projects.join(self.bob, pid))
        await self.assertFault(errors.Conflict, self.projects.enroll(
            self.alice, pid, "bob@example.org"))

    async def test_join_uninitialized_or_unknown(self):
        """Joining a project that is not alive is a conflict; an unknown
        one is not found."""
        pid, _ = await self.projects.submit_application(self.alice, spec())
        await self.assertFault(errors.Conflict, self.projects.join(self.bob, pid))
        await self.assertFault(errors.NotFound, self.projects.join(self.bob, str(uuid.uuid4())))

    async def test_reject_and_cancel(self):
        """The owner rejects a request, the requester cancels one; either
        can then join again."""
        pid = await self.active_project()
        m = await self.projects.join(self.bob, pid)
        await self.assertFault(errors.Forbidden, self.projects.membership_action(
            self.carol, m.id, "cancel"))
        m = await self.projects.membership_action(self.bob, m.id, "cancel")
        self.assertEqual(m.state, "cancelled")
        m = await self.projects.join(self.bob, pid)
        self.assertEqual(m.state, "requested")
        m = await self.projects.membership_action(self.alice, m.id, "reject")
        self.assertEqual(m.state, "rejected")
        await self.assertFault(errors.Conflict, self.projects.membership_action(
            self.alice, m.id, "accept"))

    async def test_leave_auto_zeroes_limits_keeps_usage(self):
        """Leaving under an auto leave policy removes the member at once:
        limits go to 0 and usage stays."""
        pid = await self.active_project()
        mid = await self.member(pid, self.bob)
        self.f.sql("UPDATE identity_holdings SET usage_min = 2, usage_max = 2"
                   " WHERE holder = %s AND source = %s AND resource = 'cyclades.vm'",
                   (f"user:{self.bob.user}", f"project:{pid}"))
        m = await self.projects.membership_action(self.bob, mid, "leave")
        self.assertEqual((m.state, m.removed is not None), ("removed", True))
        self.assertEqual(self.f.member_limit(self.bob, pid, "cyclades.vm"), 0)
        self.assertEqual(self.f.usage(f"user:{self.bob.user}", f"project:{pid}",
                                      "cyclades.vm"), (2, 2))

    async def test_leave_moderated_then_removed(self):
        """Under a moderated leave policy leaving is a request that keeps
        the quota until the owner removes the member."""
        pid = await self.active_project(leave_policy="moderated")
        mid = await self.member(pid, self.bob)
        m = await self.projects.membership_action(self.bob, mid, "leave")
        self.assertEqual(m.state, "leave_requested")
        self.assertEqual(self.f.member_limit(self.bob, pid, "cyclades.vm"), 3)
        m = await self.projects.membership_action(self.alice, mid, "remove")
        self.assertEqual(m.state, "removed")
        self.assertEqual(self.f.member_limit(self.bob, pid, "cyclades.vm"), 0)

    async def test_leave_closed(self):
        """Under a closed leave policy neither leaving nor removal works."""
        pid = await self.active_project(leave_policy="closed")
        mid = await self.member(pid, self.bob)
        for who, action in ((self.bob, "leave"), (self.alice, "remove")):
            await self.assertFault(errors.Conflict, self.projects.membership_action(
                who, mid, action))

    async def test_rejoin_after_removal_restores_limits(self):
        """A removed member who is accepted again gets member_capacity back."""
        pid = await self.active_project(join_policy="auto")
        mid = await self.member(pid, self.bob)
        await self.projects.membership_action(self.alice, mid, "remove")
        m = await self.projects.join(self.bob, pid)
        self.assertEqual((m.id, m.state), (mid, "accepted"))
        self.assertEqual(self.f.member_limit(self.bob, pid, "cyclades.vm"), 3)

    async def test_max_members(self):
        """With max_members reached, accepting and enrolling are conflicts
        and an auto join stays a request."""
        pid = await self.active_project(max_members=1)
        await self.member(pid, self.bob)
        m = await self.projects.join(self.carol, pid)
        await self.assertFault(errors.Conflict, self.projects.membership_action(
            self.alice, m.id, "accept"))
        await self.assertFault(errors.Conflict, self.projects.enroll(
            self.alice, pid, "carol@example.org"))
        auto = await self.active_project(name="auto.example.org", join_policy="auto",
                                         max_members=1)
        self.assertEqual((await self.projects.join(self.bob, auto)).state, "accepted")
        self.assertEqual((await self.projects.join(self.carol, auto)).state, "requested")

    async def test_enroll(self):
        """The owner enrolls a user by email (case-insensitively); others
        may not; unknown emails and existing members are conflicts."""
        pid = await self.active_project()
        m = await self.projects.enroll(self.alice, pid, "BOB@example.org")
        self.assertEqual((m.user, m.state), (self.bob.user, "accepted"))
        self.assertEqual(self.f.member_limit(self.bob, pid, "cyclades.vm"), 3)
        await self.assertFault(errors.Conflict, self.projects.enroll(
            self.alice, pid, "bob@example.org"))
        await self.assertFault(errors.Conflict, self.projects.enroll(
            self.alice, pid, "nobody@example.org"))
        await self.assertFault(errors.Forbidden, self.projects.enroll(
            self.bob, pid, "carol@example.org"))
        await self.assertFault(errors.Conflict, self.projects.enroll(
            self.alice, str(uuid.uuid4()), "carol@example.org"))

    async def test_allowed_actions(self):
        """allowed_actions lists what the caller may do: the owner accepts
        or rejects a request, the requester cancels it, a member leaves."""
        pid = await self.active_project()
        m = await self.projects.join(self.bob, pid)
        owner_view = await self.projects.get_membership(self.alice, m.id)
        self.assertEqual(owner_view.allowed_actions, ("accept", "reject"))
        bob_view = await self.projects.get_membership(self.bob, m.id)
        self.assertEqual(bob_view.allowed_actions, ("cancel",))
        await self.projects.membership_action(self.alice, m.id, "accept")
        bob_view = await self.projects.get_membership(self.bob, m.id)
        self.assertEqual(bob_view.allowed_actions, ("leave",))
        admin_view = await self.projects.get_membership(self.admin, m.id)
        self.assertEqual(admin_view.allowed_actions, ("leave", "remove"))

    async def test_membership_visibility(self):
        """A membership is visible to its member, the owner and
        administrators only; listings are filtered the same way."""
        pid = await self.active_project()
        m = await self.projects.join(self.bob, pid)
        await self.assertFault(errors.Forbidden, self.projects.get_membership(self.carol, m.id))
        await self.assertFault(errors.NotFound, self.projects.get_membership(self.carol, 10**6))
        carol = await self.projects.list_memberships(self.carol, pid)
        self.assertEqual(carol, [])
        owner = await self.projects.list_memberships(self.alice, pid)
        self.assertEqual([d.membership.id for d in owner], [m.id])
        mine = await self.projects.list_memberships(self.bob)
        self.assertEqual(sorted(d.membership.project for d in mine),
                         sorted([pid, self.bob.user]))

    async def test_inactive_user_cannot_be_accepted(self):
        """A request from a user deactivated since cannot be accepted."""
        pid = await self.active_project()
        m = await self.projects.join(self.bob, pid)
        self.f.sql("UPDATE identity_users SET state = 'deactivated' WHERE uuid = %s",
                   (self.bob.user,))
        await self.assertFault(errors.Conflict, self.projects.membership_action(
            self.alice, m.id, "accept"))


class ProjectStateTests(ProjectsTestCase):
    async def test_suspend_and_unsuspend(self):
        """Suspension zeroes the project's and members' limits (usage
        stays); unsuspension restores them; repeating either conflicts."""
        pid = await self.active_project()
        await self.member(pid, self.bob)
        await self.assertFault(errors.Forbidden, self.projects.project_action(
            self.alice, pid, "suspend"))
        await self.projects.project_action(self.admin, pid, "suspend")
        d = await self.projects.get_project(self.alice, pid)
        self.assertEqual(d.project.state, "suspended")
        self.assertIsNotNone(d.project.deactivation_date)
        self.assertEqual(self.f.project_limit(pid, "cyclades.vm"), 0)
        self.assertEqual(self.f.member_limit(self.bob, pid, "cyclades.vm"), 0)
        await self.assertFault(errors.Conflict, self.projects.project_action(
            self.admin, pid, "suspend"))
        await self.projects.project_action(self.admin, pid, "unsuspend")
        self.assertEqual(self.f.project_limit(pid, "cyclades.vm"), 10)
        self.assertEqual(self.f.member_limit(self.bob, pid, "cyclades.vm"), 3)
        await self.assertFault(errors.Conflict, self.projects.project_action(
            self.admin, pid, "unsuspend"))

    async def test_terminate_and_reinstate(self):
        """Termination zeroes limits and returns members' default project
        to their system project; reinstatement restores the limits."""
        pid = await self.active_project()
        await self.member(pid, self.bob)
        self.f.sql("UPDATE identity_users SET default_project = %s WHERE uuid = %s",
                   (pid, self.bob.user))
        await self.assertFault(errors.Conflict, self.projects.project_action(
            self.admin, pid, "reinstate"))
        await self.projects.project_action(self.admin, pid, "terminate")
        self.assertEqual(self.f.project_limit(pid, "cyclades.vm"), 0)
        self.assertEqual(self.f.member_limit(self.bob, pid, "cyclades.vm"), 0)
        rows = self.f.sql("SELECT default_project::text FROM identity_users WHERE uuid = %s",
                          (self.bob.user,))
        self.assertEqual(rows, [(self.bob.user,)])
        await self.assertFault(errors.Conflict, self.projects.project_action(
            self.admin, pid, "terminate"))
        await self.projects.project_action(self.admin, pid, "reinstate")
        self.assertEqual(self.f.project_limit(pid, "cyclades.vm"), 10)
        self.assertEqual(self.f.member_limit(self.bob, pid, "cyclades.vm"), 3)

    async def test_reinstate_name_taken(self):
        """Reinstating a project whose name another live project took is a
        conflict."""
        pid = await self.active_project()
        await self.projects.project_action(self.admin, pid, "terminate")
        await self.active_project(owner=self.bob)
        await self.assertFault(errors.Conflict, self.projects.project_action(
            self.admin, pid, "reinstate"))

    async def test_membership_changes_need_alive_project(self):
        """In a terminated project members cannot leave or be removed."""
        pid = await self.active_project()
        mid = await self.member(pid, self.bob)
        await self.projects.project_action(self.admin, pid, "terminate")
        await self.assertFault(errors.Conflict, self.projects.membership_action(
            self.bob, mid, "leave"))

    async def test_expire_projects(self):
        """expire_projects terminates projects past their end date (not
        system projects, not those still running) and zeroes their limits."""
        ending = await self.active_project(
            name="ending.example.org", end_date=(START + datetime.timedelta(days=1)).isoformat())
        lasting = await self.active_project()
        self.assertEqual(await self.projects.expire_projects(), 0)
        self.f.clock.advance(2 * 86400)
        # START is years ahead of the database's clock, which must agree too.
        self.f.sql("UPDATE identity_projects SET end_date = now() - interval '1 day'"
                   " WHERE id = %s", (ending,))
        self.assertEqual(await self.projects.expire_projects(), 1)
        states = {pid: (await self.projects.get_project(self.admin, pid)).project.state
                  for pid in (ending, lasting, self.alice.user)}
        self.assertEqual(states, {ending: "terminated", lasting: "active",
                                  self.alice.user: "active"})
        self.assertEqual(self.f.project_limit(ending, "cyclades.vm"), 0)
        self.assertEqual(await self.projects.expire_projects(), 0)


    async def test_leader_clock_ahead_ends_no_project_early(self):
        """A leader whose clock runs ahead (here: years) ends only projects
        whose end date the database's clock has passed too."""
        pid = await self.active_project(
            name="later.example.org", end_date=(START + datetime.timedelta(days=1)).isoformat())
        self.f.sql("UPDATE identity_projects SET end_date = now() + interval '1 hour'"
                   " WHERE id = %s", (pid,))
        self.assertEqual(await self.projects.expire_projects(), 0)
        state = (await self.projects.get_project(self.admin, pid)).project.state
        self.assertEqual(state, "active")


class StoreTests(unittest.TestCase):
    def setUp(self):
        self.f = Fixture(self)

    async def test_sync_is_repeatable(self):
        """Recomputing holdings leaves limits as they are and never touches
        usage."""
        self.f.add_resource("cyclades.vm", base_default=2)
        uid = str(uuid.uuid4())
        self.f.sql("INSERT INTO identity_users (uuid, email, state) VALUES (%s, 'a@b.c',"
                   " 'active')", (uid,))
        await self.f.db.run("t.sys", project_store.create_system_project_txn, uid,
                            f"system:{uid}", START)
        self.f.sql("UPDATE identity_holdings SET usage_max = 5 WHERE holder = %s",
                   (f"project:{uid}",))
        await self.f.db.run("t.sync", project_store.sync_holdings_txn, None)
        self.assertEqual(self.f.sql(
            'SELECT "limit", usage_min, usage_max FROM identity_holdings WHERE holder = %s',
            (f"project:{uid}",)), [(2, 0, 5)])
