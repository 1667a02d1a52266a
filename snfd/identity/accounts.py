"""Accounts: sign-up, verification, moderation, activation, logins through
the providers (throttled), and the life of tokens.

``Accounts`` is what the identity APIs and ``snf-manage`` call; it holds no
SQL (``store.py`` does) and no HTTP (``keystone.py``, ``account_api.py``).

User states, as Synnefo's: a sign-up starts ``pending_verification`` and
gets a mail with a one-time link; confirming it (a POST, with a password)
moves the user to ``pending_moderation`` (when ``[identity] moderation``
is on) or straight to ``active``; an administrator accepts (``active``) or
rejects (``rejected``); ``deactivated`` ends access at once.  Activation
creates the user's base project (id = the user's uuid) and a primary
token.  A user still ``pending_verification`` after ``pending_expiry`` is
deleted by the leader sweep, which frees the address.

The password of a sign-up does not outlive a verification by someone who
did not know it: the password given when confirming the link becomes the
account's (the same one, for the person who signed up), so whoever
registered someone else's address cannot log in once its owner verifies
it.

Logins are throttled by counted attempts (``store.attempt_txn``): each is
counted before its password is checked, atomically, per source address,
per (account, address), and per account, the last only for addresses that
have failed for that account: a stranger's failures never lock the right
password out from an address that has not failed.  Verifications in flight
are bounded per account and per address on each node.

A native application's browser login (RFC 8252 with PKCE, RFC 7636) gets
no token at the end of the login: ``issue_login_code`` stores a one-time
code (its hash, the user, the application's S256 challenge, the login's
methods; ``LOGIN_CODE_TTL``), and ``redeem_login_code`` deletes it as it
reads it and, when the code has not expired and the verifier matches the
challenge, issues the token the login would have.  A code is issued,
then redeemed once or never; the database holds it, so any node redeems.
"""

from __future__ import annotations

import datetime
import hmac
import unicodedata
import uuid as uuid_module
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from snfd import errors
from snfd.db.pool import Database
from snfd.identity import assignments, project_store, roles, store, tokens
from snfd.identity.mail import Mailer
from snfd.identity.passwords import PasswordRule, Passwords
from snfd.identity.providers import (
    Credentials,
    ExternalIdentity,
    LoginFailed,
    ProviderUnavailable,
)
from snfd.identity.store import Token, User
from snfd.interfaces import IAuthenticator
from snfd.web.auth import Principal

T = TypeVar("T")

log = Logger(namespace="snfd.identity")

UTC = datetime.UTC


class TooManyFailures(errors.Fault):
    code, name = 429, "overLimit"


@attrs.frozen
class Policy:
    """The account rules from ``[identity]``."""

    token_duration: datetime.timedelta = datetime.timedelta(days=30)
    moderation: bool = True
    login_window: float = 300.0
    failures_per_account: int = 5
    failures_per_address: int = 20
    public_url: str = ""
    #: logins being verified at once, per account and per address (per node)
    concurrent_per_account: int = 3
    concurrent_per_address: int = 10
    signup_window: float = 3600.0
    signups_per_address: int = 10
    signups_per_email: int = 3
    #: how long a user may stay ``pending_verification``; ``None``: forever
    pending_expiry: datetime.timedelta | None = datetime.timedelta(days=7)


#: The longest first or last name accepted.
NAME_LENGTH = 64
#: How long the one-time code of a native application's login may be
#: exchanged for the token (``issue_login_code``).
LOGIN_CODE_TTL = datetime.timedelta(seconds=60)
# Logins of one address or account that may wait for a verification slot,
# per slot; more are refused at once (429).
WAITING_PER_SLOT = 8


