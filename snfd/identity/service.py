"""The identity service's lifecycle: ``from_config`` builds its parts from
the node and the ``[identity]`` section; it provides ``IAuthenticator`` and
``IQuotaHolder``, listens for cache invalidations, registers its own
resources, creates the first administrator of an empty cluster, and names
its HTTP mounts and leader duties."""

from __future__ import annotations

import datetime
import json
import os
import secrets
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from snfd import errors
from snfd.config import ConfigError, Section
from snfd.db.notify import Listener
from snfd.identity import store
from snfd.identity.accounts import Accounts, Policy
from snfd.identity.app_credentials import SecretBox, load_key
from snfd.identity.assignments import Assignments
from snfd.identity.mail import FileMailer, Mailer, SmtpMailer
from snfd.identity.passwords import Passwords
from snfd.identity.projects import Projects
from snfd.identity.providers import LocalProvider
from snfd.identity.quotaholder import LocalQuotaHolder
from snfd.identity.tokens import TokenCache
from snfd.interfaces import Deps, IAuthenticator, ILeaderDuty, IQuotaHolder
from snfd.node import Node
from snfd.quota import Resource
from snfd.web.auth import TokenAuth

log = Logger(namespace="snfd.identity")

ADMIN_EMAIL = "admin@localhost"
CREDENTIALS_FILE = "admin-credentials"

# The identity service's own resource (Synnefo's): pending project applications.
RESOURCES = (
    Resource("astakos.pending_app", "Number of pending project applications", None,
             "account", "astakos_account", ui_visible=False, api_visible=False,
             allow_in_projects=False, base_default=2, project_default=0),
)


class IdentityService(service.MultiService):
    """Accounts, tokens, quotas and projects: provides ``IAuthenticator``
    (``accounts``) and ``IQuotaHolder`` (``quota``) to the other services."""

    name = "identity"  # type: ignore[assignment]

    def __init__(self, node: Any, section: Any, accounts: Accounts, cache: TokenCache,
                 listener: Listener, public_url: str):
        super().__init__()
        self.node = node
        self.section = section
        self.public_url = public_url
        self.listener = listener
        self.cache = cache
        self.accounts = accounts
        self.quota = LocalQuotaHolder(node.db)
        self.projects = Projects(node.db, node.clock)
        self.assignments = Assignments(node.db, node.clock, cache)
        self._duties = [TokenSweep(self)]

    # -- lifecycle ----------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.listener.start()
        self._starting = defer.ensureDeferred(self._start())
        self._starting.addErrback(lambda f: log.failure("identity start-up failed", f))

    async def _start(self) -> None:
        await self.quota.register_resources("astakos", list(RESOURCES))
        await self.bootstrap_admin()

    def stopService(self) -> Any:
        self.listener.stop()
        self.accounts.passwords.stop()
        return super().stopService()

    def provided(self) -> dict[Any, Any]:
        return {IAuthenticator: self.accounts, IQuotaHolder: self.quota}

    async def bootstrap_admin(self) -> None:
        """On an empty cluster, create the first administrator and write its
        credentials to ``<state_dir>/admin-credentials`` (mode 0600)."""
        if await self.node.db.run("identity.count_users", store.count_users_txn):
            return
        password = secrets.token_urlsafe(12)
        try:
            user, token = await self.accounts.create_user(
                ADMIN_EMAIL, "Cloud", "Administrator", password=password, activate=True,
                admin=True)
        except errors.Conflict:
            return  # another node was quicker
        path = self.node.state_dir / CREDENTIALS_FILE
        write_private(path, credentials_text(self.public_url, user.uuid, ADMIN_EMAIL,
                                             password, token or ""))
        log.info("created the administrator {email}; its password and token are in {path}",
                 email=ADMIN_EMAIL, path=str(path))

    # -- plugin surface -------------------------------------------------------

    def mounts(self) -> dict[str, Any]:
        from snfd.identity.account_api import AccountAPI
        from snfd.identity.catalog import Catalog
        from snfd.identity.keystone import KeystoneAPI
        from snfd.identity.ui_api import SignupAPI

        catalog = Catalog(self.node, self.public_url, self.section.region)
        key_file = (Path(self.section.credential_key_file) if self.section.credential_key_file
                    else self.node.state_dir / "credential-key")
        keystone = KeystoneAPI(self.accounts, catalog, self.node.reactor,
                               self.public_url, max_body=self.section.max_body,
                               credential_box=SecretBox(load_key(key_file)),
                               projects=self.projects, assignments=self.assignments)
        account = AccountAPI(self.accounts, self.quota, self.projects, catalog,
                             max_body=self.section.max_body)
        ui = SignupAPI(self.accounts, max_body=self.section.max_body)
        return {
            "identity": TokenAuth(keystone.resource(), self.accounts,
                                  fault_style=_keystone_style, max_body=self.section.max_body),
            "account": TokenAuth(account.resource(), self.accounts,
                                 max_body=self.section.max_body),
            "ui": TokenAuth(ui.resource(), self.accounts, max_body=self.section.max_body),
        }

    def duties(self) -> list[Any]:
        return list(self._duties)


def from_config(node: Node, section: Section, deps: Deps | None = None,
                ) -> IdentityService:
    """The identity service from the node and its ``[identity]`` section
    (it requires nothing of other services)."""
    public_url = (section.public_url or node.address).rstrip("/")
    # A token cache is only used while invalidations can reach it.
    listener = Listener(node.reactor, node.dsn, store.NOTIFY_CHANNEL,
                        lambda payload: cache.invalidate(payload), lambda: cache.clear())
    cache = TokenCache(node.clock, section.token_cache, usable=lambda: listener.listening,
                       monotonic=node.monotonic)
    accounts = build_accounts(node.db, node.reactor, section, node.config.source,
                              node.state_dir, public_url, cache, clock=node.clock)
    if section.oidc_providers:
        from snfd.identity import oidc

        accounts.providers.extend(oidc.from_config(node.config, section, node.http,
                                                   node.clock, public_url))
    return IdentityService(node, section, accounts, cache, listener, public_url)


