"""The Shibboleth provider believes identity headers only from trusted
front servers."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from snfd.identity.providers import Credentials, ExternalIdentity
from snfd.identity.shibboleth import ShibbolethProvider, first_value
from snfd.interfaces import IAuthProvider

HEADERS = {
    "eppn": "alice@example.org",
    "mail": "alice@mail.example.org",
    "givenname": "Alice",
    "sn": "Liddell",
}


def provider(trusted=("127.0.0.1",), **kwargs) -> ShibbolethProvider:
    return ShibbolethProvider(trusted, **kwargs)


def authenticate(p: ShibbolethProvider, headers, source="127.0.0.1"):
    return defer.ensureDeferred(p.authenticate(Credentials(headers=headers, source=source)))


class ShibbolethProviderTests(unittest.TestCase):
    def result(self, p, headers, source="127.0.0.1"):
        return self.successResultOf(authenticate(p, headers, source))

    def test_provides_interface(self):
        """The provider implements IAuthProvider, creates users and vouches
        for the email."""
        p = provider()
        self.assertTrue(verifyObject(IAuthProvider, p))
        self.assertEqual(p.name, "shibboleth")
        self.assertTrue(p.creates_users)
        self.assertTrue(p.verified_email)

    def test_trusted_source(self):
        """A request from a trusted address gives the identity in its headers."""
        self.assertEqual(
            self.result(provider(), HEADERS),
            ExternalIdentity("shibboleth", "alice@example.org", email="alice@mail.example.org",
                             first_name="Alice", last_name="Liddell"))

    def test_untrusted_source(self):
        """The same headers from any other address are not handled."""
        p = provider(("10.0.0.5",))
        self.assertIsNone(self.result(p, HEADERS, "127.0.0.1"))
        self.assertIsNone(self.result(p, HEADERS, "10.0.0.6"))
        self.assertIsNone(self.result(p, HEADERS, ""))
        self.assertIsNone(self.result(p, HEADERS, "not-an-address"))

    def test_trusted_network(self):
        """A trusted entry may be a network; IPv4 addresses reported as
        IPv4-mapped IPv6 addresses count as the IPv4 address."""
        p = provider(("10.0.0.0/24", "::1"))
        self.assertEqual(self.result(p, HEADERS, "10.0.0.77").identifier, "alice@example.org")
        self.assertEqual(self.result(p, HEADERS, "::ffff:10.0.0.77").identifier,
                         "alice@example.org")
        self.assertEqual(self.result(p, HEADERS, "::1").identifier, "alice@example.org")
        self.assertIsNone(self.result(p, HEADERS, "10.0.1.1"))

    def test_no_trusted_address_trusts_nobody(self):
        """With no front server configured (the default) no address is
        trusted, loopback included (L8)."""
        from snfd.plugins.identity import plugin

        [key] = [k for k in plugin.config_keys if k.name == "shibboleth_trusted"]
        self.assertEqual(tuple(key.default), ())
        p = provider(key.default)
        for source in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
            self.assertIsNone(self.result(p, HEADERS, source), source)

    def test_bad_trusted_address(self):
        """A trusted address that is not an IP address or network is refused."""
        self.assertRaises(ValueError, ShibbolethProvider, ["frontend.example.org"])

    def test_missing_id_header(self):
        """Without the id header (or with an empty one) the request is not
        handled, whatever other headers it has."""
        p = provider()
        headers = {k: v for k, v in HEADERS.items() if k != "eppn"}
        self.assertIsNone(self.result(p, headers))
        self.assertIsNone(self.result(p, {**headers, "eppn": ""}))
        self.assertIsNone(self.result(p, {**headers, "eppn": " ; "}))

    def test_missing_attributes(self):
        """Absent email and name headers give empty strings."""
        identity = self.result(provider(), {"eppn": "bob@example.org"})
        self.assertEqual(identity, ExternalIdentity("shibboleth", "bob@example.org"))

    def test_multi_valued(self):
        """Of several ';'-separated values the first non-empty one is taken;
        an escaped ';' belongs to the value."""
        headers = {
            "eppn": "alice@example.org;alice@other.example.org",
            "mail": " ;a@example.org; b@example.org",
            "givenname": "Al\\;ice;Alicia",
            "sn": "Liddell",
        }
        identity = self.result(provider(), headers)
        self.assertEqual(identity.identifier, "alice@example.org")
        self.assertEqual(identity.email, "a@example.org")
        self.assertEqual(identity.first_name, "Al;ice")

    def test_header_names_case_insensitive(self):
        """Configured header names match whatever their case, in the
        configuration or in the request."""
        p = provider(id_header="EPPN", email_header="Mail", first_name_header="GIVENNAME",
                     last_name_header="Sn")
        self.assertEqual(self.result(p, HEADERS).first_name, "Alice")
        mixed = {"Eppn": "alice@example.org", "MAIL": "a@example.org", "GivenName": "Alice",
                 "sN": "Liddell"}
        self.assertEqual(
            self.result(provider(), mixed),
            ExternalIdentity("shibboleth", "alice@example.org", email="a@example.org",
                             first_name="Alice", last_name="Liddell"))

    def test_custom_headers(self):
        """Other header names can be configured; the defaults are then ignored."""
        p = provider(id_header="X-Remote-User", email_header="X-Mail")
        headers = {"x-remote-user": "carol@example.org", "x-mail": "carol@example.org",
                   "eppn": "mallory@example.org"}
        identity = self.result(p, headers)
        self.assertEqual((identity.identifier, identity.email),
                         ("carol@example.org", "carol@example.org"))
        self.assertIsNone(self.result(p, {"eppn": "mallory@example.org"}))

    def test_ignores_username_and_password(self):
        """A login name and password do not make an untrusted request handled."""
        d = defer.ensureDeferred(provider().authenticate(
            Credentials(username="alice@example.org", password="x", source="192.0.2.1")))
        self.assertIsNone(self.successResultOf(d))


class FirstValueTests(unittest.TestCase):
    def test_first_value(self):
        """first_value splits on unescaped ';' and skips blank values."""
        self.assertEqual(first_value(""), "")
        self.assertEqual(first_value("a"), "a")
        self.assertEqual(first_value("a;b"), "a")
        self.assertEqual(first_value(";;  ;b;c"), "b")
        self.assertEqual(first_value(" a\\;b ;c"), "a;b")
        self.assertEqual(first_value(";"), "")
