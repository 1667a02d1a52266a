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
import os
import re
from pathlib import Path

from snfd.tls import self_signed

_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.DOTALL)
VALIDITY = datetime.timedelta(days=5 * 365)


def _generate(cluster_name: str, addresses: list[str]) -> bytes:
    cert, key = self_signed(cluster_name, [cluster_name, *addresses], VALIDITY)
    return key + cert


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
