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


def _issuer(value: str) -> str:
    """An issuer URL: https, or http on a loopback address (tests, development)."""
    from urllib.parse import urlsplit

    v = value.strip()
    parts = urlsplit(v)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.hostname or not (parts.scheme == "https"
                                  or (parts.scheme == "http" and loopback)):
        raise ValueError(f"expected an https:// URL (http:// only on loopback), got {v!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"an issuer has no query or fragment, got {v!r}")
    return v


def _required_text(value: str) -> str:
    v = value.strip()
    if not v:
        raise ValueError("expected a value, got an empty one")
    return v


def _scopes(value: str) -> tuple[str, ...]:
    found = names(value)
    if "openid" not in found:
        raise ValueError(f"the scopes must include openid, got {value.strip()!r}")
    return found



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
        Key("oidc_providers", names, (),
            "OpenID Connect providers offered for browser logins, each set in a"
            " section [oidc:NAME] of its own; /ui/login/oidc/NAME starts a login."),
        Key("oidc_login_ttl", number, 600.0,
            "Seconds between the start of an OpenID Connect login and its callback;"
            " later, the login must be started again."),
        Key("credential_key_file", text, "",
            "File holding the 32-byte key that encrypts EC2 credential secrets in the"
            " database; empty: <state_dir>/credential-key, made at first use.  Every"
            " node of a cluster needs the same key."),
        Key("max_body", integer, 65536, "Largest JSON request body accepted, in bytes."),
    )
    config_families = {"oidc": (
        Key("issuer", _issuer, doc="The provider's issuer URL (https; http only on"
            " loopback): its configuration is read from"
            " <issuer>/.well-known/openid-configuration."),
        Key("client_id", _required_text, doc="The client id the provider registered"
            " for this cloud."),
        Key("client_secret", text, "", "The client's secret; empty: a public client"
            " (PKCE only).", secret=True),
        Key("scopes", _scopes, ("openid", "email", "profile"),
            "Scopes asked for; openid is required."),
        Key("create_users", boolean, True,
            "Create the account at a person's first login (with the email the"
            " provider verified)."),
        Key("trust_email", boolean, False,
            "Take the email as verified even without email_verified=true (only for"
            " providers that verify every address they give)."),
        Key("ca_certificate", text, "",
            "PEM file of the certificates the provider's TLS server is trusted by;"
            " empty: the system's trust store."),
        Key("timeout", number, 10.0, "Seconds each call to the provider may take."),
        Key("clock_skew", number, 60.0,
            "Seconds of clock difference tolerated on the ID token's exp and iat."),
    )}


plugin = IdentityPlugin()
