"""TLS for XMPP streams (RFC 6120 §5, RFC 7590, XEP-0368): certificates and server contexts.

Settings follow Mozilla's "intermediate" profile as SECURITY.md asks: TLS ≥ 1.2, AEAD + PFS
suites, no compression, no renegotiation, no session tickets. A self-signed certificate is made
for each hosted domain that has none configured, once, and reused afterwards.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

# Mozilla intermediate (v5.7) TLS 1.2 suites; TLS 1.3 suites are OpenSSL's defaults.
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


def make_self_signed(domain: str, cert_path: Path, key_path: Path, days: int = 3650) -> None:
    """Write a self-signed certificate for `domain` (and its wildcard) with an EC P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    sans: list[x509.GeneralName] = [x509.DNSName(domain)]
    try:
        sans = [x509.IPAddress(ipaddress.ip_address(domain.strip("[]")))]
    except ValueError:
        sans.append(x509.DNSName(f"*.{domain}"))
    if domain == "localhost":
        sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                 x509.IPAddress(ipaddress.ip_address("::1"))]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                              x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_end_point_hash(cert_pem: bytes) -> bytes:
    """RFC 5929 §4.1 tls-server-end-point: the certificate hashed with its signature hash
    (SHA-256 when that is MD5 or SHA-1)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    algo = cert.signature_hash_algorithm
    name = algo.name if algo is not None else "sha256"
    if name in ("md5", "sha1"):
        name = "sha256"
    return hashlib.new(name, cert.public_bytes(serialization.Encoding.DER)).digest()


@dataclass
class DomainCert:
    domain: str
    cert_path: Path
    key_path: Path
    end_point_hash: bytes
    context: ssl.SSLContext


def make_context(cert_path: Path, key_path: Path, alpn: list[str],
                 min_version: str = "1.2") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = (ssl.TLSVersion.TLSv1_3 if min_version == "1.3"
                           else ssl.TLSVersion.TLSv1_2)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
    # With OP_NO_TICKET, TLS 1.3 still issues (stateful) tickets: two per handshake, each
    # session kept in the context's cache (~1 KiB per login, up to 20 480 of them).
    ctx.num_tickets = 0
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.set_ecdh_curve("prime256v1")
    ctx.load_cert_chain(str(cert_path), str(key_path))
    ctx.set_alpn_protocols(alpn)
    return ctx


class TLSManager:
    """Per-domain certificates; SNI picks the right one (XEP-0368 §4)."""

    def __init__(self, hosts: list[str], data_dir: Path,
                 configured: dict[str, tuple[str, str]], min_version: str = "1.2") -> None:
        self.certs: dict[str, DomainCert] = {}
        self.default_domain = hosts[0]
        for domain in hosts:
            if domain in configured:
                cert_path, key_path = (Path(p) for p in configured[domain])
            else:
                cert_path = data_dir / "certs" / f"{domain}.crt"
                key_path = data_dir / "certs" / f"{domain}.key"
                if not (cert_path.exists() and key_path.exists()):
                    log.info("creating a self-signed certificate for %s in %s", domain,
                             cert_path.parent)
                    make_self_signed(domain, cert_path, key_path)
            ctx = make_context(cert_path, key_path, ["xmpp-client"], min_version)
            self.certs[domain] = DomainCert(domain, cert_path, key_path,
                                            server_end_point_hash(cert_path.read_bytes()), ctx)
        self.client_context = self._with_sni(self.certs[self.default_domain].context)

    def _with_sni(self, ctx: ssl.SSLContext) -> ssl.SSLContext:
        def pick(sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            if server_name and server_name in self.certs:
                sock.context = self.certs[server_name].context
            return None

        ctx.sni_callback = pick
        return ctx

    def context_for(self, domain: str) -> ssl.SSLContext:
        cert = self.certs.get(domain) or self.certs[self.default_domain]
        return cert.context

    def bindings(self, domain: str, ssl_object: ssl.SSLObject | None) -> dict[str, bytes]:
        """Channel-binding data available on this TLS channel (RFC 5929, XEP-0440)."""
        if ssl_object is None:
            return {}
        out: dict[str, bytes] = {}
        # The certificate the handshake actually presented (chosen by SNI), which is not
        # necessarily the stream domain's: RFC 5929 §4 binds to what the client saw.
        presented = next((c for c in self.certs.values() if c.context is ssl_object.context),
                         self.certs[self.default_domain])
        out["tls-server-end-point"] = presented.end_point_hash
        if ssl_object.version() != "TLSv1.3":
            unique = ssl_object.get_channel_binding("tls-unique")
            if unique:
                out["tls-unique"] = unique
        return out