@implementer(IAuthenticator)
class Accounts:
    """Users, logins and tokens over the cluster database; the node's
    ``IAuthenticator``."""

    def __init__(self, db: Database, clock: Any, passwords: Passwords,
                 cache: tokens.TokenCache, mailer: Mailer, providers: Sequence[Any],
                 policy: Policy):
        self.db = db
        self._clock = clock
        self.passwords = passwords
        self.cache = cache
        self._mailer = mailer
        self.providers = list(providers)
        self.policy = policy
        self._gates: dict[str, defer.DeferredSemaphore] = {}

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock.seconds(), UTC)

    # -- users --------------------------------------------------------------

    async def create_user(self, email: str | None, first_name: str = "", last_name: str = "",
                          password: str | None = None, activate: bool = False,
                          admin: bool = False, verify: bool = True,
                          username: str | None = None) -> tuple[User, str | None]:
        """Create a user: the user and, when ``activate``d at once (by an
        administrator), its primary token.  Otherwise the user starts
        ``pending_verification`` and, when ``verify`` (and it has an email),
        gets a verification mail.  ``username``: a login name apart from the
        email; a user without an email needs one."""
        email = _check_email(email) if email is not None else None
        username = _check_username(username) if username is not None else None
        if email is None and username is None:
            raise errors.BadRequest("A user needs an email address or a username.")
        first_name = _check_name(first_name, "first_name")
        last_name = _check_name(last_name, "last_name")
        hashed = await self._hash(password) if password is not None else None
        uuid = str(uuid_module.uuid4())
        state = "active" if activate else "pending_verification"
        user = await self.db.run("identity.create_user", _create_txn, uuid, email,
                                 first_name, last_name, state, admin, hashed, self.now(),
                                 username)
        token = None
        if activate:
            token = await self.renew_token(uuid)
        elif verify and email is not None:
            await self.send_verification(user)
        log.info("user {uuid} created ({state})", uuid=uuid, state=state)
        return user, token

    async def signup(self, email: str, password: str, first_name: str = "",
                     last_name: str = "", source: str = "") -> User:
        """A sign-up from the address ``source``: a user waiting for
        verification, mailed a link.  429 past ``signups_per_address``
        sign-ups from that address or ``signups_per_email`` naming that
        email within ``signup_window`` (every sign-up counts, refused ones
        too)."""
        email = _check_email(email)
        _check_name(first_name, "first_name")
        _check_name(last_name, "last_name")
        now = self.now()
        window = datetime.timedelta(seconds=self.policy.signup_window)
        limits = [store.Limit(f"signup-address:{source}", self.policy.signups_per_address),
                  store.Limit(f"signup-email:{email.lower()}", self.policy.signups_per_email)]
        if not await self.db.run("identity.signup_attempt", store.attempt_txn, limits, now,
                                 now - window):
            raise TooManyFailures("Too many sign-ups; try again later.",
                                  headers={"Retry-After": str(int(self.policy.signup_window))})
        user, _ = await self.create_user(email, first_name, last_name, password=password)
        return user

    async def get_user(self, ref: str) -> User:
        """A user by uuid, email or username."""
        return await self.db.run("identity.get_user", store.find_user_txn, ref)

    async def list_users(self, state: str | None = None) -> list[User]:
        return await self.db.run("identity.list_users", store.list_users_txn, state)

    async def modify_user(self, uuid: str, **fields: Any) -> User:
        if fields.get("email") is not None:
            fields["email"] = _check_email(fields["email"])
        if fields.get("username") is not None:
            fields["username"] = _check_username(fields["username"])
        return await self.db.run("identity.modify_user", store.modify_user_txn, uuid,
                                 self.now(), **fields)

    async def set_password(self, uuid: str, password: str | None) -> None:
        hashed = await self._hash(password) if password is not None else None
        await self.db.run("identity.set_password", store.set_password_txn, uuid, hashed,
                          self.now())

    async def change_password(self, uuid: str, password: str) -> None:
        """A new local password; as in Keystone, every token of the user
        stops working (a new primary token replaces them)."""
        await self.set_password(uuid, password)
        if (await self.get_user(uuid)).is_active:
            await self.renew_token(uuid)

    async def delete_user(self, uuid: str) -> None:
        """Delete the user, its base project and its holdings; ``Conflict``
        while any of them has usage (the user's resources must go first)."""
        await self.db.run("identity.delete_user", _delete_user_txn, uuid)
        self.cache.invalidate(f"user:{uuid}")
        log.info("user {uuid} deleted", uuid=uuid)

    async def send_verification(self, user: User) -> None:
        if user.email is None:
            return  # nowhere to send it: an administrator activates the user
        code = tokens.new_token()
        await self.db.run("identity.set_verification", store.set_verification_txn, user.uuid,
                          store.secret_hash(code), self.now())
        link = f"{self.policy.public_url}/ui/activate?auth={code}"
        # Nothing the sign-up chose goes into the mail (not even the names):
        # anyone may make us mail anyone, so it must not carry their text.
        await self._mail(user.email, "Verify your email address",
                         "Hello,\n\nto verify the email address of your new account"
                         " (if you did not sign up, ignore this mail), open this link"
                         f" and confirm:\n\n  {link}\n")

    async def verify(self, code: str, password: str | None = None) -> User:
        """Confirm a verification link: the next state after verification.

        ``password`` becomes the account's local password; without one the
        account is left with none.  So the password chosen at sign-up
        survives only when the person verifying gives it again: whoever
        signed up with someone else's address loses access when its owner
        verifies it.  404 for an unknown or used code.
        """
        code_hash = store.secret_hash(code)
        pending = await self.db.run("identity.verification_of",
                                    store.user_by_verification_txn, code_hash)
        if pending is None or pending.state != "pending_verification":
            raise errors.NotFound("This verification link is not valid (used or unknown).")
        hashed = await self._hash(password) if password is not None else None
        user = await self.db.run("identity.verify", _verify_txn, code_hash, hashed,
                                 self.policy.moderation, self.now())
        if user.is_active:
            await self._activated(user)
        return user

    async def moderate(self, uuid: str, accept: bool, reason: str = "") -> User:
        """An administrator's decision on a user waiting for moderation (or
        any user not yet active)."""
        if accept:
            return await self.activate(uuid)
        user = await self.db.run("identity.reject", store.set_state_txn, uuid, "rejected",
                                 reason, self.now())
        self.cache.invalidate(f"user:{uuid}")
        return user

    async def activate(self, uuid: str) -> User:
        user = await self.db.run("identity.activate", _activate_txn, uuid, self.now())
        await self._activated(user)
        return user

    async def deactivate(self, uuid: str, reason: str = "") -> User:
        user = await self.db.run("identity.deactivate", store.set_state_txn, uuid,
                                 "deactivated", reason, self.now())
        self.cache.invalidate(f"user:{uuid}")
        log.info("user {uuid} deactivated", uuid=uuid)
        return user

    async def mark_verified(self, uuid: str) -> User:
        """An administrator vouches for the email: the state after
        verification (moderation, or active)."""
        user = await self.db.run("identity.mark_verified", _mark_verified_txn, uuid,
                                 self.policy.moderation, self.now())
        if user.is_active:
            await self._activated(user)
        return user

    async def links_of(self, uuid: str) -> list[tuple[str, str]]:
        return await self.db.run("identity.links_of", store.links_of_txn, uuid)

    async def add_group(self, name: str) -> None:
        if not name.strip():
            raise errors.BadRequest("A group needs a name.")
        await self.db.run("identity.add_group", store.add_group_txn, name.strip())

    async def remove_group(self, name: str) -> None:
        await self.db.run("identity.remove_group", store.remove_group_txn, name)

    async def list_groups(self) -> list[tuple[str, int]]:
        return await self.db.run("identity.list_groups", store.list_groups_txn)

    async def set_group_member(self, uuid: str, group: str, member: bool) -> None:
        await self.db.run("identity.group_member", store.set_membership_txn, uuid, group,
                          member)
        self.cache.invalidate(f"user:{uuid}")

    async def _activated(self, user: User) -> None:
        existing = await self.db.run("identity.has_primary", store.has_primary_token_txn, user.uuid)
        if not existing:
            await self.renew_token(user.uuid)
        if user.email is None:
            return
        try:
            await self._mail(user.email, "Your account is active",
                             "Hello,\n\nyour account is active. Log in at"
                             f" {self.policy.public_url}/identity/v3\n")
        except errors.ServiceUnavailable:
            pass  # logged; the account is active anyway

    async def _mail(self, to: str, subject: str, body: str) -> None:
        try:
            await self._mailer.send(to, subject, body)
        except OSError as e:
            log.error("mail to {to} not sent: {e}", to=to, e=e)
            raise errors.ServiceUnavailable(
                "The mail could not be sent; please try again later.") from None

    async def _hash(self, password: str) -> str:
        try:
            return await self.passwords.hash(password)
        except PasswordRule as e:
            raise errors.BadRequest(str(e)) from None

    # -- logins ---------------------------------------------------------------

    async def login(self, credentials: Credentials, only: str | None = None) -> User:
        """The active user these credentials prove, trying each provider in
        order (``only``: just the provider of that name); 401 for wrong or
        unknown credentials or an inactive user, 429 while the account or
        the source address is throttled.

        The attempt is counted before any provider checks it (and taken
        back when it succeeds), so concurrent attempts never pass the
        limits; the per-account limit applies only to addresses that have
        failed for that account."""
        address = f"address:{credentials.source}"
        keys = [address]
        limits = [store.Limit(address, self.policy.failures_per_address)]
        account = (credentials.username or "").strip().lower()
        if account:
            pair = f"account-address:{account} {credentials.source}"
            keys += [f"account:{account}", pair]
            limits += [store.Limit(pair, self.policy.failures_per_account),
                       store.Limit(f"account:{account}", self.policy.failures_per_account,
                                   only_if=pair)]
        async with self._verifying(credentials.source, account):
            at = self.now()
            if not await self.db.run("identity.login_attempt", store.attempt_txn, limits,
                                     at, at - self._window()):
                raise self._throttled()
            identity = None
            try:
                for provider in self.providers:
                    if only is not None and provider.name != only:
                        continue
                    identity = await provider.authenticate(credentials)
                    if identity is not None:
                        break
            except LoginFailed:
                identity = None
            except ProviderUnavailable as e:
                await self.db.run("identity.login_undone", store.forget_attempt_txn, keys, at)
                raise errors.ServiceUnavailable(
                    f"The login service is unavailable: {e}") from None
        if identity is None:
            raise errors.Unauthorized("Invalid credentials")
        await self.db.run("identity.login_ok", store.forget_attempt_txn, [address], at,
                          keys[1:])
        user = await self._user_for(identity)
        if not user.is_active:
            raise errors.Unauthorized("User inactive")
        return user

    @asynccontextmanager
    async def _verifying(self, source: str, account: str) -> AsyncIterator[None]:
        """Hold a verification slot of the address and of the account.

        At most ``concurrent_per_*`` logins of one address or account are
        checked at once; more wait their turn (clients such as the swift
        command line log in from several threads at once), and beyond
        ``WAITING_PER_SLOT`` times that many waiting, 429 at once."""
        slots = [(f"address:{source}", self.policy.concurrent_per_address)]
        if account:
            slots.append((f"account:{account}", self.policy.concurrent_per_account))
        held: list[tuple[str, defer.DeferredSemaphore]] = []
        try:
            for key, most in slots:
                gate = self._gates.get(key)
                if gate is None:
                    gate = self._gates[key] = defer.DeferredSemaphore(most)
                if len(gate.waiting) >= WAITING_PER_SLOT * most:
                    raise TooManyFailures("Too many logins at once; try again later.",
                                          headers={"Retry-After": "1"})
                await gate.acquire()
                held.append((key, gate))
            yield
        finally:
            for key, gate in reversed(held):
                gate.release()
                if gate.tokens == gate.limit and not gate.waiting:
                    self._gates.pop(key, None)

    def _throttled(self) -> TooManyFailures:
        return TooManyFailures("Too many failed logins; try again later.",
                               headers={"Retry-After": str(int(self.policy.login_window))})

    async def check_password(self, name: str, password: str) -> str | None:
        """The local provider's check of a login by email or username: the
        uuid, ``None`` for an unknown name, ``LoginFailed`` for a wrong
        password."""
        found = await self.db.run("identity.password_of", store.password_hash_txn, name)
        ok = await self.passwords.verify(found[1] if found else None, password)
        if found is None or found[1] is None:
            return None
        if not ok:
            raise LoginFailed()
        return found[0]

    def _window(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.policy.login_window)

    async def _user_for(self, identity: ExternalIdentity) -> User:
        if identity.user:
            return await self.get_user(identity.user)
        uuid = await self.db.run("identity.linked_user", store.linked_user_txn,
                                 identity.provider, identity.identifier)
        if uuid is not None:
            return await self.get_user(uuid)
        provider = next(p for p in self.providers if p.name == identity.provider)
        if not provider.creates_users or not identity.email:
            raise errors.Unauthorized("Invalid credentials")
        user = await self.db.run("identity.external_user", _external_user_txn, identity,
                                 bool(provider.verified_email), self.now())
        if user.is_active:
            await self._activated(user)
        return user

    # -- tokens ---------------------------------------------------------------

    async def issue_token(self, user: User, project: str | None = None,
                          methods: Sequence[str] = ("password",),
                          expires_at: datetime.datetime | None = None,
                          audit_chain: str | None = None,
                          system: bool = False) -> tuple[str, Token]:
        """A new token for an active user, scoped to ``project`` when given
        (the user must be a member of that active project: 401 otherwise),
        or to the ``system`` (the user must hold a role there)."""
        if not user.is_active:
            raise errors.Unauthorized("User inactive")
        now = self.now()
        expires = expires_at or now + self.policy.token_duration
        secret = tokens.new_token()
        token = await self.db.run("identity.issue_token", _issue_txn, user.uuid,
                                  store.secret_hash(secret), project, list(methods),
                                  tokens.new_audit_id(), audit_chain, now, expires, system)
        return secret, token

    async def issue_login_code(self, user: User, challenge: str,
                               methods: Sequence[str], provider: str) -> str:
        """A one-time code that ``redeem_login_code`` exchanges, within
        ``LOGIN_CODE_TTL``, for a token of ``user`` (with ``methods``) to
        whoever shows the PKCE verifier of ``challenge`` (its S256)."""
        if not user.is_active:
            raise errors.Unauthorized("User inactive")
        code = tokens.new_token()
        await self.db.run("identity.add_login_code", store.add_login_code_txn,
                          store.secret_hash(code), user.uuid, challenge, list(methods),
                          provider, self.now() + LOGIN_CODE_TTL)
        return code

    async def redeem_login_code(self, code: str,
                                verifier: str) -> tuple[User, str, Token, str]:
        """Exchange a code of ``issue_login_code`` and its PKCE verifier for
        a new token, issued as ``issue_token`` issues the login's: ``(user,
        secret, token, provider)``.  The code is gone after the first
        attempt, whatever its outcome; 400 that says nothing more than
        "invalid or expired" for an unknown, used or expired code or a
        verifier that does not match."""
        found = await self.db.run("identity.take_login_code", store.take_login_code_txn,
                                  store.secret_hash(code))
        if (found is None or found.expires_at <= self.now()
                or not hmac.compare_digest(tokens.s256_challenge(verifier).encode(),
                                           found.challenge.encode())):
            raise errors.BadRequest("Invalid or expired code.")
        try:
            user = await self.get_user(found.user)
        except errors.NotFound:
            raise errors.BadRequest("Invalid or expired code.") from None
        secret, token = await self.issue_token(user, methods=found.methods)
        return user, secret, token, found.provider

    async def renew_token(self, uuid: str) -> str:
        """Replace every token of the user with one new primary token; the
        old ones stop working at once, on every node."""
        now = self.now()
        secret = tokens.new_token()
        await self.db.run("identity.renew_token", _renew_txn, uuid, store.secret_hash(secret),
                          tokens.new_audit_id(), now, now + self.policy.token_duration)
        self.cache.invalidate(f"user:{uuid}")
        return secret

    async def validate(self, secret: str, allow_expired: bool = False) -> Token:
        """The token's details; 401 when unknown, expired (unless
        ``allow_expired``: until the sweep deletes it) or the user is not
        active."""
        key = store.secret_hash(secret)
        cached = self.cache.get(key)
        if isinstance(cached, Token):
            return cached
        token = await self.db.run("identity.validate_token", _validate_txn, key)
        if token is None:
            raise errors.Unauthorized("Invalid token")
        if token.expires_at <= self.now():
            if allow_expired and token.user.is_active:
                return token
            raise errors.Unauthorized("Authentication expired")
        if not token.user.is_active:
            raise errors.Unauthorized("User inactive")
        self.cache.put(key, f"user:{token.user.uuid}", token,
                       not_after=token.expires_at.timestamp())
        return token

    async def token_view(self, secret: str, token: Token, view: bytes,
                         render: Callable[[], Awaitable[T]]) -> T:
        """What ``render`` makes of the valid token ``secret`` (``token``,
        from ``validate``), kept in the token cache under ``view`` beside
        the token itself: it is dropped when the token's entry would be
        (the token's expiry, its revocation, any change to its user, the
        user's projects or its roles there notifies ``user:<uuid>``)."""
        key = view + b"\0" + store.secret_hash(secret)
        cached = self.cache.get(key)
        if cached is not None:
            return cast(T, cached)
        value = await render()
        self.cache.put(key, f"user:{token.user.uuid}", value,
                       not_after=token.expires_at.timestamp())
        return value

    async def revoke(self, secret: str) -> None:
        """Revoke one token (404 when unknown)."""
        owner = await self.db.run("identity.revoke_token", store.revoke_token_txn,
                                  store.secret_hash(secret))
        if owner is None:
            raise errors.NotFound("Could not find token.")
        self.cache.invalidate(f"user:{owner}")

    async def authenticate(self, secret: str) -> Principal:
        """``IAuthenticator``: a user token or a component token."""
        key = store.secret_hash(secret)
        cached = self.cache.get(key)
        if isinstance(cached, Principal):
            return cached
        if isinstance(cached, Token):
            return principal_of(cached)
        component = await self.db.run("identity.component_token",
                                      store.component_by_token_txn, key)
        if component is not None:
            principal = Principal(component=component.name, name=component.name)
            self.cache.put(key, f"component:{component.name}", principal)
            return principal
        return principal_of(await self.validate(secret))

    async def set_component(self, name: str, base_url: str = "", ui_url: str = "") -> str:
        """Register a component (or replace its token): the new token."""
        secret = tokens.new_token()
        await self.db.run("identity.set_component", store.set_component_txn, name,
                          store.secret_hash(secret), base_url, ui_url)
        self.cache.invalidate(f"component:{name}")
        return secret

    async def user_catalog(self, uuids: Sequence[str] | None,
                           emails: Sequence[str] | None) -> list[tuple[str, str]]:
        """``(uuid, email)`` of the users named (unknown ones left out);
        both ``None``: every user."""
        return await self.db.run("identity.user_catalog", store.users_by_ref_txn, uuids, emails)

    async def add_feedback(self, uuid: str, message: str, data: str) -> None:
        await self.db.run("identity.feedback", store.add_feedback_txn, uuid, message, data)

    async def list_components(self) -> list[store.Component]:
        return await self.db.run("identity.list_components", store.list_components_txn)

    async def remove_component(self, name: str) -> None:
        await self.db.run("identity.remove_component", store.remove_component_txn, name)
        self.cache.invalidate(f"component:{name}")

    async def user_projects(self, uuid: str) -> list[Any]:
        """The active projects the user is an accepted member of."""
        return await self.db.run("identity.user_projects",
                                 project_store.projects_of_user_txn, uuid)

    async def expire_tokens(self) -> int:
        return await self.db.run("identity.expire_tokens", store.expire_tokens_txn, self.now())

    async def expire_login_codes(self) -> int:
        """Delete the login codes past their expiry: how many."""
        return await self.db.run("identity.expire_login_codes",
                                 store.expire_login_codes_txn, self.now())

    async def expire_pending(self) -> int:
        """Delete the users past ``pending_expiry`` without verifying their
        email (their addresses are free again): how many."""
        if self.policy.pending_expiry is None:
            return 0
        return await self.db.run("identity.expire_pending", store.expire_pending_txn,
                                 self.now(), self.policy.pending_expiry)


