"""Certificates for tests: fresh self-signed ones, made in memory."""

from __future__ import annotations

from snfd import tls


def self_signed(*sans: str) -> tuple[bytes, bytes]:
    """A fresh self-signed certificate for ``sans``: (cert PEM, key PEM)."""
    return tls.self_signed("snfd-test", sans)
