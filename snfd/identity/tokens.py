"""Tokens: generation, and the short per-node cache of validations.

A token is 32 random bytes, URL-safe base64 (43 characters); only its
SHA-256 is stored.  Validations are cached for ``ttl`` seconds, keyed by
the hash.  Every change that must end a token's life (renewal, revocation,
deactivation, group change, component token replacement) sends a
PostgreSQL NOTIFY in its own transaction; each node's ``Listener`` clears
the matching entries.  While a node is not listening (reconnecting) its
cache answers nothing, so no revoked token outlives a notification gap.

The one-time codes of native applications' logins are made as tokens are;
``s256_challenge`` is PKCE's check of the verifier that redeems one.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections import OrderedDict
from typing import Any

TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh token.  Never one starting with ``-``: command-line clients
    (``swift -K``, ``openstack --os-token``) would take it for an option."""
    while True:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        if not token.startswith("-"):
            return token


def s256_challenge(verifier: str) -> str:
    """The PKCE ``S256`` code challenge of ``verifier`` (RFC 7636, 4.2):
    its SHA-256, URL-safe base64 without padding (43 characters)."""
    digest = hashlib.sha256(verifier.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_audit_id() -> str:
    return secrets.token_urlsafe(16)[:22]


class TokenCache:
    """Validated principals by token hash, for ``ttl`` seconds, bounded.

    ``owner`` of an entry is ``"user:<uuid>"`` or ``"component:<name>"``:
    ``invalidate(owner)`` drops every entry of that owner.  ``usable`` is a
    callable saying whether answers may come from memory (the listener is
    connected).

    Two clocks: ``ttl`` is a duration, measured with ``monotonic`` (default
    ``clock``), so a wall clock set back does not keep an answer longer
    (where nothing invalidates the cache, ``snfd.identity.remote``, the TTL
    is all that bounds how long a revoked token is still accepted);
    ``not_after`` is an instant of the wall clock ``clock`` (a token's
    expiry), compared with it as the database path compares it.
    """

    def __init__(self, clock: Any, ttl: float, usable: Any = lambda: True,
                 max_entries: int = 100_000, monotonic: Any = None):
        self._clock = clock
        self._monotonic = monotonic if monotonic is not None else clock
        self._ttl = ttl
        self._usable = usable
        self._max = max_entries
        # key -> (monotonic end of the TTL, wall-clock not_after, owner, value)
        self._entries: OrderedDict[bytes, tuple[float, float | None, str, Any]] = OrderedDict()
        self._by_owner: dict[str, set[bytes]] = {}

    def get(self, key: bytes) -> Any:
        if self._ttl <= 0 or not self._usable():
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        until, not_after, _owner, value = entry
        if self._monotonic.seconds() >= until or (
                not_after is not None and self._clock.seconds() >= not_after):
            self._remove(key)
            return None
        return value

    def put(self, key: bytes, owner: str, value: Any, not_after: float | None = None) -> None:
        """Cache ``value``; ``not_after`` (wall-clock seconds) caps the
        entry's life, e.g. at the token's own expiry."""
        if self._ttl <= 0 or not self._usable():
            return
        until = self._monotonic.seconds() + self._ttl
        self._remove(key)
        self._entries[key] = (until, not_after, owner, value)
        self._by_owner.setdefault(owner, set()).add(key)
        while len(self._entries) > self._max:
            self._remove(next(iter(self._entries)))

    def invalidate(self, owner: str) -> None:
        for key in list(self._by_owner.get(owner, ())):
            self._remove(key)

    def clear(self) -> None:
        self._entries.clear()
        self._by_owner.clear()

    def _remove(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            owner = entry[2]
            keys = self._by_owner.get(owner)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_owner[owner]

    def __len__(self) -> int:
        return len(self._entries)