def principal_of(token: Token) -> Principal:
    """The caller a token stands for; a token of an application credential
    grants only the roles (admin, groups) and access rules it delegates."""
    u = token.user
    is_admin, groups = u.is_admin, u.groups
    cred = token.app_credential
    rules = None
    granted = token.roles
    if cred is not None:
        is_admin = u.is_admin and "admin" in cred.roles
        groups = tuple(g for g in u.groups if g in cred.roles)
        rules = tuple((r.service, r.method, r.path) for r in cred.access_rules) or None
        granted = cred.roles
    return Principal(user=u.uuid, email=u.email or "", name=u.name, is_admin=is_admin,
                     groups=groups, project=token.project, expires_at=token.expires_at,
                     issued_at=token.issued_at, audit_ids=token.audit_ids,
                     methods=token.methods, app_credential=cred.id if cred else None,
                     access_rules=rules, roles=tuple(granted), system=token.system)


def _check_email(email: str) -> str:
    email = (email or "").strip()
    local, _, domain = email.rpartition("@")
    if (not local or not domain or len(email) > 254
            or any(c.isspace() or unicodedata.category(c)[0] == "C" for c in email)):
        raise errors.BadRequest(f"{email!r} is not an email address.")
    return email


def _check_username(username: str) -> str:
    """A login name apart from the email, stripped: 1 to 255 characters,
    no white space, control or format characters (400 otherwise)."""
    username = (username or "").strip()
    if (not username or len(username) > 255
            or any(c.isspace() or unicodedata.category(c)[0] == "C" for c in username)):
        raise errors.BadRequest(f"{username!r} is not a user name.")
    return username


