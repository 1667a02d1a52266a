"""Accounts over a real PostgreSQL: user states, logins and their throttle,
tokens (hashed, expiring, renewed, revoked) and the cross-node cache
invalidation through NOTIFY."""

from __future__ import annotations

import datetime
import email
import hashlib
import re
import threading

import argon2
from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from snfd import errors
from snfd.db.notify import Listener
from snfd.db.pool import Database
from snfd.identity import store
from snfd.identity.accounts import WAITING_PER_SLOT, Accounts, Policy, TooManyFailures
from snfd.identity.mail import FileMailer
from snfd.identity.passwords import Passwords
from snfd.identity.providers import Credentials, LocalProvider
from snfd.identity.tokens import TokenCache, new_token
from snfd.interfaces import IAuthenticator
from snfd.testing.identity import identity_database
from snfd.testing.postgres import query, started_pool

PASSWORD = "correct horse battery"


class AccountsTestCase(unittest.TestCase):
    """A database with the identity schema and helpers to build Accounts."""

    def setUp(self):
        self.dsn = identity_database(self)
        self.maildir = self.mktemp()

    def database(self) -> Database:
        return started_pool(self, self.dsn, max_connections=4)

    def accounts(self, policy: Policy | None = None, cache: TokenCache | None = None,
                 clock=reactor, passwords: Passwords | None = None) -> Accounts:
        from pathlib import Path

        passwords = passwords if passwords is not None else Passwords(reactor)
        self.addCleanup(getattr(passwords, "stop", lambda: None))
        accounts = Accounts(self.database(), clock, passwords,
                            cache if cache is not None else TokenCache(clock, 0),
                            FileMailer(Path(self.maildir), "t@x", reactor),
                            [], policy or Policy(public_url="http://cloud.test"))
        accounts.providers.append(LocalProvider(accounts.check_password))
        return accounts

    def mails(self) -> list[email.message.Message]:
        from pathlib import Path

        d = Path(self.maildir)
        if not d.exists():
            return []
        return [email.message_from_bytes(p.read_bytes()) for p in sorted(d.iterdir())]

    def query(self, sql: str, *args):
        return query(self.dsn, sql, *args)


class UserStateTests(AccountsTestCase):
    @defer.inlineCallbacks
    def test_signup_verification_moderation_activation(self):
        """A sign-up waits for verification, then moderation, then is active
        with a base project whose id is the user's uuid."""
        accounts = self.accounts()
        user, token = yield defer.ensureDeferred(
            accounts.create_user("Ann@Example.org", "Ann", "Lee", password=PASSWORD))
        self.assertEqual((user.state, token), ("pending_verification", None))
        [mail] = self.mails()
        self.assertEqual(mail["To"], "Ann@Example.org")
        body = mail.get_payload(decode=True).decode()
        code = body.split("auth=")[1].split()[0]
        user = yield defer.ensureDeferred(accounts.verify(code))
        self.assertEqual(user.state, "pending_moderation")
        yield self.assertFailure(defer.ensureDeferred(accounts.verify(code)), errors.NotFound)
        user = yield defer.ensureDeferred(accounts.moderate(user.uuid, True))
        self.assertEqual(user.state, "active")
        rows = self.query("SELECT id::text, system_project FROM identity_projects")
        self.assertEqual(rows, [(user.uuid, True)])

    @defer.inlineCallbacks
    def test_no_moderation(self):
        """With moderation off, verifying the email activates the account."""
        accounts = self.accounts(Policy(moderation=False))
        user, _ = yield defer.ensureDeferred(accounts.create_user("b@example.org",
                                                                  password=PASSWORD))
        code = self.mails()[0].get_payload(decode=True).decode().split("auth=")[1].split()[0]
        user = yield defer.ensureDeferred(accounts.verify(code))
        self.assertEqual(user.state, "active")

    @defer.inlineCallbacks
    def test_duplicate_email_conflicts(self):
        """Emails are unique regardless of case."""
        accounts = self.accounts()
        yield defer.ensureDeferred(accounts.create_user("c@example.org", activate=True))
        yield self.assertFailure(
            defer.ensureDeferred(accounts.create_user("C@EXAMPLE.org")), errors.Conflict)

    @defer.inlineCallbacks
    def test_bad_email_and_short_password(self):
        """A malformed email or a short password is a 400 and creates nothing."""
        accounts = self.accounts()
        yield self.assertFailure(defer.ensureDeferred(accounts.create_user("nope")),
                                 errors.BadRequest)
        yield self.assertFailure(
            defer.ensureDeferred(accounts.create_user("d@example.org", password="short")),
            errors.BadRequest)
        self.assertEqual(self.query("SELECT count(*) FROM identity_users"), [(0,)])

    @defer.inlineCallbacks
    def test_passwords_are_stored_hashed(self):
        """The database holds an argon2id hash, never the password."""
        accounts = self.accounts()
        yield defer.ensureDeferred(accounts.create_user("e@example.org", password=PASSWORD,
                                                        activate=True))
        [(hashed,)] = self.query("SELECT password_hash FROM identity_users")
        self.assertTrue(hashed.startswith("$argon2id$"))
        self.assertNotIn(PASSWORD, hashed)


