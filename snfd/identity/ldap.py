"""The LDAP login provider: a simple bind as the person, then a read of
their own entry for the name and email.

The bind DN comes from a template (``ldap_user_dn``) with the login name
escaped as an RFC 4514 attribute value, so a name can never add RDNs or
change the DN's shape.  No search filter is ever built from user input.

An empty password is refused before anything is sent: a simple bind with a
DN and no password is an LDAP "unauthenticated bind", which some servers
answer with success although nothing was proven.

Speaks LDAPv3 over ``ldap://`` or ``ldaps://`` (TLS from the first byte)
through ldaptor's Twisted client; every step (connect, bind, search,
close) has the configured timeout.
"""

from __future__ import annotations

import functools
import math
import string
from typing import Any
from urllib.parse import urlsplit

from OpenSSL import SSL
from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from snfd.identity.providers import (
    Credentials,
    ExternalIdentity,
    LoginFailed,
    ProviderUnavailable,
)
from snfd.interfaces import IAuthProvider

log = Logger()

_DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}

#: Result codes meaning "these credentials do not log in" (RFC 4511
#: appendix A): the attempt counts as a failed login.  Any other non-zero
#: code means the server could not answer properly.
_REFUSED_CODES = frozenset({
    19,  # constraintViolation: password policies (expired, locked out)
    32,  # noSuchObject
    34,  # invalidDNSyntax: the escaped name still made no valid DN
    48,  # inappropriateAuthentication
    49,  # invalidCredentials: wrong password or no such entry
    50,  # insufficientAccessRights: account disabled
    53,  # unwillingToPerform: e.g. an unauthenticated bind refused
})

#: Failures of the connection itself, as opposed to LDAP answers.
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    error.ConnectError,
    error.ConnectionClosed,
    defer.TimeoutError,
    SSL.Error,
    OSError,
)

# Characters RFC 4514 section 2.4 requires (or allows, '=') to be escaped
# anywhere in an attribute value.
_ESCAPED = frozenset('"+,;<>\\=')


def escape_dn_value(value: str) -> str:
    """``value`` escaped for use as an attribute value in a DN string.

    Follows RFC 4514 section 2.4: the special characters get a backslash,
    a leading space or ``#`` and a trailing space are escaped, and control
    characters (NUL included) become ``\\XX`` hex pairs of their UTF-8
    encoding.  Other characters, non-ASCII ones included, are kept.
    """
    out = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        if ch in _ESCAPED:
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("".join(f"\\{b:02X}" for b in ch.encode()))
        elif (i == 0 and ch in " #") or (i == last and ch == " "):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


