"""Projects in a real browser: an application sent from the page, an
administrator approving it, a member asking to join, the owner accepting
them, and the member leaving."""

from __future__ import annotations

from tests.ui.case import BrowserCase


class ProjectTests(BrowserCase):
    def test_apply_approve_join_accept_leave(self):
        def steps() -> None:
            owner = self.node.add_user("lead@example.org")
            member = self.node.add_user("member@example.org")
            admin = self.node.add_user("admin@example.org")
            self.node.manage("user-modify", admin.uuid, "--admin")
            b = self.browser
            self.log_in(owner)
            b.click("#nav a[data-page=projects]")
            b.fill_form("#apply-form", {"name": "lab.example.org", "description": "A lab",
                                        "member:pithos.diskspace": "2G"})
            b.submit("#apply-form")
            b.wait_text("#pending-application", "waiting for an administrator")
            b.shot("project-applied")
            project = b.driver.current_url.rsplit("/", 1)[1]
            b.click("#logout")

            self.log_in(admin)
            b.open(self.ui + "#/projects/" + project)
            b.click("button[data-application-action=approve]")
            b.wait_text("#project-state", "active")
            b.click("#logout")

            self.log_in(member)
            b.click("#nav a[data-page=projects]")
            b.fill_form("#join-form", {"project": project})
            b.submit("#join-form")
            b.wait_text("#notice", "Asked to join")
            b.click("#logout")

            self.log_in(owner)
            b.open(self.ui + "#/projects/" + project)
            b.wait_text("main", "member@example.org")
            b.click("button[data-member-action=accept]")
            b.wait("the member accepted",
                   lambda: "accepted" in b.text("main"))
            b.shot("project-members")
            b.click("#logout")

            self.log_in(member)
            b.click("#nav a[data-page=projects]")
            b.wait_text("main", "lab.example.org")
            b.click("button[data-membership-action=leave]")
            b.wait_text("#notice", "You left the project")
            code, quotas = self.node.api("GET", "/account/v1.0/quotas", member.token)
            self.assertEqual(code, 200)
            self.assertNotIn(project, quotas)
            self.assertEqual(b.console_errors(), [])
        return self.drive(steps)
