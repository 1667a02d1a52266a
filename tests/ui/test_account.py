"""Account pages in a real browser: sign-up, the mailed link, log in and
out, the profile, the API token renewed (the old one refused) and the
quotas; the page's security headers."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

from tests.ui.case import BrowserCase


def status_with_token(url: str, token: str) -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", "/identity/v3/auth/tokens",
                     headers={"X-Auth-Token": token, "X-Subject-Token": token})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class AccountTests(BrowserCase):
    def test_signup_verify_login_logout(self):
        """A new person signs up, follows the mailed link, chooses a
        password, logs in, sees the account page, and logs out."""
        def steps() -> None:
            b = self.browser
            b.open(self.ui)
            b.wait_text("main", "Log in")
            b.shot("login")
            b.click("a[href='#/signup']")
            b.fill_form("#signup-form", {"email": "new@example.org", "first_name": "New",
                                         "last_name": "Person", "password": "first pass 1"})
            b.submit("#signup-form")
            b.wait_text("#signup-done", "new@example.org")
            link = self.last_mail_link()
            self.assertIn("/ui/activate?auth=", link)
            b.open(self.node.url + link[link.index("/ui/activate"):])
            b.fill_form("#activate-form", {"password": "second pass 2"})
            b.submit("#activate-form")
            b.wait_text("#activate-done", "active")
            b.click("#activate-done ~ p a")
            b.fill_form("#login-form", {"name": "new@example.org",
                                        "password": "second pass 2"})
            b.submit("#login-form")
            b.wait_text("#who", "new@example.org")
            b.click("#nav a[data-page=account]")
            b.wait_text("#user-name", "new@example.org")
            b.shot("account")
            b.click("#logout")
            b.wait_text("main", "Log in")
            self.assertEqual(b.run("return sessionStorage.length"), 0)
            self.assertEqual(b.console_errors(), [])
        return self.drive(steps)

    def test_wrong_password_shows_the_api_message(self):
        def steps() -> None:
            user = self.node.add_user("pw@example.org")
            b = self.browser
            b.open(self.ui)
            b.fill_form("#login-form", {"name": user.email, "password": "not it"})
            b.submit("#login-form")
            shown = b.wait_text("#login-form .error", "")
            self.assertTrue(shown.strip())
            self.assertNotIn("Traceback", shown)
        return self.drive(steps)

    def test_token_renewed_and_old_one_refused(self):
        """Renewing the API token shows the new one once; the user's old
        token is refused from then on, and the page goes on working."""
        def steps() -> None:
            user = self.node.add_user("renew@example.org")
            self.assertEqual(status_with_token(self.node.url, user.token), 200)
            b = self.browser
            self.log_in(user)
            b.click("#nav a[data-page=account]")
            b.accept_dialogs()
            b.click("#renew-token")
            new = b.element("#new-token").text.strip()
            self.assertTrue(new)
            self.assertNotEqual(new, user.token)
            b.shot("token-renewed")
            self.assertEqual(status_with_token(self.node.url, user.token), 401)
            self.assertEqual(status_with_token(self.node.url, new), 200)
            b.click("#nav a[data-page=account]")
            b.wait_text("#user-name", user.email)
            b.wait_text("main", "pithos.diskspace")
        return self.drive(steps)

    def test_page_headers_forbid_inline_script_and_framing(self):
        def steps() -> None:
            parts = urlsplit(self.node.url)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            for path in ("/ui/", "/ui/static/js/app.js"):
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200, path)
                csp = r.getheader("content-security-policy")
                self.assertIn("script-src 'self'", csp)
                self.assertNotIn("unsafe-inline", csp)
                self.assertIn("frame-ancestors 'none'", csp)
                self.assertEqual(r.getheader("x-content-type-options"), "nosniff")
            for path in ("/ui/static/", "/ui/static/../__init__.py", "/ui/static/.hidden",
                         "/ui/static/js/nothing.js"):
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 404, path)
            conn.close()
        return self.drive(steps)

    def test_token_handed_over_in_the_fragment(self):
        """What a Shibboleth or OpenID login hands the browser
        (/ui/#token=...) becomes the session when this tab started a login
        (a provider's link), and the token leaves the address at once
        (replaced, so no history entry keeps it); a link with a token the
        tab did not ask for logs nobody in."""
        def steps() -> None:
            user = self.node.add_user("handed@example.org")
            other = self.node.add_user("attacker@example.org")
            b = self.browser
            b.open(self.ui + "#token=" + other.token)
            b.wait_text("#notice", "did not start was ignored")
            self.assertEqual(b.text("#who"), "")
            self.assertNotIn(other.token, b.driver.current_url)
            # As clicking a provider's link on the login page does:
            b.run("sessionStorage.setItem('snfd.login-pending', String(Date.now()));")
            b.open(self.node.url + "/ui/static/favicon.svg")  # the provider's pages
            b.open(self.ui + "#token=" + user.token)
            b.wait_text("#who", user.email)
            self.assertNotIn(user.token, b.driver.current_url)
        return self.drive(steps)


class ModerationTests(BrowserCase):
    """Moderation on, as on the embedded default."""

    config = "[identity]\nmoderation = yes\n"

    def test_an_administrator_activates_a_verified_sign_up(self):
        def steps() -> None:
            admin = self.node.add_user("boss@example.org")
            self.node.manage("user-modify", admin.uuid, "--admin")
            b = self.browser
            b.open(self.ui + "#/signup")
            b.fill_form("#signup-form", {"email": "wait@example.org",
                                         "password": "a pass 1"})
            b.submit("#signup-form")
            b.wait_text("#signup-done", "wait@example.org")
            link = self.last_mail_link()
            b.open(self.node.url + link[link.index("/ui/activate"):])
            b.fill_form("#activate-form", {"password": "a pass 1"})
            b.submit("#activate-form")
            b.wait_text("#activate-done", "approval")
            b.open(self.ui + "#/login")
            b.fill_form("#login-form", {"name": "wait@example.org", "password": "a pass 1"})
            b.submit("#login-form")
            b.wait_text("#login-form .error", "")
            self.assertEqual(b.text("#who"), "")

            self.log_in(admin)
            b.click("#nav a[data-page=users]")
            b.click("button[data-user='wait@example.org']")
            b.wait_text("#notice", "wait@example.org is active now")
            b.shot("users")
            b.click("#logout")
            b.fill_form("#login-form", {"name": "wait@example.org", "password": "a pass 1"})
            b.submit("#login-form")
            b.wait_text("#who", "wait@example.org")
            self.assertFalse(b.driver.find_element(
                "css selector", "#nav a[data-page=users]").is_displayed())
            # The refused login before the activation is the only error.
            self.assertEqual([e for e in b.console_errors()
                              if not ("/auth/tokens" in e and "401" in e)], [])
        return self.drive(steps)
