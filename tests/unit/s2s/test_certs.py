"""Certificate identities for s2s (RFC 6120 §13.7.2.1, RFC 6125 §6, XEP-0178)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from blether.s2s.certs import (
    ID_ON_DNSSRV,
    ID_ON_XMPPADDR,
    identities,
    is_self_signed,
    matches_domain,
)
from blether.transport.tls import make_self_signed


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return bytes([0x0C, len(raw)]) + raw


def _ia5(text: str) -> bytes:
    raw = text.encode()
    return bytes([0x16, len(raw)]) + raw


def make_cert(sans: list[x509.GeneralName], cn: str = "ignored.example") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_identities_reads_dns_srv_and_xmppaddr() -> None:
    der = make_cert([x509.DNSName("Example.ORG"),
                     x509.OtherName(ID_ON_XMPPADDR, _utf8("Chat.Example.org")),
                     x509.OtherName(ID_ON_DNSSRV, _ia5("_xmpp-server.example.net"))])
    ids = identities(der)
    assert ids.dns == ("example.org",)
    assert ids.xmpp == ("chat.example.org",)
    assert ids.srv == ("_xmpp-server.example.net",)


@pytest.mark.parametrize(("sans", "domain", "ok"), [
    ([x509.DNSName("example.org")], "example.org", True),
    ([x509.DNSName("example.org")], "EXAMPLE.org", True),
    ([x509.DNSName("example.org")], "other.org", False),
    ([x509.DNSName("*.example.org")], "chat.example.org", True),
    ([x509.DNSName("*.example.org")], "example.org", False),          # one label only
    ([x509.DNSName("*.example.org")], "a.b.example.org", False),
    ([x509.DNSName("c*.example.org")], "chat.example.org", False),     # not a whole label
    ([x509.DNSName("xn--mller-kva.example")], "müller.example", True),  # A-label compare
    ([x509.OtherName(ID_ON_XMPPADDR, _utf8("example.org"))], "example.org", True),
    ([x509.OtherName(ID_ON_DNSSRV, _ia5("_xmpp-server.example.org"))], "example.org", True),
    ([x509.OtherName(ID_ON_DNSSRV, _ia5("_xmpp-client.example.org"))], "example.org", False),
])
def test_matches_domain(sans: list[x509.GeneralName], domain: str, ok: bool) -> None:
    assert matches_domain(identities(make_cert(sans)), domain) is ok


def test_no_common_name_fallback() -> None:
    # RFC 9525 (Prosody 13, Openfire 5.1): the CN is not an identity.
    assert not matches_domain(identities(make_cert([], cn="example.org")), "example.org")


def test_is_self_signed(tmp_path: Path) -> None:
    make_self_signed("example.org", tmp_path / "c.pem", tmp_path / "k.pem")
    assert is_self_signed(tmp_path / "c.pem")