def _check_name(name: str, field: str) -> str:
    """A first or last name, stripped: at most ``NAME_LENGTH`` characters
    and no control or format characters (400 otherwise)."""
    name = (name or "").strip()
    if len(name) > NAME_LENGTH:
        raise errors.BadRequest(f"{field} may have at most {NAME_LENGTH} characters.")
    if any(unicodedata.category(c)[0] == "C" for c in name):
        raise errors.BadRequest(f"{field} may not contain control characters.")
    return name


# -- transactions composed of store steps ------------------------------------

def _create_txn(txn: Any, uuid: str, email: str | None, first: str, last: str, state: str,
                admin: bool, hashed: str | None, now: datetime.datetime,
                username: str | None = None) -> User:
    user = store.create_user_txn(txn, uuid, email, first, last, state, admin, hashed, now,
                                 username)
    if state == "active":
        project_store.create_system_project_txn(txn, uuid, f"system:{uuid}", now)
    return user


def _activate_txn(txn: Any, uuid: str, now: datetime.datetime) -> User:
    before = store.get_user_txn(txn, uuid)
    user = store.set_state_txn(txn, uuid, "active", "", now)
    if before.activated_at is None:
        project_store.create_system_project_txn(txn, uuid, f"system:{uuid}", now)
    return user