class LoginTests(AccountsTestCase):
    @defer.inlineCallbacks
    def test_login(self):
        """The right password logs in, case-insensitively on the email."""
        accounts = self.accounts()
        user, _ = yield defer.ensureDeferred(
            accounts.create_user("f@example.org", password=PASSWORD, activate=True))
        got = yield defer.ensureDeferred(
            accounts.login(Credentials("F@example.org", PASSWORD, source="10.0.0.1")))
        self.assertEqual(got.uuid, user.uuid)

    @defer.inlineCallbacks
    def test_wrong_unknown_inactive(self):
        """Wrong passwords and unknown users are 401 "Invalid credentials";
        a right password of a user not yet active is 401 "User inactive"."""
        accounts = self.accounts()
        yield defer.ensureDeferred(accounts.create_user("g@example.org", password=PASSWORD))
        for creds in (Credentials("g@example.org", "wrong password"),
                      Credentials("nobody@example.org", PASSWORD)):
            e = yield self.assertFailure(defer.ensureDeferred(accounts.login(creds)),
                                         errors.Unauthorized)
            self.assertEqual(e.message, "Invalid credentials")
        e = yield self.assertFailure(
            defer.ensureDeferred(accounts.login(Credentials("g@example.org", PASSWORD))),
            errors.Unauthorized)
        self.assertEqual(e.message, "User inactive")

    @defer.inlineCallbacks
    def test_throttle_per_account(self):
        """After N failures an account is refused (429) even with the right
        password from the addresses that failed; other accounts are
        unaffected."""
        accounts = self.accounts(Policy(failures_per_account=3, failures_per_address=100))
        yield defer.ensureDeferred(accounts.create_user("h@example.org", password=PASSWORD,
                                                        activate=True))
        yield defer.ensureDeferred(accounts.create_user("i@example.org", password=PASSWORD,
                                                        activate=True))
        for n in range(3):
            yield self.assertFailure(defer.ensureDeferred(accounts.login(
                Credentials("h@example.org", "bad password", source=f"10.0.0.{n}"))),
                errors.Unauthorized)
        e = yield self.assertFailure(defer.ensureDeferred(accounts.login(
            Credentials("h@example.org", PASSWORD, source="10.0.0.1"))), TooManyFailures)
        self.assertEqual(e.code, 429)
        self.assertIn("Retry-After", e.headers)
        yield defer.ensureDeferred(accounts.login(Credentials("i@example.org", PASSWORD,
                                                              source="10.0.0.1")))

    @defer.inlineCallbacks
    def test_lockout_spares_addresses_that_did_not_fail(self):
        """An attacker's failures lock the account for the attacker's
        address, never for the right password from an address that has
        not failed (L3); the attacker stays locked out even with the right
        password."""
        accounts = self.accounts(Policy(failures_per_account=3, failures_per_address=100))
        user, _ = yield defer.ensureDeferred(
            accounts.create_user("victim@example.org", password=PASSWORD, activate=True))
        for _ in range(5):
            try:
                yield defer.ensureDeferred(accounts.login(
                    Credentials("victim@example.org", "guessing", source="203.0.113.9")))
            except (errors.Unauthorized, TooManyFailures):
                pass
        yield self.assertFailure(defer.ensureDeferred(accounts.login(
            Credentials("victim@example.org", PASSWORD, source="203.0.113.9"))),
            TooManyFailures)
        got = yield defer.ensureDeferred(accounts.login(
            Credentials("victim@example.org", PASSWORD, source="10.0.0.1")))
        self.assertEqual(got.uuid, user.uuid)

    @defer.inlineCallbacks
    def test_throttle_per_address(self):
        """Failures from one address across many accounts block that
        address, not the accounts."""
        accounts = self.accounts(Policy(failures_per_account=100, failures_per_address=3))
        yield defer.ensureDeferred(accounts.create_user("j@example.org", password=PASSWORD,
                                                        activate=True))
        for n in range(3):
            yield self.assertFailure(defer.ensureDeferred(accounts.login(
                Credentials(f"x{n}@example.org", "bad password", source="10.1.1.1"))),
                errors.Unauthorized)
        yield self.assertFailure(defer.ensureDeferred(accounts.login(
            Credentials("j@example.org", PASSWORD, source="10.1.1.1"))), TooManyFailures)
        yield defer.ensureDeferred(accounts.login(Credentials("j@example.org", PASSWORD,
                                                              source="10.2.2.2")))


