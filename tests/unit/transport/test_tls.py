"""TLS for streams (RFC 6120 §5, RFC 7590, XEP-0368; RFC 5929 channel bindings).

Handshakes run in memory (ssl.MemoryBIO), so the contexts and the channel-binding data are
checked exactly as a client sees them, without sockets.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from blether.transport.tls import (
    TLSManager,
    make_context,
    make_self_signed,
    server_end_point_hash,
)


def handshake(server_ctx: ssl.SSLContext, server_name: str = "localhost",
              max_version: ssl.TLSVersion | None = None, alpn: list[str] | None = None
              ) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Complete a TLS handshake in memory; returns (client, server) SSL objects."""
    cctx = ssl.create_default_context()
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    if max_version is not None:
        cctx.maximum_version = max_version
    if alpn:
        cctx.set_alpn_protocols(alpn)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = cctx.wrap_bio(c_in, c_out, server_hostname=server_name)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for key, obj in (("c", client), ("s", server)):
            if not done[key]:
                try:
                    obj.do_handshake()
                    done[key] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return client, server
    raise AssertionError("handshake did not complete")


@pytest.fixture
def manager(tmp_path: Path) -> TLSManager:
    return TLSManager(["localhost", "example.org"], tmp_path, {})


def test_self_signed_certificates_are_made_once_and_reused(tmp_path: Path) -> None:
    TLSManager(["localhost"], tmp_path, {})
    cert, key = tmp_path / "certs" / "localhost.crt", tmp_path / "certs" / "localhost.key"
    first = cert.read_bytes(), key.read_bytes()
    assert key.stat().st_mode & 0o777 == 0o600  # the private key is private
    again = TLSManager(["localhost"], tmp_path, {})
    assert (cert.read_bytes(), key.read_bytes()) == first
    assert again.certs["localhost"].end_point_hash == server_end_point_hash(first[0])


def test_self_signed_certificate_names_the_domain(tmp_path: Path) -> None:
    make_self_signed("example.org", tmp_path / "c.pem", tmp_path / "k.pem")
    cert = x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"example.org", "*.example.org"}
    assert cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC)


def test_configured_certificates_are_used(tmp_path: Path) -> None:
    make_self_signed("example.org", tmp_path / "mine.crt", tmp_path / "mine.key")
    m = TLSManager(["example.org"], tmp_path,
                   {"example.org": (str(tmp_path / "mine.crt"), str(tmp_path / "mine.key"))})
    assert not (tmp_path / "certs").exists()
    assert m.certs["example.org"].end_point_hash == server_end_point_hash(
        (tmp_path / "mine.crt").read_bytes())


def test_context_settings(manager: TLSManager) -> None:
    ctx = manager.client_context
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    for flag in (ssl.OP_NO_COMPRESSION, ssl.OP_NO_TICKET, ssl.OP_NO_RENEGOTIATION):
        assert ctx.options & flag == flag
    ciphers = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert ciphers and all("GCM" in c or "CHACHA20" in c for c in ciphers)  # AEAD only
    assert all(c.startswith(("ECDHE", "DHE")) for c in ciphers)  # forward secrecy


def test_min_version_13(tmp_path: Path) -> None:
    make_self_signed("localhost", tmp_path / "c.pem", tmp_path / "k.pem")
    ctx = make_context(tmp_path / "c.pem", tmp_path / "k.pem", ["xmpp-client"], "1.3")
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(ssl.SSLError):
        handshake(ctx, max_version=ssl.TLSVersion.TLSv1_2)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls_11_clients_are_refused(manager: TLSManager) -> None:
    with pytest.raises(ssl.SSLError):
        handshake(manager.client_context, max_version=ssl.TLSVersion.TLSv1_1)


def test_alpn_xmpp_client(manager: TLSManager) -> None:
    # XEP-0368 §3: direct TLS clients offer ALPN 'xmpp-client'.
    client, _server = handshake(manager.client_context, alpn=["xmpp-client"])
    assert client.selected_alpn_protocol() == "xmpp-client"


@pytest.mark.parametrize(("name", "expected"), [("localhost", "localhost"),
                                                ("example.org", "example.org"),
                                                ("unknown.example", "localhost")])
def test_sni_picks_the_certificate(manager: TLSManager, name: str, expected: str) -> None:
    client, _server = handshake(manager.client_context, server_name=name)
    der = client.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert expected in san.get_values_for_type(x509.DNSName)


SignatureHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512


def _cert_signed_with(algorithm: SignatureHash) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "x")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, algorithm))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(("algorithm", "digest"), [
    (hashes.SHA256(), "sha256"), (hashes.SHA384(), "sha384"), (hashes.SHA512(), "sha512"),
])
def test_server_end_point_uses_the_signature_hash(algorithm: SignatureHash,
                                                  digest: str) -> None:
    # RFC 5929 §4.1
    pem = _cert_signed_with(algorithm)
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert server_end_point_hash(pem) == hashlib.new(digest, der).digest()


@pytest.mark.parametrize("max_version", [None, ssl.TLSVersion.TLSv1_2])
def test_bindings_agree_with_what_the_client_computes(manager: TLSManager,
                                                      max_version: ssl.TLSVersion | None
                                                      ) -> None:
    client, server = handshake(manager.client_context, max_version=max_version)
    bindings = manager.bindings("localhost", server)
    der = client.getpeercert(binary_form=True)
    assert der is not None
    assert bindings["tls-server-end-point"] == hashlib.sha256(der).digest()
    if server.version() == "TLSv1.3":
        # RFC 9266 §3: tls-unique is not defined for TLS 1.3.
        assert set(bindings) == {"tls-server-end-point"}
    else:
        assert bindings["tls-unique"] == client.get_channel_binding("tls-unique")


def test_bindings_follow_the_stream_domain(manager: TLSManager) -> None:
    client, server = handshake(manager.client_context, server_name="example.org")
    der = client.getpeercert(binary_form=True)
    assert der is not None
    assert manager.bindings("example.org", server)["tls-server-end-point"] == \
        hashlib.sha256(der).digest()


def test_no_tls_no_bindings(manager: TLSManager) -> None:
    assert manager.bindings("localhost", None) == {}


def test_context_for_unknown_domain_falls_back_to_the_default(manager: TLSManager) -> None:
    assert manager.context_for("nowhere") is manager.certs["localhost"].context
    assert manager.context_for("example.org") is manager.certs["example.org"].context


def test_end_point_binding_describes_the_certificate_presented(manager: TLSManager) -> None:
    client, server = handshake(manager.client_context, server_name="localhost")
    der = client.getpeercert(binary_form=True)
    assert der is not None
    # The stream header then says to='example.org' (another hosted domain).
    assert manager.bindings("example.org", server)["tls-server-end-point"] == \
        hashlib.sha256(der).digest()