def _verify_txn(txn: Any, code_hash: bytes, password_hash: str | None, moderation: bool,
                now: datetime.datetime) -> User:
    user = store.user_by_verification_txn(txn, code_hash)
    if user is None or user.state != "pending_verification":
        raise errors.NotFound("This verification link is not valid (used or unknown).")
    store.set_verification_txn(txn, user.uuid, None, now)
    if password_hash is not None or user.has_password:
        store.set_password_txn(txn, user.uuid, password_hash, now)
    if moderation:
        return store.set_state_txn(txn, user.uuid, "pending_moderation", "", now)
    return _activate_txn(txn, user.uuid, now)


def _mark_verified_txn(txn: Any, uuid: str, moderation: bool,
                       now: datetime.datetime) -> User:
    user = store.get_user_txn(txn, uuid)
    if user.state != "pending_verification":
        return user
    store.set_verification_txn(txn, uuid, None, now)
    if moderation:
        return store.set_state_txn(txn, uuid, "pending_moderation", "", now)
    return _activate_txn(txn, uuid, now)


def _external_user_txn(txn: Any, identity: ExternalIdentity, verified: bool,
                       now: datetime.datetime) -> User:
    """The user an external identity maps to: linked to the existing user
    with the same email when the provider vouches for emails, else new."""
    try:
        user = store.find_user_txn(txn, identity.email, by_username=False)
    except errors.NotFound:
        user = None
    if user is not None and not verified:
        raise errors.Unauthorized("Invalid credentials")
    if user is None:
        uuid = str(uuid_module.uuid4())
        state = "active" if verified else "pending_verification"
        user = store.create_user_txn(txn, uuid, identity.email, identity.first_name,
                                     identity.last_name, state, False, None, now)
        if state == "active":
            project_store.create_system_project_txn(txn, uuid, f"system:{uuid}", now)
    store.link_txn(txn, identity.provider, identity.identifier, user.uuid, dict(identity.info))
    return store.get_user_txn(txn, user.uuid)