class _CountingHasher(argon2.PasswordHasher):
    """An argon2 hasher that records each verification and its thread, and
    the most verifications that ran at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self.verified: list[str] = []
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def verify(self, hash, password):
        with self._lock:
            self.verified.append(threading.current_thread().name)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.active -= 1


class ConcurrentLoginTests(AccountsTestCase):
    @defer.inlineCallbacks
    def login_burst(self, accounts, n, source="10.3.3.3"):
        """``n`` wrong-password logins to one account started at once: the
        exceptions they end with."""
        ds = [defer.ensureDeferred(accounts.login(
            Credentials("burst@example.org", "wrong password", source=source)))
            for _ in range(n)]
        results = yield defer.DeferredList(ds, consumeErrors=True)
        return [r.value for ok, r in results]

    @defer.inlineCallbacks
    def test_concurrent_wrong_passwords_stop_at_the_limit(self):
        """Ten wrong passwords sent at once against a limit of five: at most
        five argon2 verifications run, the rest are refused with 429 (M5)."""
        hasher = _CountingHasher()
        accounts = self.accounts(Policy(failures_per_account=5, failures_per_address=100),
                                 passwords=Passwords(reactor, hasher))
        yield defer.ensureDeferred(accounts.create_user("burst@example.org",
                                                        password=PASSWORD, activate=True))
        errs = yield self.login_burst(accounts, 10)
        self.assertLessEqual(len(hasher.verified), 5)
        self.assertEqual(len(errs), 10)
        self.assertTrue(all(isinstance(e, errors.Unauthorized | TooManyFailures)
                            for e in errs), errs)
        self.assertGreaterEqual(sum(isinstance(e, TooManyFailures) for e in errs), 5)

    @defer.inlineCallbacks
    def test_attempts_are_counted_before_verifying(self):
        """With no bound on concurrent verifications, the failure count
        alone stops a burst: each attempt is counted atomically before its
        verification, so exactly the limit get verified (M5)."""
        hasher = _CountingHasher()
        policy = Policy(failures_per_account=5, failures_per_address=100,
                        concurrent_per_account=100, concurrent_per_address=100)
        accounts = self.accounts(policy, passwords=Passwords(reactor, hasher))
        yield defer.ensureDeferred(accounts.create_user("burst@example.org",
                                                        password=PASSWORD, activate=True))
        errs = yield self.login_burst(accounts, 10)
        self.assertEqual(len(hasher.verified), 5)
        self.assertEqual(sum(isinstance(e, errors.Unauthorized) for e in errs), 5)
        self.assertEqual(sum(isinstance(e, TooManyFailures) for e in errs), 5)

    @defer.inlineCallbacks
    def test_concurrent_verifications_bounded(self):
        """At most ``concurrent_per_account`` verifications of one account
        run at once, however many addresses try it: the others wait their
        turn (several client threads logging in at once all get answers),
        and beyond ``WAITING_PER_SLOT`` times the bound waiting, further
        logins are refused at once with 429."""
        hasher = _CountingHasher()
        policy = Policy(failures_per_account=100, failures_per_address=100,
                        concurrent_per_account=2, concurrent_per_address=100)
        accounts = self.accounts(policy, passwords=Passwords(reactor, hasher, threads=8))
        yield defer.ensureDeferred(accounts.create_user("burst@example.org",
                                                        password=PASSWORD, activate=True))
        n = 2 + WAITING_PER_SLOT * 2 + 3
        ds = [defer.ensureDeferred(accounts.login(
            Credentials("burst@example.org", PASSWORD if k == 0 else "wrong password",
                        source=f"10.4.0.{k}")))
            for k in range(n)]
        results = yield defer.DeferredList(ds, consumeErrors=True)
        self.assertTrue(results[0][0], results[0][1])
        errs = [r.value for ok, r in results[1:]]
        self.assertEqual(sum(isinstance(e, TooManyFailures) for e in errs), 3)
        self.assertEqual(sum(isinstance(e, errors.Unauthorized) for e in errs), n - 4)
        self.assertEqual(len(hasher.verified), n - 3)
        self.assertLessEqual(hasher.peak, 2)

    @defer.inlineCallbacks
    def test_hashing_has_its_own_threads(self):
        """Password verification runs in the passwords' own bounded pool,
        not in the reactor's pool that block I/O shares."""
        hasher = _CountingHasher()
        passwords = Passwords(reactor, hasher, threads=2)
        self.addCleanup(passwords.stop)
        yield defer.ensureDeferred(passwords.verify(None, "some password"))
        self.assertEqual(len(hasher.verified), 1)
        self.assertIn("snfd-passwords", hasher.verified[0])
        self.assertEqual(passwords.threads, 2)


