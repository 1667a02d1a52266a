"""Login providers (``IAuthProvider``): who a person is, proven by a local
password, an LDAP bind or a trusted front web server's headers.

The identity service maps a proven ``ExternalIdentity`` to a user through
``identity_auth_links`` (provider, identifier).  This module holds the
values every provider shares and the local (password) provider; the others
live in ``ldap.py``, ``shibboleth.py`` and ``oidc.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from zope.interface import implementer

from snfd.interfaces import IAuthProvider


@attrs.frozen
class Credentials:
    """One login attempt as the API received it.

    ``headers`` are the request's headers, lower-cased names to values;
    ``source`` the client's address as the node saw it (not a forwarded
    header).  Password-less providers (shibboleth) look only at headers;
    redirect-based ones (OpenID Connect) at ``params``, the query arguments
    of the callback the person's browser was sent back to.
    """

    username: str = ""
    password: str = attrs.field(default="", repr=False)
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    source: str = ""
    params: Mapping[str, str] = attrs.field(factory=dict, repr=False)


@attrs.frozen
class ExternalIdentity:
    """What a provider proved: its stable ``identifier`` for the person and
    the attributes it knows (an empty string when it does not).  ``user``
    is the user's uuid when the provider itself knows it (the local one)."""

    provider: str
    identifier: str
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    info: Mapping[str, Any] = attrs.field(factory=dict)
    user: str = ""


class LoginFailed(Exception):
    """The provider handles these credentials and they are wrong."""


class ProviderUnavailable(Exception):
    """The provider's backend could not be asked (server down, timeout)."""


@implementer(IAuthProvider)
class LocalProvider:
    """Email (or username) and password checked against the argon2 hash in
    the database.

    ``check`` is ``async check(name, password) -> str | None``: the user's
    uuid when the password matches, ``None`` when the name is unknown or
    has no local password; it raises ``LoginFailed`` on a wrong password.
    """

    name = "local"
    creates_users = False
    verified_email = False

    def __init__(self, check: Any):
        self._check = check

    async def authenticate(self, credentials: Credentials) -> ExternalIdentity | None:
        if not credentials.username or not credentials.password:
            return None
        uuid = await self._check(credentials.username, credentials.password)
        if uuid is None:
            return None
        return ExternalIdentity("local", credentials.username.lower(),
                                email=credentials.username, user=uuid)