def build_accounts(db: Any, reactor: Any, section: Any, source: str, state_dir: Path,
                   public_url: str, cache: TokenCache, clock: Any = None) -> Accounts:
    """``Accounts`` from the ``[identity]`` section: hashing in a pool of
    its own, mail in ``reactor``'s threads, time from ``clock`` (default:
    ``reactor``)."""
    def bad(key: str, problem: str) -> ConfigError:
        return ConfigError(source, "identity", key, problem)

    mailer: Mailer
    if not section.smtp_url:
        mailer = FileMailer(state_dir / "mail", section.mail_from, reactor)
    else:
        try:
            mailer = SmtpMailer(reactor, section.smtp_url, section.mail_from)
        except ValueError as e:
            raise bad("smtp_url", str(e)) from None
    policy = Policy(
        token_duration=datetime.timedelta(hours=section.token_duration),
        moderation=section.moderation, login_window=section.login_window,
        failures_per_account=section.login_failures_per_account,
        failures_per_address=section.login_failures_per_address,
        public_url=public_url,
        concurrent_per_account=section.login_concurrency_per_account,
        concurrent_per_address=section.login_concurrency_per_address,
        signup_window=section.signup_window,
        signups_per_address=section.signups_per_address,
        signups_per_email=section.signups_per_email,
        pending_expiry=(datetime.timedelta(hours=section.pending_expiry)
                        if section.pending_expiry else None))
    passwords = Passwords(reactor, threads=section.password_threads)
    accounts = Accounts(db, clock if clock is not None else reactor, passwords, cache,
                        mailer, [], policy)
    for name in section.auth_providers:
        if name == "local":
            accounts.providers.append(LocalProvider(accounts.check_password))
        elif name == "ldap":
            from snfd.identity.ldap import LdapProvider

            if not section.ldap_url:
                raise bad("ldap_url", "required by the ldap provider")
            accounts.providers.append(LdapProvider(
                reactor, section.ldap_url, section.ldap_user_dn, section.ldap_email_attribute,
                section.ldap_first_name_attribute, section.ldap_last_name_attribute,
                section.ldap_timeout))
        elif name == "shibboleth":
            from snfd.identity.shibboleth import ShibbolethProvider

            if not section.shibboleth_trusted:
                log.warn("[identity] shibboleth_trusted is empty: the shibboleth"
                         " provider believes no front server and logs nobody in")
            accounts.providers.append(ShibbolethProvider(
                section.shibboleth_trusted, section.shibboleth_id_header,
                section.shibboleth_email_header, section.shibboleth_first_name_header,
                section.shibboleth_last_name_header))
        else:
            raise bad("auth_providers",
                      f"unknown provider {name!r} (known: local, ldap, shibboleth)")
    return accounts


def _keystone_style(request: Any) -> str | None:
    return "keystone" if request.path.startswith(b"/identity/v3") else None


def credentials_text(public_url: str, uuid: str, email: str, password: str, token: str) -> str:
    """The administrator's credentials, as a shell file ready to ``source``
    for the OpenStack command-line client."""
    return "\n".join([
        "# snfd administrator: `source` this file, then try `openstack token issue`.",
        f"export OS_AUTH_URL={public_url}/identity/v3",
        "export OS_IDENTITY_API_VERSION=3",
        f"export OS_USERNAME={email}",
        f"export OS_PASSWORD={password}",
        f"export OS_PROJECT_ID={uuid}",
        "export OS_USER_DOMAIN_NAME=Default",
        "export OS_PROJECT_DOMAIN_NAME=Default",
        f"# uuid: {uuid}",
        f"# token: {token}",
        f"# as JSON: {json.dumps({'uuid': uuid, 'email': email, 'token': token})}",
        "",
    ])


def write_private(path: Any, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@implementer(ILeaderDuty)
class TokenSweep:
    """Deletes expired tokens and login codes, stale failed-login and
    sign-up records and sign-ups left unverified past ``pending_expiry``,
    and ends projects past their end date, once a minute, on the leader."""

    name = "identity-sweep"
    interval = 60.0

    def __init__(self, svc: IdentityService):
        self._svc = svc
        self._loop: task.LoopingCall | None = None

    def start(self, leadership: Any) -> None:
        self._loop = task.LoopingCall(lambda: defer.ensureDeferred(self.sweep()))
        self._loop.clock = self._svc.node.clock
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: log.failure("identity sweep stopped", f))

    async def sweep(self) -> None:
        try:
            accounts = self._svc.accounts
            n = await accounts.expire_tokens()
            await accounts.expire_login_codes()
            window = max(accounts.policy.login_window, accounts.policy.signup_window)
            before = accounts.now() - datetime.timedelta(seconds=window)
            await self._svc.node.db.run("identity.prune_failures",
                                        store.prune_failures_txn, before)
            pending = await accounts.expire_pending()
            ended = await self._svc.projects.expire_projects(accounts.now())
            if n or ended or pending:
                log.info("swept {n} expired tokens, {u} unverified sign-ups, ended {p}"
                         " projects", n=n, u=pending, p=ended)
        except Exception:
            log.failure("identity sweep failed")

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