class TokenTests(AccountsTestCase):
    @defer.inlineCallbacks
    def test_token_stored_as_hash(self):
        """Only the SHA-256 of a token is in the database."""
        accounts = self.accounts()
        _, token = yield defer.ensureDeferred(accounts.create_user("k@example.org",
                                                                   activate=True))
        [(stored,)] = self.query("SELECT hash FROM identity_tokens")
        self.assertEqual(bytes(stored), hashlib.sha256(token.encode()).digest())
        dump = str(self.query("SELECT * FROM identity_tokens"))
        self.assertNotIn(token, dump)

    @defer.inlineCallbacks
    def test_authenticate_renew_revoke(self):
        """A token authenticates its user; renewal ends it at once; a
        revoked token is unknown."""
        accounts = self.accounts()
        verifyObject(IAuthenticator, accounts)
        user, token = yield defer.ensureDeferred(
            accounts.create_user("l@example.org", password=PASSWORD, activate=True))
        p = yield defer.ensureDeferred(accounts.authenticate(token))
        self.assertEqual((p.user, p.email, p.is_component), (user.uuid, "l@example.org", False))
        new = yield defer.ensureDeferred(accounts.renew_token(user.uuid))
        e = yield self.assertFailure(defer.ensureDeferred(accounts.authenticate(token)),
                                     errors.Unauthorized)
        self.assertEqual(e.message, "Invalid token")
        yield defer.ensureDeferred(accounts.authenticate(new))
        second, _ = yield defer.ensureDeferred(accounts.issue_token(user))
        yield defer.ensureDeferred(accounts.revoke(second))
        yield self.assertFailure(defer.ensureDeferred(accounts.authenticate(second)),
                                 errors.Unauthorized)
        yield self.assertFailure(defer.ensureDeferred(accounts.revoke(second)), errors.NotFound)

    @defer.inlineCallbacks
    def test_expiry(self):
        """A token past its expiry is refused with "Authentication expired"."""
        accounts = self.accounts()
        user, _ = yield defer.ensureDeferred(accounts.create_user("m@example.org",
                                                                  activate=True))
        past = accounts.now() - datetime.timedelta(seconds=1)
        token, _ = yield defer.ensureDeferred(accounts.issue_token(user, expires_at=past))
        e = yield self.assertFailure(defer.ensureDeferred(accounts.authenticate(token)),
                                     errors.Unauthorized)
        self.assertEqual(e.message, "Authentication expired")
        n = yield defer.ensureDeferred(accounts.expire_tokens())
        self.assertEqual(n, 1)

    @defer.inlineCallbacks
    def test_deactivation_ends_tokens(self):
        """Deactivating a user ends every token of theirs; reactivation does
        not revive them."""
        accounts = self.accounts()
        user, token = yield defer.ensureDeferred(accounts.create_user("n@example.org",
                                                                      activate=True))
        yield defer.ensureDeferred(accounts.deactivate(user.uuid, "abuse"))
        yield self.assertFailure(defer.ensureDeferred(accounts.authenticate(token)),
                                 errors.Unauthorized)
        yield defer.ensureDeferred(accounts.activate(user.uuid))
        yield self.assertFailure(defer.ensureDeferred(accounts.authenticate(token)),
                                 errors.Unauthorized)

    @defer.inlineCallbacks
    def test_scoped_token_needs_membership(self):
        """A token may be scoped to the user's own base project, not to
        another user's."""
        accounts = self.accounts()
        a, _ = yield defer.ensureDeferred(accounts.create_user("o@example.org", activate=True))
        b, _ = yield defer.ensureDeferred(accounts.create_user("p@example.org", activate=True))
        _, t = yield defer.ensureDeferred(accounts.issue_token(a, project=a.uuid))
        self.assertEqual(t.project, a.uuid)
        yield self.assertFailure(defer.ensureDeferred(accounts.issue_token(a, project=b.uuid)),
                                 errors.Unauthorized)

    @defer.inlineCallbacks
    def test_component_tokens(self):
        """A component token authenticates the component; replacing it ends
        the old one."""
        accounts = self.accounts()
        token = yield defer.ensureDeferred(accounts.set_component("pithos"))
        p = yield defer.ensureDeferred(accounts.authenticate(token))
        self.assertEqual((p.component, p.user), ("pithos", None))
        yield defer.ensureDeferred(accounts.set_component("pithos"))
        yield self.assertFailure(defer.ensureDeferred(accounts.authenticate(token)),
                                 errors.Unauthorized)