def _issue_txn(txn: Any, uuid: str, token_hash: bytes, project: str | None,
               methods: list[str], audit_id: str, audit_chain: str | None,
               now: datetime.datetime, expires: datetime.datetime, system: bool) -> Token:
    if system and not assignments.system_token_roles_txn(txn, uuid):
        raise errors.Unauthorized(f"User {uuid} has no access to the system.")
    if project is not None:
        member_of = {p.id for p in project_store.projects_of_user_txn(txn, uuid)}
        if project not in member_of:
            raise errors.Unauthorized(f"User {uuid} has no access to project {project}.")
    store.add_token_txn(txn, token_hash, uuid, False, project, methods, audit_id,
                        audit_chain, now, expires, system=system)
    token = store.token_txn(txn, token_hash)
    assert token is not None
    if system:
        token = attrs.evolve(token, roles=tuple(
            assignments.system_token_roles_txn(txn, uuid)))
    return token


def _validate_txn(txn: Any, token_hash: bytes) -> Token | None:
    """The token with this hash and the roles its user holds on its
    project or the system (``admin`` for an administrator, as Keystone's
    tokens say)."""
    token = store.token_txn(txn, token_hash)
    if token is not None and token.system:
        return attrs.evolve(token, roles=tuple(
            assignments.system_token_roles_txn(txn, token.user.uuid)))
    if token is None or token.project is None:
        return token
    held = assignments.token_roles_txn(txn, token.user.uuid, token.project)
    if token.user.is_admin:
        held = roles.closure([*held, roles.ADMIN])
    name = project_store.user_project_name_txn(txn, token.user.uuid, token.project)
    return attrs.evolve(token, roles=tuple(held), project_name=name)


def _delete_user_txn(txn: Any, uuid: str) -> None:
    store.get_user_txn(txn, uuid)
    if project_store.user_quota_in_use_txn(txn, uuid):
        raise errors.Conflict(f"User {uuid} still uses resources; delete them first.")
    project_store.delete_user_projects_txn(txn, uuid)
    store.delete_user_txn(txn, uuid)


def _renew_txn(txn: Any, uuid: str, token_hash: bytes, audit_id: str,
               now: datetime.datetime, expires: datetime.datetime) -> None:
    user = store.get_user_txn(txn, uuid)
    if not user.is_active:
        raise errors.Conflict(f"User {uuid} is not active ({user.state}).")
    store.revoke_user_tokens_txn(txn, uuid)
    store.add_token_txn(txn, token_hash, uuid, True, None, ["token"], audit_id, None,
                        now, expires)
