"""The Shibboleth login provider: the person's identity as asserted by a
trusted front web server in request headers.

A web server running a SAML service provider (Apache with ``mod_shib``)
authenticates the person and passes their attributes on as headers: the
EPPN, mail, given name, surname.  Those headers are believed only on
requests whose source address is one of the configured front servers;
those servers must drop the same headers when a client sends them, or any
client could claim to be anyone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

from zope.interface import implementer

from snfd.identity.providers import Credentials, ExternalIdentity
from snfd.interfaces import IAuthProvider

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: A ``;`` that separates values (an escaped one, ``\\;``, is part of one).
_SEPARATOR = re.compile(r"(?<!\\);")


def first_value(header: str) -> str:
    """The first non-empty value of a Shibboleth multi-valued header.

    The service provider joins several values with ``;`` and escapes a
    ``;`` inside a value as ``\\;``.  Surrounding whitespace is dropped;
    ``""`` when there is no value.
    """
    for value in _SEPARATOR.split(header):
        value = value.replace("\\;", ";").strip()
        if value:
            return value
    return ""


@implementer(IAuthProvider)
class ShibbolethProvider:
    """Log in with the identity headers of a trusted front web server.

    @param trusted_addresses: addresses (or networks, ``10.0.0.0/24``) of
        the front web servers; a request from elsewhere is not handled.
        None (the default of ``[identity] shibboleth_trusted``) trusts
        nobody: loopback is not implied, since behind a reverse proxy on
        the same host every client's request comes from there.
    @param id_header: the header with the person's unique, stable id (the
        EPPN); without it the request is not handled.  The other headers
        give the email and names, ``""`` when absent.
    @raise ValueError: when a trusted address is not an IP address or
        network.
    """

    name = "shibboleth"
    creates_users = True
    verified_email = True

    def __init__(self, trusted_addresses: Iterable[str], id_header: str = "eppn",
                 email_header: str = "mail", first_name_header: str = "givenName",
                 last_name_header: str = "sn") -> None:
        self._trusted: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(a.strip(), strict=False) for a in trusted_addresses)
        self._id_header = id_header.lower()
        self._email_header = email_header.lower()
        self._first_name_header = first_name_header.lower()
        self._last_name_header = last_name_header.lower()

    def trusts(self, source: str) -> bool:
        """Whether requests from the address ``source`` carry believed headers."""
        address = _address(source)
        return address is not None and any(
            address.version == n.version and address in n for n in self._trusted)

    async def authenticate(self, credentials: Credentials) -> ExternalIdentity | None:
        """The identity in the headers of a request from a trusted front
        server; ``None`` otherwise.  See ``IAuthProvider.authenticate``."""
        if not self.trusts(credentials.source):
            return None
        headers = _lower_names(credentials.headers)
        identifier = first_value(headers.get(self._id_header, ""))
        if not identifier:
            return None
        return ExternalIdentity(
            provider="shibboleth",
            identifier=identifier,
            email=first_value(headers.get(self._email_header, "")),
            first_name=first_value(headers.get(self._first_name_header, "")),
            last_name=first_value(headers.get(self._last_name_header, "")),
        )


def _lower_names(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _address(source: str) -> _Address | None:
    """``source`` as an address; an IPv4 address mapped into IPv6 (as a
    dual-stack socket reports it) as the IPv4 address."""
    try:
        address = ipaddress.ip_address(source.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
