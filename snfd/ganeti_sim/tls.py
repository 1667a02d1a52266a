"""The simulated cluster's RAPI certificate (``rapi.pem``).

Like Ganeti's ``/var/lib/ganeti/rapi.pem``, one PEM file holds the private
key and a self-signed certificate.  Ours names the listening address
(IP SAN ``127.0.0.1`` or the configured interface) and the cluster name
(DNS SAN), so a client may pin it with or without hostname checking.  An
existing file is reused, so a restarted simulator keeps its identity and
clients keep trusting it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.DOTALL)
VALIDITY = datetime.timedelta(days=5 * 365)


def _generate(cluster_name: str, addresses: list[str]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cluster_name)])
    names: list[x509.GeneralName] = [x509.DNSName(cluster_name)]
    for address in addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return key_pem + cert.public_bytes(serialization.Encoding.PEM)


def ensure_rapi_pem(path: Path, cluster_name: str, addresses: list[str]) -> bytes:
    """The content of ``path`` (key + certificate), created first if it
    does not exist or holds no certificate.  Written with mode 0600."""
    try:
        pem = path.read_bytes()
        if _CERT.search(pem.decode("ascii", "replace")) and b"PRIVATE KEY" in pem:
            return pem
    except OSError:
        pass
    pem = _generate(cluster_name, addresses)
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.replace(temp, path)
    return pem


def certificate_part(pem: bytes) -> str:
    """Only the certificate of a key + certificate PEM (what a client pins)."""
    match = _CERT.search(pem.decode("ascii"))
    if match is None:
        raise ValueError("no certificate in the PEM data")
    text = match.group(0)
    return text if text.endswith("\n") else text + "\n"
