"""The LDAP provider against a private OpenLDAP server
(``snfd.testing.slapd``): bind as the person, read their entry, and tell
wrong credentials from an unreachable server."""

from __future__ import annotations

import subprocess

from twisted.internet import protocol, task, threads
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from snfd.identity.ldap import LdapProvider, escape_dn_value
from snfd.identity.providers import (
    Credentials,
    ExternalIdentity,
    LoginFailed,
    ProviderUnavailable,
)
from snfd.interfaces import IAuthProvider
from snfd.testing.slapd import private_slapd

TEMPLATE = "uid={username},ou=people,dc=example,dc=org"
ALICE_DN = "uid=alice,ou=people,dc=example,dc=org"


def real_reactor():
    from twisted.internet import reactor
    return reactor


def make_provider(url: str, timeout: float = 10.0, **kwargs) -> LdapProvider:
    return LdapProvider(real_reactor(), url, TEMPLATE, "mail", "givenName", "sn", timeout,
                        **kwargs)


def login(provider: LdapProvider, username: str, password: str):
    return provider.authenticate(Credentials(username=username, password=password,
                                             source="127.0.0.1"))


class LdapProviderTests(unittest.TestCase):
    """Logins against a running server."""

    def setUp(self):
        self.slapd = private_slapd(self)
        self.slapd.add_person("alice", "wonder land", mail="alice@example.org",
                              given="Alice", sn="Liddell")
        self.slapd.add_person("bob", "builder")
        self.provider = make_provider(self.slapd.url)

    def test_provides_interface(self):
        """The provider implements IAuthProvider, creates users and vouches
        for the email."""
        self.assertTrue(verifyObject(IAuthProvider, self.provider))
        self.assertEqual(self.provider.name, "ldap")
        self.assertTrue(self.provider.creates_users)
        self.assertTrue(self.provider.verified_email)

    async def test_right_password(self):
        """The right password gives the entry's DN (lower-cased) and its
        mapped attributes."""
        identity = await login(self.provider, "alice", "wonder land")
        self.assertEqual(identity, ExternalIdentity(
            provider="ldap", identifier=ALICE_DN, email="alice@example.org",
            first_name="Alice", last_name="Liddell", info={"dn": ALICE_DN}))

    async def test_identifier_is_the_stored_dn(self):
        """Spellings of the login name that the server matches to the same
        entry (case, surrounding spaces) give the same identifier: the DN
        as the server stores it, lower-cased."""
        for username in ("ALICE", " alice ", "Alice"):
            identity = await login(self.provider, username, "wonder land")
            self.assertEqual((identity.identifier, identity.info["dn"]), (ALICE_DN, ALICE_DN),
                             repr(username))

    async def test_other_attribute_mapping(self):
        """Configured attribute names pick the values, whatever their case."""
        provider = LdapProvider(real_reactor(), self.slapd.url, TEMPLATE, "UID", "cn", "SN",
                                10.0)
        identity = await login(provider, "alice", "wonder land")
        self.assertEqual((identity.email, identity.first_name, identity.last_name),
                         ("alice", "Alice Liddell", "Liddell"))

    async def test_missing_attributes(self):
        """Attributes the entry lacks come back as empty strings."""
        identity = await login(self.provider, "bob", "builder")
        self.assertEqual((identity.identifier, identity.email, identity.first_name),
                         ("uid=bob,ou=people,dc=example,dc=org", "", ""))
        self.assertEqual(identity.last_name, "bob")

    async def test_wrong_password(self):
        """A wrong password fails the login."""
        with self.assertRaises(LoginFailed):
            await login(self.provider, "alice", "wonder")

    async def test_other_persons_password(self):
        """Bob's password does not log Alice in."""
        with self.assertRaises(LoginFailed):
            await login(self.provider, "alice", "builder")

    async def test_unknown_user(self):
        """An unknown login name fails the login."""
        with self.assertRaises(LoginFailed):
            await login(self.provider, "carol", "wonder land")

    async def test_no_username(self):
        """Credentials without a login name are not handled."""
        self.assertIsNone(await login(self.provider, "", "wonder land"))

    async def test_special_characters(self):
        """A login name with DN special characters binds as the entry whose
        uid is exactly that name."""
        uid = '#smith, john+x;<y>"=\\ é'
        self.slapd.add_person(uid, "secret", mail="smith@example.org")
        identity = await login(self.provider, uid, "secret")
        self.assertEqual(identity.email, "smith@example.org")
        self.assertEqual(identity.identifier, identity.info["dn"].lower())
        self.assertTrue(identity.identifier.endswith(",ou=people,dc=example,dc=org"))
        with self.assertRaises(LoginFailed):
            await login(self.provider, uid.strip("#"), "secret")

    async def test_injection(self):
        """Login names that would change the DN's shape or act as filters
        stay one attribute value and fail, even with a valid password."""
        for username in ("alice,ou=people,dc=example,dc=org", "alice,ou=x", "alice+sn=Liddell",
                         "*)(uid=*", "*", "alice\\", "alice\x00", "alice\\,ou=x"):
            with self.assertRaises(LoginFailed, msg=repr(username)):
                await login(self.provider, username, "wonder land")

    async def test_server_stopped(self):
        """A stopped server makes the provider unavailable, not the login wrong."""
        await threads.deferToThread(self.slapd.stop_server)
        with self.assertRaises(ProviderUnavailable):
            await login(self.provider, "alice", "wonder land")

    async def test_server_back(self):
        """After the server comes back, logins work again (no state is kept
        between logins)."""
        await threads.deferToThread(self.slapd.stop_server)
        with self.assertRaises(ProviderUnavailable):
            await login(self.provider, "alice", "wonder land")
        await threads.deferToThread(self.slapd.start)
        identity = await login(self.provider, "alice", "wonder land")
        self.assertEqual(identity.identifier, ALICE_DN)


