"""SSH keypairs of the compute API (``/os-keypairs``, reference 3.1).

A user uploads a public key or has a pair generated (RSA 2048 with
``cryptography``; the private key is returned once and never stored).
Names are unique per user.  The fingerprint is the MD5 of the key blob in
colon-separated hex, as ``ssh-keygen -l -E md5`` and Nova print it.  The
public keys of the keypairs a server is created with are joined into the
``auth_keys`` build parameter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

import attrs
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from snfd import errors
from snfd.cyclades import store

MAX_NAME = 255
MAX_PUBLIC_KEY = 16 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_. @-]+$")
_KEY_TYPES = ("ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
              "ecdsa-sha2-nistp521", "ssh-dss")


@attrs.frozen
class Keypair:
    name: str
    public_key: str
    fingerprint: str
    userid: str
    created: Any = None
    private_key: str | None = attrs.field(default=None, repr=False)
    #: its number (Nova's keypair view shows one)
    id: int = 0


def check_name(name: Any) -> str:
    """A valid keypair name, or 400."""
    if not isinstance(name, str) or not name.strip():
        raise errors.BadRequest("The keypair name is required (a non-empty string).")
    if len(name) > MAX_NAME:
        raise errors.BadRequest(f"The keypair name is longer than {MAX_NAME} characters.")
    if not _NAME.match(name):
        raise errors.BadRequest(
            "The keypair name may hold only letters, digits, spaces and '_.@-'.")
    return name


def fingerprint(public_key: str) -> str:
    """``aa:bb:...``: the MD5 of the key blob (the base64 field) in colon hex."""
    blob = _blob(public_key)
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _blob(public_key: str) -> bytes:
    fields = public_key.split()
    if len(fields) < 2:
        raise errors.BadRequest("The public key is not in OpenSSH format ('<type> <base64>').")
    try:
        return base64.b64decode(fields[1], validate=True)
    except (binascii.Error, ValueError):
        raise errors.BadRequest("The public key's key data is not valid base64.") from None


def check_public_key(public_key: Any) -> str:
    """A public key in OpenSSH format (one line, a known type), or 400."""
    if not isinstance(public_key, str) or not public_key.strip():
        raise errors.BadRequest("The public key must be a non-empty string.")
    if len(public_key) > MAX_PUBLIC_KEY:
        raise errors.BadRequest(f"The public key is longer than {MAX_PUBLIC_KEY} characters.")
    key = public_key.strip()
    if "\n" in key or "\r" in key or "\x00" in key:
        raise errors.BadRequest("The public key must be a single line.")
    fields = key.split()
    if fields[0] not in _KEY_TYPES:
        raise errors.BadRequest(
            f"Unsupported public key type {fields[0][:40]!r}: expected one of"
            f" {', '.join(_KEY_TYPES)}.")
    blob = _blob(key)
    # The blob starts with its own type name; a mismatch is a broken key.
    if len(blob) < 4 or blob[4:4 + int.from_bytes(blob[:4], "big")] != fields[0].encode():
        raise errors.BadRequest("The public key's data does not match its type.")
    if fields[0] != "ssh-dss":
        try:
            serialization.load_ssh_public_key(" ".join(fields[:2]).encode("ascii"))
        except (ValueError, UnsupportedAlgorithm):
            raise errors.BadRequest("The public key is not a valid OpenSSH key.") from None
    return key


def generate() -> tuple[str, str]:
    """A new RSA 2048 pair: ``(public key in OpenSSH format, private key PEM)``."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode("ascii")
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH)
    return public.decode("ascii") + " Generated-by-snfd", pem


def _keypair(userid: str, row: dict[str, Any]) -> Keypair:
    return Keypair(name=row["name"], public_key=row["public_key"],
                   fingerprint=row["fingerprint"], userid=userid, created=row["created"],
                   id=row["id"])


class Keypairs:
    """A user's keypairs over the compute store; ``reactor`` (optional)
    lends its thread pool to key generation."""

    def __init__(self, db: Any, reactor: Any = None):
        self._db = db
        self._reactor = reactor

    async def of_user(self, user: str) -> list[Keypair]:
        rows = await self._db.run("cyclades.keypairs", store.keypairs_txn, user)
        return [_keypair(user, r) for r in rows]

    async def get(self, user: str, name: str) -> Keypair:
        """The user's keypair ``name``; 404 when there is none."""
        rows = await self._db.run("cyclades.keypairs", store.keypairs_txn, user, [name])
        if not rows:
            raise errors.NotFound(f"Keypair {name} not found.")
        return _keypair(user, rows[0])

    async def public_keys(self, user: str, names: list[str]) -> list[str]:
        """The public keys of ``names`` in that order; 404 naming a missing one."""
        if not names:
            return []
        rows = await self._db.run("cyclades.keypairs", store.keypairs_txn, user, names)
        found = {r["name"]: r["public_key"] for r in rows}
        for name in names:
            if name not in found:
                raise errors.NotFound(f"Keypair {name} not found.")
        return [found[n] for n in names]

    async def create(self, user: str, name: Any, public_key: Any = None) -> Keypair:
        """Store an uploaded key, or generate a pair when ``public_key`` is
        None (the result then carries ``private_key``).  409 when the name
        is taken."""
        name = check_name(name)
        private = None
        if public_key is None:
            if hasattr(self._reactor, "getThreadPool"):
                # RSA key generation takes a while: keep it off the reactor.
                from twisted.internet.threads import deferToThreadPool

                public_key, private = await deferToThreadPool(
                    self._reactor, self._reactor.getThreadPool(), generate)
            else:
                public_key, private = generate()
        else:
            public_key = check_public_key(public_key)
        print_ = fingerprint(public_key)
        added = await self._db.run("cyclades.add_keypair", store.add_keypair_txn, user, name,
                                   public_key, print_)
        if not added:
            raise errors.Conflict(f"Key pair '{name}' already exists.")
        stored = await self.get(user, name)
        return attrs.evolve(stored, private_key=private)

    async def delete(self, user: str, name: str) -> None:
        deleted = await self._db.run("cyclades.delete_keypair", store.delete_keypair_txn,
                                     user, name)
        if not deleted:
            raise errors.NotFound(f"Keypair {name} not found.")
