"""One certificate for every server under test (EC P-256, self-signed for the domain), so TLS
costs the same everywhere."""

from __future__ import annotations

from pathlib import Path


def make_certificate(directory: Path, domain: str) -> tuple[Path, Path]:
    from blether.transport.tls import make_self_signed

    cert, key = directory / f"{domain}.crt", directory / f"{domain}.key"
    if not (cert.exists() and key.exists()):
        make_self_signed(domain, cert, key)
    return cert, key
