"""TLS for s2s streams (RFC 6120 §5, §13.7.2; RFC 7590; XEP-0178; XEP-0368) and certificate
identity checks (RFC 6125 as profiled by RFC 6120 §13.7.2.1, without the CN fallback that
RFC 9525 dropped).

Contexts are built from the same certificate and key files as the c2s TLSManager, with ALPN
`xmpp-server` instead of `xmpp-client`.

Python's `ssl` has no verify callback: a server that asks for a client certificate and gets
one it cannot verify fails the handshake (Prosody's LuaSec continues and judges afterwards).
So a receiving server only asks for a certificate when its policy requires one from that peer
(see policy.py); an initiating server presents its certificate only when it is not
self-signed (a self-signed one can never pass a verifying peer). On the initiating side a
failed verification of the peer's certificate makes the driver reconnect without
verification, for dialback, where the policy allows it.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from blether.jid import JIDError, domain_to_ascii, prep_domain
from blether.transport.tls import make_context, make_self_signed

if TYPE_CHECKING:
    from blether.core.services import Services

log = logging.getLogger(__name__)

ALPN = "xmpp-server"
ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")
ID_ON_DNSSRV = ObjectIdentifier("1.3.6.1.5.5.7.8.7")


def cert_paths(services: Services) -> dict[str, tuple[Path, Path]]:
    """Certificate and key per hosted domain, found exactly as the c2s TLSManager finds them.

    The TLSManager is used when the composition root shares it (`services.extra['tls']`);
    otherwise the configured files, else data_dir/certs/<domain>.crt|.key (made if missing).
    """
    tls = services.extra.get("tls")
    if tls is not None:
        return {d: (c.cert_path, c.key_path) for d, c in tls.certs.items()}
    cfg = services.config
    out: dict[str, tuple[Path, Path]] = {}
    for domain in cfg.hosts:
        if domain in cfg.tls.certificates:
            cert, key = (Path(p) for p in cfg.tls.certificates[domain])
        else:
            cert = cfg.data_dir / "certs" / f"{domain}.crt"
            key = cfg.data_dir / "certs" / f"{domain}.key"
            if not (cert.exists() and key.exists()):
                make_self_signed(domain, cert, key)
        out[domain] = (cert, key)
    return out


@functools.lru_cache(maxsize=64)
def is_self_signed(cert_path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.issuer == cert.subject


# -- identities -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Identities:
    dns: tuple[str, ...]       # dNSName entries (A-labels, lowercase)
    srv: tuple[str, ...]       # SRVName entries (e.g. "_xmpp-server.example.org")
    xmpp: tuple[str, ...]      # id-on-xmppAddr entries (prepared domains)


def _der_string(data: bytes) -> str | None:
    """Decode a DER UTF8String / IA5String (the OtherName values XMPP uses)."""
    if len(data) < 2 or data[0] not in (0x0C, 0x16):
        return None
    length, offset = data[1], 2
    if length & 0x80:
        n = length & 0x7F
        length, offset = int.from_bytes(data[2:2 + n], "big"), 2 + n
    try:
        return data[offset:offset + length].decode("utf-8")
    except UnicodeDecodeError:
        return None


def identities(der: bytes) -> Identities:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return Identities((), (), ())
    dns = tuple(n.lower() for n in san.get_values_for_type(x509.DNSName))
    srv: list[str] = []
    xmpp: list[str] = []
    for other in san.get_values_for_type(x509.OtherName):
        value = _der_string(other.value)
        if value is None:
            continue
        if other.type_id == ID_ON_DNSSRV:
            srv.append(value.lower())
        elif other.type_id == ID_ON_XMPPADDR:
            try:
                xmpp.append(prep_domain(value))
            except JIDError:
                continue
    return Identities(dns, tuple(srv), tuple(xmpp))


def _dns_match(pattern: str, name: str) -> bool:
    """RFC 6125 §6.4.3: exact, or '*' as the whole left-most label matching one label."""
    if pattern == name:
        return True
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return False


def matches_domain(ids: Identities, domain: str) -> bool:
    """Is the certificate valid for the XMPP domain `domain` (RFC 6120 §13.7.2.1)?"""
    try:
        ascii_name = domain_to_ascii(domain).lower()
    except (JIDError, ValueError):
        return False
    if domain in ids.xmpp:
        return True
    if f"_xmpp-server.{ascii_name}" in ids.srv:
        return True
    return any(_dns_match(p, ascii_name) for p in ids.dns)


def peer_cert_valid_for(ssl_object: ssl.SSLObject | None, domain: str, verified: bool) -> bool:
    """True if the TLS peer presented a chain-verified certificate that names `domain`."""
    if ssl_object is None or not verified:
        return False
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return False
    try:
        return matches_domain(identities(der), domain)
    except ValueError as exc:
        log.info("unreadable peer certificate: %s", exc)
        return False


# -- contexts -------------------------------------------------------------------------------

class S2STLS:
    """Server and client SSL contexts for s2s, per hosted domain."""

    def __init__(self, paths: Mapping[str, tuple[Path, Path]], *, ca_file: str | None,
                 verify: bool, min_version: str = "1.2") -> None:
        self.paths = dict(paths)
        self.ca_file = ca_file
        self.verify = verify
        self.min_version = min_version
        self.default_domain = next(iter(sorted(self.paths)))
        self._server: dict[tuple[str, bool], ssl.SSLContext] = {}
        self._client: dict[tuple[str, bool], ssl.SSLContext] = {}

    def _load_trust(self, ctx: ssl.SSLContext, purpose: ssl.Purpose) -> None:
        if self.ca_file:
            ctx.load_verify_locations(cafile=self.ca_file)
        else:
            ctx.load_default_certs(purpose)

    def server_context(self, domain: str | None, request_cert: bool) -> ssl.SSLContext:
        """The context for an inbound handshake; SNI switches among the same kind."""
        domain = domain if domain in self.paths else self.default_domain
        assert domain is not None
        key = (domain, request_cert)
        ctx = self._server.get(key)
        if ctx is None:
            cert, keyfile = self.paths[domain]
            ctx = make_context(cert, keyfile, [ALPN], self.min_version)
            if request_cert and self.verify:
                # Verified against our trust store; an unverifiable one ends the handshake.
                ctx.verify_mode = ssl.CERT_OPTIONAL
                self._load_trust(ctx, ssl.Purpose.CLIENT_AUTH)

            def pick(sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext,
                     request: bool = request_cert) -> None:
                if server_name:
                    try:
                        name = prep_domain(server_name)
                    except JIDError:
                        return None
                    if name in self.paths:
                        sock.context = self.server_context(name, request)
                return None

            ctx.sni_callback = pick
            self._server[key] = ctx
        return ctx

    def presents_cert(self, local: str) -> bool:
        """Does an outbound handshake from `local` present our certificate (for EXTERNAL)?"""
        paths = self.paths.get(local)
        return paths is not None and not is_self_signed(paths[0])

    def client_context(self, local: str, verify: bool) -> ssl.SSLContext:
        """The context for an outbound handshake from hosted domain `local`."""
        key = (local, verify and self.verify)
        ctx = self._client.get(key)
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = (ssl.TLSVersion.TLSv1_3 if self.min_version == "1.3"
                                   else ssl.TLSVersion.TLSv1_2)
            ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
            ctx.set_alpn_protocols([ALPN])
            ctx.check_hostname = False   # names are matched by matches_domain (xmppAddr too)
            if key[1]:
                ctx.verify_mode = ssl.CERT_REQUIRED
                self._load_trust(ctx, ssl.Purpose.SERVER_AUTH)
            else:
                ctx.verify_mode = ssl.CERT_NONE
            if self.presents_cert(local):
                cert, keyfile = self.paths[local]
                ctx.load_cert_chain(str(cert), str(keyfile))   # for SASL EXTERNAL
            self._client[key] = ctx
        return ctx