class EmptyPasswordTests(unittest.TestCase):
    """An unauthenticated bind is never a login."""

    def setUp(self):
        self.slapd = private_slapd(self, allow_unauthenticated_bind=True)
        self.slapd.add_person("alice", "wonder land", mail="alice@example.org")

    async def test_empty_password(self):
        """An empty password fails the login even on a server that accepts
        a bind with a DN and no password."""
        whoami = subprocess.run(
            ["ldapwhoami", "-x", "-H", self.slapd.url, "-D", ALICE_DN, "-w", ""],
            capture_output=True, timeout=30, check=False)
        self.assertEqual(whoami.returncode, 0, "the server should accept the empty password")
        with self.assertRaises(LoginFailed):
            await login(make_provider(self.slapd.url), "alice", "")

    async def test_empty_password_not_sent(self):
        """An empty password fails the login without asking the server: it
        fails the same way while the server is down."""
        await threads.deferToThread(self.slapd.stop_server)
        with self.assertRaises(LoginFailed):
            await login(make_provider(self.slapd.url), "alice", "")


class Silent(protocol.Protocol):
    """Accepts a connection and never answers."""

    def connectionMade(self):
        self.factory.connections.append(self)

    def connectionLost(self, reason=protocol.connectionDone):
        self.factory.closed.append(self)


class UnreachableServerTests(unittest.TestCase):
    """Servers that cannot answer make the provider unavailable."""

    async def test_silent_server(self):
        """A server that accepts the connection but never answers the bind
        makes the provider unavailable once the timeout passes, and the
        connection is closed."""
        reactor = real_reactor()
        factory = protocol.Factory.forProtocol(Silent)
        factory.connections, factory.closed = [], []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        provider = make_provider(f"ldap://127.0.0.1:{port.getHost().port}", timeout=0.5)
        with self.assertRaises(ProviderUnavailable):
            await login(provider, "alice", "wonder land")
        self.assertEqual(len(factory.connections), 1)
        for _ in range(200):
            if factory.closed:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(factory.closed), 1)

    async def test_connection_refused(self):
        """Nothing listening on the port makes the provider unavailable."""
        reactor = real_reactor()
        port = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        with self.assertRaises(ProviderUnavailable):
            await login(make_provider(f"ldap://127.0.0.1:{number}"), "alice", "wonder land")