@implementer(IAuthProvider)
class LdapProvider:
    """Log in by binding to an LDAP server as the person.

    @param reactor: provides TCP (and TLS) connections, name resolution
        and time.
    @param url: ``ldap://host[:port]`` or ``ldaps://host[:port]``.
    @param user_dn_template: the DN to bind as, with ``{username}`` where
        the escaped login name goes, e.g.
        ``uid={username},ou=people,dc=example,dc=org``.
    @param email_attribute: the entry's attribute holding the email; the
        other two hold the first and the last name.  The first value is
        taken when an attribute has several.
    @param timeout: seconds each step (connect, bind, search) may take.
    @param tls_options: client TLS options for ``ldaps`` (default:
        ``optionsForClientTLS(host)`` with the platform's trust roots).
    @raise ValueError: on an unsupported URL, a template without exactly
        the ``{username}`` field, or a timeout that is not positive.
    """

    name = "ldap"
    creates_users = True
    verified_email = True

    def __init__(self, reactor: Any, url: str, user_dn_template: str,
                 email_attribute: str = "mail",
                 first_name_attribute: str = "givenName",
                 last_name_attribute: str = "sn",
                 timeout: float = 5.0, *, tls_options: Any = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"LDAP URL must be ldap://host[:port] or ldaps://host[:port],"
                             f" not {url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError(f"LDAP URL must name only the server: {url!r}")
        port = parts.port  # ValueError when out of range
        try:
            fields = [(f, c, spec) for _, f, spec, c in string.Formatter().parse(user_dn_template)
                      if f is not None]
        except ValueError as e:
            raise ValueError(f"bad LDAP DN template {user_dn_template!r}: {e}") from e
        if not fields or any(field != ("username", None, "") for field in fields):
            raise ValueError(f"the LDAP DN template {user_dn_template!r} must have the"
                             " {username} field and no other")
        if not timeout > 0:
            raise ValueError("the LDAP timeout must be positive")
        self._reactor = reactor
        self._host = parts.hostname
        self._port = port or _DEFAULT_PORTS[parts.scheme]
        self._tls = parts.scheme == "ldaps"
        self._tls_options = tls_options
        self._template = user_dn_template
        self._attributes = (email_attribute, first_name_attribute, last_name_attribute)
        self._timeout = float(timeout)

    def user_dn(self, username: str) -> str:
        """The DN a login as ``username`` binds as."""
        return self._template.format(username=escape_dn_value(username))

    async def authenticate(self, credentials: Credentials) -> ExternalIdentity | None:
        """Bind as the person and read their entry; ``None`` without a
        user name.  See ``IAuthProvider.authenticate``."""
        if not credentials.username:
            return None
        if not credentials.password:
            raise LoginFailed("a password is required")
        dn = self.user_dn(credentials.username)
        client = await self._connect()
        try:
            await self._bind(client, dn, credentials.password)
            name, attributes = await self._read_entry(client, dn)
        except _TRANSPORT_ERRORS as e:
            log.warn("LDAP server {host}:{port} failed during a login as {dn}: {e!r}",
                     host=self._host, port=self._port, dn=dn, e=e)
            raise ProviderUnavailable(f"LDAP server failed: {e}") from None
        finally:
            await self._close(client)
        email, first_name, last_name = (attributes.get(a.lower(), "") for a in self._attributes)
        return ExternalIdentity(
            provider="ldap", identifier=name.lower(), email=email,
            first_name=first_name, last_name=last_name, info={"dn": name})

    # -- internals ---------------------------------------------------------

    async def _connect(self) -> Any:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            self._reactor, self._host, self._port, timeout=self._timeout)
        if self._tls:
            from twisted.internet.ssl import optionsForClientTLS
            endpoint = wrapClientTLS(
                self._tls_options or optionsForClientTLS(self._host), endpoint)
        attempt = connectProtocol(endpoint, _client_class()())
        attempt.addTimeout(self._timeout, self._reactor)
        try:
            return await attempt
        except _TRANSPORT_ERRORS as e:
            log.warn("cannot connect to the LDAP server {host}:{port}: {e!r}",
                     host=self._host, port=self._port, e=e)
            raise ProviderUnavailable(
                f"cannot connect to the LDAP server {self._host}:{self._port}: {e}"
            ) from None

    async def _bind(self, client: Any, dn: str, password: str) -> None:
        from ldaptor.protocols import pureldap

        response = await self._ask(client, pureldap.LDAPBindRequest(dn=dn, auth=password))
        code = response.resultCode
        if code == 0:
            return
        if code in _REFUSED_CODES:
            log.info("LDAP login as {dn} refused (result code {code})", dn=dn, code=code)
            raise LoginFailed("wrong user name or password")
        raise ProviderUnavailable(
            f"LDAP bind failed with result code {code}: {_text(response.errorMessage)}")

    async def _read_entry(self, client: Any, dn: str) -> tuple[str, dict[str, str]]:
        """The entry's DN as the server spells it and the first value of
        each mapped attribute (lower-cased names)."""
        from ldaptor.protocols import pureldap

        request = pureldap.LDAPSearchRequest(
            baseObject=dn, scope=pureldap.LDAP_SCOPE_baseObject,
            derefAliases=pureldap.LDAP_DEREF_neverDerefAliases,
            sizeLimit=1, timeLimit=math.ceil(self._timeout),
            filter=pureldap.LDAPFilter_present("objectClass"),
            attributes=list(self._attributes))
        entries: list[Any] = []
        done: defer.Deferred[Any] = defer.Deferred()

        def handle(response: Any) -> bool:
            if isinstance(response, pureldap.LDAPSearchResultEntry):
                entries.append(response)
                return False
            if isinstance(response, pureldap.LDAPSearchResultReference):
                return False
            if not done.called:
                done.callback(response)
            return True

        def lost(failure: Any) -> None:
            if not done.called:
                done.errback(failure)

        if not client.connected:
            raise error.ConnectionLost("the LDAP server closed the connection")
        client.send_multiResponse(request, handle).addErrback(lost)
        done.addTimeout(self._timeout, self._reactor)
        result = await done
        if result.resultCode != 0 or not entries:
            # The bind worked, so the entry exists: the server's ACLs keep
            # people from reading their own entry.
            log.warn("LDAP login as {dn}: cannot read the entry (result code {code});"
                     " people must be allowed to read their own entry",
                     dn=dn, code=result.resultCode)
            raise ProviderUnavailable(
                f"LDAP entry unreadable, result code {result.resultCode}:"
                f" {_text(result.errorMessage)}")
        entry = entries[0]
        values = {}
        for attribute, found in entry.attributes:
            if found:
                values[_text(attribute).lower()] = _text(found[0])
        return _text(entry.objectName) or dn, values

    async def _ask(self, client: Any, request: Any) -> Any:
        """Send one request and wait for its single response."""
        if not client.connected:
            raise error.ConnectionLost("the LDAP server closed the connection")
        d = client.send(request)
        d.addTimeout(self._timeout, self._reactor)
        return await d

    async def _close(self, client: Any) -> None:
        """Unbind and wait (at most the timeout) for the socket to close."""
        from ldaptor.protocols import pureldap

        if client.transport is None or not client.connected:
            return
        try:
            client.send_noResponse(pureldap.LDAPUnbindRequest())
        except Exception:  # the connection went away meanwhile
            pass
        client.transport.loseConnection()
        closed = client.closed
        closed.addTimeout(self._timeout, self._reactor)
        try:
            await closed
        except defer.TimeoutError:
            client.transport.abortConnection()


@functools.cache
def _client_class() -> type:
    """ldaptor's client protocol plus a Deferred that fires on close.

    Imported on first use: ``ldaptor.protocols.ldap.ldapclient`` imports
    the global reactor, which must not be installed by importing snfd.
    """
    from ldaptor.protocols.ldap.ldapclient import LDAPClient

    class Client(LDAPClient):
        def __init__(self) -> None:
            super().__init__()
            self.closed: defer.Deferred[None] = defer.Deferred()

        def connectionLost(self, reason: Any = protocol.connectionDone) -> None:
            super().connectionLost(reason)
            if not self.closed.called:
                self.closed.callback(None)

    return Client


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value or "")
