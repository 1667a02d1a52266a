"""The identity service (Astakos) as a node plugin: accounts, tokens, the
Keystone API, quotas and projects.  See ``snfd.identity``."""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import implementer

from snfd.config import (
    Key,
    boolean,
    integer,
    names,
    networks,
    number,
    positive_integer,
    text,
)
from snfd.db.migrations import Schema
from snfd.interfaces import IAuthenticator, IQuotaHolder, ISnfdPlugin
from snfd.plugins import ServicePlugin


@implementer(IPlugin, ISnfdPlugin)
class IdentityPlugin(ServicePlugin):
    name = "identity"
    factory = "snfd.identity.service:from_config"
    schema = Schema("identity", "snfd.identity.schema")
    provides = (IAuthenticator, IQuotaHolder)
    config_keys = (
        Key("public_url", text, "",
            "Base URL clients use to reach the cluster (catalog endpoints,"
            " verification links); empty: this node's address."),
        Key("region", text, "RegionOne", "Region name of every catalog endpoint."),
        Key("token_duration", number, 30 * 24.0,
            "Hours a user token stays valid after it is issued or renewed."),
        Key("token_cache", number, 5.0,
            "Seconds a validated token is cached in a node (renewal, revocation"
            " and deactivation clear it on every node at once)."),
        Key("moderation", boolean, True,
            "New sign-ups wait for an administrator after verifying their email."),
        Key("auth_providers", names, ("local",),
            "Login providers, tried in order: local, ldap, shibboleth."),
        Key("login_window", number, 300.0,
            "Seconds over which failed logins are counted."),
        Key("login_failures_per_account", positive_integer, 5,
            "Failed logins for one account within login_window before further"
            " attempts are refused until the window passes."),
        Key("login_failures_per_address", positive_integer, 20,
            "Failed logins from one source address within login_window before"
            " further attempts from it are refused."),
        Key("login_concurrency_per_account", positive_integer, 3,
            "Logins of one account whose password is being checked at once on a"
            " node; more are refused (429) until those end."),
        Key("login_concurrency_per_address", positive_integer, 10,
            "Logins from one source address whose password is being checked at"
            " once on a node; more are refused (429) until those end."),
        Key("password_threads", integer, 0,
            "Threads hashing and checking passwords (argon2, 64 MiB each), apart"
            " from the pool block I/O uses; 0: the number of cores, at most 8."),
        Key("signup_window", number, 3600.0,
            "Seconds over which sign-ups (/ui/signup) are counted."),
        Key("signups_per_address", positive_integer, 10,
            "Sign-ups from one source address within signup_window; more are"
            " refused (429)."),
        Key("signups_per_email", positive_integer, 3,
            "Sign-ups naming one email within signup_window; more are refused (429)."),
        Key("pending_expiry", number, 168.0,
            "Hours a sign-up may stay unverified before it is deleted and its"
            " email is free again; 0: never."),
        Key("smtp_url", text, "",
            "smtp://host:port (or smtps://) of the mail relay for verification"
            " mails; empty: mails are written as files to <state_dir>/mail."),
        Key("mail_from", text, "snfd@localhost", "Sender address of the mails."),
        Key("ldap_url", text, "", "ldap://host:port of the LDAP server (provider ldap)."),
        Key("ldap_user_dn", text, "uid={username},ou=people,dc=example,dc=org",
            "DN template to bind as; {username} is the escaped login name."),
        Key("ldap_email_attribute", text, "mail", "LDAP attribute holding the email."),
        Key("ldap_first_name_attribute", text, "givenName",
            "LDAP attribute holding the first name."),
        Key("ldap_last_name_attribute", text, "sn", "LDAP attribute holding the last name."),
        Key("ldap_timeout", number, 5.0, "Seconds an LDAP bind or search may take."),
        Key("shibboleth_trusted", networks, (),
            "Source addresses (or networks) of the front web servers whose identity"
            " headers are believed (provider shibboleth); empty: none, the provider"
            " logs nobody in.  Only a front server that strips those headers from"
            " its clients' requests may be listed (see docs/identity.md)."),
        Key("shibboleth_id_header", text, "eppn",
            "Header carrying the person's unique id (EPPN)."),
        Key("shibboleth_email_header", text, "mail", "Header carrying the email."),
        Key("shibboleth_first_name_header", text, "givenName",
            "Header carrying the first name."),
        Key("shibboleth_last_name_header", text, "sn", "Header carrying the last name."),
        Key("max_body", integer, 65536, "Largest JSON request body accepted, in bytes."),
    )


plugin = IdentityPlugin()