class LdapsTests(unittest.TestCase):
    """ldaps:// connects with TLS and checks the server's certificate."""

    def setUp(self):
        self.slapd = private_slapd(self, tls=True)
        self.slapd.add_person("alice", "wonder land", mail="alice@example.org")

    async def test_trusted_certificate(self):
        """With the server's certificate trusted, ldaps logins work."""
        options = optionsForClientTLS(
            "127.0.0.1", trustRoot=Certificate.loadPEM(self.slapd.certificate))
        identity = await login(make_provider(self.slapd.url, tls_options=options),
                               "alice", "wonder land")
        self.assertEqual((identity.identifier, identity.email),
                         (ALICE_DN, "alice@example.org"))

    async def test_untrusted_certificate(self):
        """A certificate the platform does not trust makes the provider
        unavailable; the password is never sent."""
        with self.assertRaises(ProviderUnavailable):
            await login(make_provider(self.slapd.url), "alice", "wonder land")

    async def test_plain_ldap_to_ldaps_port(self):
        """Plain LDAP to a TLS port makes the provider unavailable."""
        url = self.slapd.url.replace("ldaps://", "ldap://")
        with self.assertRaises(ProviderUnavailable):
            await login(make_provider(url, timeout=2.0), "alice", "wonder land")


class ConfigurationTests(unittest.TestCase):
    """Bad settings are refused when the provider is made."""

    def test_bad_url(self):
        """Only ldap:// and ldaps:// URLs naming just a server are accepted."""
        for url in ("", "http://127.0.0.1", "ldapi:///", "ldap://", "127.0.0.1:389",
                    "ldap://127.0.0.1/dc=example,dc=org", "ldap://127.0.0.1:99999",
                    "ldap://u:p@127.0.0.1"):
            with self.assertRaises(ValueError, msg=url):
                make_provider(url)
        make_provider("ldap://127.0.0.1:389/")
        make_provider("ldaps://ldap.example.org")

    def test_bad_template(self):
        """The DN template must have the {username} field and no other."""
        for template in ("uid=alice,dc=example,dc=org", "uid={user},dc=org",
                         "uid={username},ou={ou}", "uid={0}", "uid={username",
                         "uid={username[0]}", "uid={username!r}", "uid={username:>9}",
                         "uid={username.x}", "uid={}"):
            with self.assertRaises(ValueError, msg=template):
                LdapProvider(real_reactor(), "ldap://127.0.0.1", template)

    def test_bad_timeout(self):
        """The timeout must be positive."""
        with self.assertRaises(ValueError):
            make_provider("ldap://127.0.0.1", timeout=0)

    def test_user_dn(self):
        """The login name is escaped into the template."""
        provider = make_provider("ldap://127.0.0.1")
        self.assertEqual(provider.user_dn("a,b"), "uid=a\\,b,ou=people,dc=example,dc=org")


class EscapeTests(unittest.TestCase):
    def test_escape_dn_value(self):
        """escape_dn_value escapes RFC 4514 special characters, leading '#'
        and spaces, trailing spaces and control characters."""
        cases = {
            "alice": "alice",
            "a,b": "a\\,b",
            'a"+,;<>\\=b': 'a\\"\\+\\,\\;\\<\\>\\\\\\=b',
            "#a#": "\\#a#",
            " a b ": "\\ a b\\ ",
            " ": "\\ ",
            "a\x00b\nc": "a\\00b\\0Ac",
            "*)(uid=*": "*)(uid\\=*",
            "élan": "élan",
            "": "",
        }
        for value, escaped in cases.items():
            self.assertEqual(escape_dn_value(value), escaped, repr(value))
