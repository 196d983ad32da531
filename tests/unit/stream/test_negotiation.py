"""c2s negotiation helpers (RFC 6120 §5.4.1 STARTTLS, §6.4 SASL payloads, §7 bind; XEP-0440)."""

from __future__ import annotations

import base64

import pytest

from blether import ns
from blether.errors import SASLFailure
from blether.stream import negotiation as neg
from blether.xml.element import Element, serialize


def test_starttls_feature_required_and_optional() -> None:
    assert serialize(neg.starttls_feature(True), ns.STREAMS) == (
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>")
    assert serialize(neg.starttls_feature(False), ns.STREAMS) == (
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")


def test_mechanisms_feature_lists_in_order() -> None:
    el = neg.mechanisms_feature(["SCRAM-SHA-256", "SCRAM-SHA-1"])
    assert el.xmlns == ns.SASL and el.name == "mechanisms"
    assert [m.text for m in el.find_all("mechanism", ns.SASL)] == ["SCRAM-SHA-256",
                                                                  "SCRAM-SHA-1"]


def test_channel_binding_feature() -> None:
    el = neg.channel_binding_feature(["tls-server-end-point", "tls-unique"])
    assert (el.name, el.xmlns) == ("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
    assert [c.attrs["type"] for c in el.find_all("channel-binding", ns.SASL_CB)] == [
        "tls-server-end-point", "tls-unique"]


def test_bind_features_include_optional_legacy_session() -> None:
    bind, session = neg.bind_features()
    assert (bind.name, bind.xmlns) == ("bind", ns.BIND)
    assert (session.name, session.xmlns) == ("session", ns.SESSION)
    # RFC 6121 §1.4 / draft-cridland-xmpp-session: <optional/> tells clients to skip it.
    assert session.find("optional", ns.SESSION) is not None


def payload(text: str) -> Element:
    return Element("response", ns.SASL, None, [text] if text else [])


@pytest.mark.parametrize(("text", "expected"), [
    ("", b""),                 # no payload at all
    ("=", b""),                # RFC 6120 §6.4.2: '=' is an empty response
    (base64.b64encode(b"n,,n=juliet,r=abc").decode(), b"n,,n=juliet,r=abc"),
    ("  " + base64.b64encode(b"\0a\0b").decode() + "\n", b"\0a\0b"),  # whitespace around
])
def test_decode_sasl_payload(text: str, expected: bytes) -> None:
    assert neg.decode_sasl_payload(payload(text)) == expected


@pytest.mark.parametrize("text", ["not base64!", "abc", "YWJj*", "==", "YW Jj", "Y"])
def test_bad_base64_is_incorrect_encoding(text: str) -> None:
    # RFC 6120 §6.5.2
    with pytest.raises(SASLFailure) as info:
        neg.decode_sasl_payload(payload(text))
    assert info.value.condition == "incorrect-encoding"


def test_sasl_element_payloads() -> None:
    assert serialize(neg.sasl_element("success", None), ns.STREAMS) == (
        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    assert serialize(neg.sasl_element("challenge", b""), ns.STREAMS) == (
        "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</challenge>")
    el = neg.sasl_element("success", b"v=abc")
    assert base64.b64decode(el.text) == b"v=abc"


def test_generated_resources_are_unique_and_unguessable() -> None:
    resources = {neg.generate_resource() for _ in range(1000)}
    assert len(resources) == 1000
    assert all(len(r) >= 16 for r in resources)  # ≥ 64 bits of randomness, hex


def test_stages_are_in_negotiation_order() -> None:
    assert [s.value for s in neg.Stage] == ["start", "auth", "bind", "bound"]