class CacheTests(AccountsTestCase):
    @defer.inlineCallbacks
    def test_renewal_on_one_node_clears_the_other_nodes_cache(self):
        """Two nodes with hour-long caches: a renewal made through one is
        refused by the other as soon as the NOTIFY arrives."""
        nodes = []
        for _ in range(2):
            listener_box = []
            cache = TokenCache(reactor, 3600, usable=lambda b=listener_box: b[0].listening)
            accounts = self.accounts(cache=cache)
            listener = Listener(reactor, self.dsn, store.NOTIFY_CHANNEL,
                                cache.invalidate, cache.clear)
            listener_box.append(listener)
            listener.start()
            self.addCleanup(listener.stop)
            nodes.append((accounts, cache, listener))
        yield self.until(lambda: all(n[2].listening for n in nodes))
        (one, _, _), (two, cache_two, _) = nodes
        user, token = yield defer.ensureDeferred(one.create_user("q@example.org",
                                                                 activate=True))
        yield defer.ensureDeferred(two.authenticate(token))
        self.assertEqual(len(cache_two), 1)
        yield defer.ensureDeferred(one.renew_token(user.uuid))
        yield self.until(lambda: len(cache_two) == 0)
        yield self.assertFailure(defer.ensureDeferred(two.authenticate(token)),
                                 errors.Unauthorized)

    def test_cache_unusable_while_not_listening(self):
        """A cache whose listener is down answers nothing from memory."""
        listening = [True]
        cache = TokenCache(task.Clock(), 60, usable=lambda: listening[0])
        cache.put(b"k", "user:u", "value")
        self.assertEqual(cache.get(b"k"), "value")
        listening[0] = False
        self.assertIsNone(cache.get(b"k"))

    def test_cache_expiry_and_bounds(self):
        """Entries live ``ttl`` seconds (or less, ``not_after``) and the
        cache keeps at most ``max_entries``."""
        clock = task.Clock()
        cache = TokenCache(clock, 10, max_entries=2)
        cache.put(b"a", "user:1", 1)
        cache.put(b"b", "user:1", 2, not_after=5)
        clock.advance(6)
        self.assertEqual((cache.get(b"a"), cache.get(b"b")), (1, None))
        cache.put(b"c", "user:2", 3)
        cache.put(b"d", "user:2", 4)
        self.assertEqual(len(cache), 2)
        cache.invalidate("user:2")
        self.assertEqual(len(cache), 0)

    @defer.inlineCallbacks
    def until(self, predicate, timeout=10.0):
        waited = 0.0
        while not predicate():
            if waited > timeout:
                self.fail("condition not reached")
            yield task.deferLater(reactor, 0.02, lambda: None)
            waited += 0.02


class NewTokenTests(unittest.TestCase):
    def test_tokens_never_look_like_options(self):
        """No token starts with '-', so `swift -K <token>` and `openstack
        --os-token <token>` never mistake it for an option; tokens stay
        43 URL-safe characters and distinct."""
        tokens = [new_token() for _ in range(5000)]
        self.assertEqual([t for t in tokens if t.startswith("-")], [])
        self.assertTrue(all(re.fullmatch(r"[A-Za-z0-9_-]{43}", t) for t in tokens))
        self.assertEqual(len(set(tokens)), len(tokens))
