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
    #: ``ssh`` (an OpenSSH public key) or ``x509`` (a PEM certificate)
    type: str = "ssh"


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


KEY_TYPES = ("ssh", "x509")


def generate_x509(user: str) -> tuple[str, str]:
    """A new RSA 2048 key and a self-signed certificate for it naming
    ``user`` (ten years; Nova's WinRM pair): ``(certificate PEM, private
    key PEM)``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user[:64] or "snfd")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(private.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(private, hashes.SHA256()))
    pem = private.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode("ascii")
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), pem


def check_certificate(value: Any) -> tuple[str, str]:
    """An X.509 certificate in PEM, or 400: ``(the PEM, its fingerprint)``
    (the SHA-1 of its DER form in colon hex, as Nova shows it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    if not isinstance(value, str) or not value.strip() or len(value) > MAX_PUBLIC_KEY:
        raise errors.BadRequest("An x509 keypair's public key is a PEM certificate.")
    try:
        cert = x509.load_pem_x509_certificate(value.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise errors.BadRequest("The public key is not a valid X.509 certificate (PEM).") \
            from None
    digest = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - Nova's fingerprint
    return value.strip() + "\n", ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _keypair(userid: str, row: dict[str, Any]) -> Keypair:
    return Keypair(name=row["name"], public_key=row["public_key"],
                   fingerprint=row["fingerprint"], userid=userid, created=row["created"],
                   id=row["id"], type=row.get("type", "ssh"))


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
        found = {r["name"]: r for r in rows}
        for name in names:
            if name not in found:
                raise errors.NotFound(f"Keypair {name} not found.")
        # An x509 certificate (WinRM's) is no SSH key: it is not injected.
        return [found[n]["public_key"] for n in names if found[n]["type"] == "ssh"]

    async def create(self, user: str, name: Any, public_key: Any = None,
                     key_type: str = "ssh") -> Keypair:
        """Store an uploaded key, or generate a pair when ``public_key`` is
        None (the result then carries ``private_key``).  ``key_type``
        ``x509``: a PEM certificate (generated: self-signed for ``user``).
        409 when the name is taken."""
        name = check_name(name)
        if key_type not in KEY_TYPES:
            raise errors.BadRequest(f"Keypair type must be one of {', '.join(KEY_TYPES)}.")
        private = None
        if public_key is None:
            make = generate if key_type == "ssh" else (lambda: generate_x509(user))
            if hasattr(self._reactor, "getThreadPool"):
                # RSA key generation takes a while: keep it off the reactor.
                from twisted.internet.threads import deferToThreadPool

                public_key, private = await deferToThreadPool(
                    self._reactor, self._reactor.getThreadPool(), make)
            else:
                public_key, private = make()
        elif key_type == "ssh":
            public_key = check_public_key(public_key)
        if key_type == "x509":
            public_key, print_ = check_certificate(public_key)
        else:
            print_ = fingerprint(public_key)
        added = await self._db.run("cyclades.add_keypair", store.add_keypair_txn, user, name,
                                   public_key, print_, key_type)
        if not added:
            raise errors.Conflict(f"Key pair '{name}' already exists.")
        stored = await self.get(user, name)
        return attrs.evolve(stored, private_key=private)

    async def delete(self, user: str, name: str) -> None:
        deleted = await self._db.run("cyclades.delete_keypair", store.delete_keypair_txn,
                                     user, name)
        if not deleted:
            raise errors.NotFound(f"Keypair {name} not found.")
