"""XEP-0114 §3 without sockets: the component stream header, the handshake, and the address
rules for stanzas a component sends (blether.features.component.stream)."""

from __future__ import annotations

import hashlib

import pytest

from blether.errors import StreamError
from blether.features.component.stream import (
    BadStanza,
    ComponentStream,
    handshake_digest,
    handshake_ok,
    inbound,
)
from blether.stream.connection import StreamOpened
from blether.xml.element import Element
from blether.xml.parser import PRE_AUTH, ElementParsed, StreamHeader, XMLStreamParser

COMPONENT = "jabber:component:accept"
STREAMS = "http://etherx.jabber.org/streams"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"

# XEP-0114 §3, "Component sends stream header to server".
HEADER = (b"<stream:stream xmlns='jabber:component:accept' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='plays.shakespeare.lit'>")


def stream() -> ComponentStream:
    return ComponentStream(frozenset({"plays.shakespeare.lit"}), PRE_AUTH)


def opened(data: bytes) -> StreamOpened:
    events = stream().receive(data)
    assert len(events) == 1 and isinstance(events[0], StreamOpened), events
    return events[0]


def header_error(data: bytes) -> str:
    with pytest.raises(StreamError) as info:
        stream().receive(data)
    return info.value.condition


def el(xml: str) -> Element:
    """One element as a component writes it (default namespace jabber:component:accept)."""
    parser = XMLStreamParser()
    parser.feed(HEADER)
    parsed = [e.element for e in parser.feed(xml.encode()) if isinstance(e, ElementParsed)]
    assert len(parsed) == 1
    return parsed[0]


# -- the stream header ------------------------------------------------------------------------

def test_the_xep_example_header_is_accepted_without_a_version() -> None:
    assert opened(HEADER).to == "plays.shakespeare.lit"


def test_the_component_name_is_prepared() -> None:
    assert opened(HEADER.replace(b"plays.shakespeare.lit", b"PLAYS.Shakespeare.lit")).to == \
        "plays.shakespeare.lit"


def test_a_name_that_is_not_configured_is_host_unknown() -> None:
    assert header_error(HEADER.replace(b"plays.", b"sonnets.")) == "host-unknown"


def test_a_header_without_to_is_improper_addressing() -> None:
    assert header_error(HEADER.replace(b" to='plays.shakespeare.lit'", b"")) == \
        "improper-addressing"


def test_a_client_stream_on_the_component_port_is_invalid_namespace() -> None:
    assert header_error(HEADER.replace(b"jabber:component:accept", b"jabber:client")) == \
        "invalid-namespace"


def test_the_connect_namespace_is_not_supported() -> None:
    assert header_error(HEADER.replace(b"jabber:component:accept",
                                       b"jabber:component:connect")) == "invalid-namespace"


def test_the_answer_carries_id_and_from_and_no_version_or_features() -> None:
    s = stream()
    s.receive(HEADER)
    answer = s.header()
    parser = XMLStreamParser()
    (head,) = parser.feed(answer)
    assert isinstance(head, StreamHeader)
    assert head.content_ns == COMPONENT and head.ns == STREAMS and head.prefix == "stream"
    assert head.attrs["from"] == "plays.shakespeare.lit"
    assert head.attrs["id"] == s.stream_id and len(s.stream_id) >= 16
    assert "version" not in head.attrs
    assert b"features" not in answer


def test_every_stream_gets_a_fresh_id() -> None:
    ids = set()
    for _ in range(20):
        s = stream()
        s.receive(HEADER)
        s.header()
        ids.add(s.stream_id)
    assert len(ids) == 20


def test_an_error_before_the_name_is_known_names_no_component() -> None:
    s = stream()
    with pytest.raises(StreamError) as info:
        s.receive(HEADER.replace(b"plays.", b"sonnets."))
    out = s.error(info.value)
    head = XMLStreamParser().feed(out)[0]
    assert isinstance(head, StreamHeader) and "from" not in head.attrs
    assert b"plays.shakespeare.lit" not in out
    assert b"<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
    assert out.endswith(b"</stream:stream>")


def test_the_success_handshake_is_empty_and_unqualified() -> None:
    assert stream().handshake_element() == b"<handshake/>"


def test_stanzas_are_written_unqualified_to_inherit_the_component_namespace() -> None:
    msg = Element("message", "jabber:client", {"to": "a@plays.shakespeare.lit"},
                  [Element("body", "jabber:client", None, ["hi"])])
    assert stream().element(msg) == b"<message to='a@plays.shakespeare.lit'><body>hi</body>" \
                                    b"</message>"


# -- the handshake ------------------------------------------------------------------------------

def test_digest_is_lowercase_hex_sha1_of_stream_id_then_secret() -> None:
    # Computed independently: printf '3BF96D32secret' | sha1sum
    assert handshake_digest("3BF96D32", "secret") == "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"


def test_digest_of_a_non_ascii_secret_hashes_its_utf8_bytes() -> None:
    expected = hashlib.sha1("idsécret".encode()).hexdigest()
    assert handshake_digest("id", "sécret") == expected


def test_the_right_handshake_is_accepted() -> None:
    good = handshake_digest("3BF96D32", "secret")
    assert handshake_ok(el(f"<handshake>{good}</handshake>"), "3BF96D32", "secret")


def test_uppercase_hex_is_accepted_like_prosody_does() -> None:
    good = handshake_digest("3BF96D32", "secret").upper()
    assert handshake_ok(el(f"<handshake>{good}</handshake>"), "3BF96D32", "secret")


@pytest.mark.parametrize("text", [
    handshake_digest("3BF96D32", "wrong"),          # wrong secret
    handshake_digest("3BF96D33", "secret"),         # another stream's id (a replay)
    hashlib.sha1(b"secret3BF96D32").hexdigest(),    # concatenated the wrong way round
    "",                                             # empty
    "é" * 40,                                       # not even hex
])
def test_a_wrong_handshake_is_refused(text: str) -> None:
    assert not handshake_ok(el(f"<handshake>{text}</handshake>"), "3BF96D32", "secret")


def test_a_handshake_with_child_elements_is_refused() -> None:
    good = handshake_digest("3BF96D32", "secret")
    assert not handshake_ok(el(f"<handshake>{good}<x xmlns='urn:x'/></handshake>"),
                            "3BF96D32", "secret")


# -- stanzas from the component (XEP-0114 §3 last paragraph) --------------------------------

DOMAIN = "plays.shakespeare.lit"


def stream_error(xml: str) -> str:
    with pytest.raises(StreamError) as info:
        inbound(el(xml), DOMAIN)
    return info.value.condition


def test_a_stanza_from_any_user_at_the_component_domain_is_accepted() -> None:
    stanza, to, frm = inbound(el("<message from='juliet%capulet.lit@plays.shakespeare.lit/r' "
                                 "to='romeo@montague.lit'><body>hi</body></message>"), DOMAIN)
    assert str(frm) == "juliet%capulet.lit@plays.shakespeare.lit/r"
    assert str(to) == "romeo@montague.lit"
    # Moved into jabber:client, children included, like every stanza inside the server.
    assert stanza.xmlns == "jabber:client"
    assert stanza.find_text("body", "jabber:client") == "hi"


def test_addresses_are_prepared() -> None:
    stanza, _to, _frm = inbound(el("<message from='Juliet@PLAYS.shakespeare.lit' "
                                   "to='Romeo@Montague.lit'/>"), DOMAIN)
    assert stanza.attrs["from"] == "juliet@plays.shakespeare.lit"
    assert stanza.attrs["to"] == "romeo@montague.lit"


def test_other_namespaces_are_left_alone() -> None:
    stanza, _to, _frm = inbound(el("<iq type='get' id='1' from='plays.shakespeare.lit' "
                                   "to='montague.lit'><query xmlns='urn:x'/></iq>"), DOMAIN)
    assert stanza.elements()[0].xmlns == "urn:x"


def test_a_jabber_client_stanza_is_accepted_too() -> None:
    stanza, _to, _frm = inbound(el("<message xmlns='jabber:client' from='plays.shakespeare.lit' "
                                   "to='romeo@montague.lit'/>"), DOMAIN)
    assert stanza.xmlns == "jabber:client"


@pytest.mark.parametrize("frm", [
    "evil@montague.lit",                    # a local domain of the server
    "juliet@sub.plays.shakespeare.lit",     # a subdomain is not the component's hostname
    "shakespeare.lit",                      # the parent domain
    "@@",                                   # not a JID
])
def test_from_outside_the_component_domain_is_invalid_from(frm: str) -> None:
    assert stream_error(f"<message from='{frm}' to='romeo@montague.lit'/>") == "invalid-from"


def test_a_stanza_without_from_is_stamped_with_the_component_domain() -> None:
    stanza, _to, frm = inbound(el("<presence to='romeo@montague.lit'/>"), DOMAIN)
    assert str(frm) == DOMAIN and stanza.attrs["from"] == DOMAIN


def test_a_stanza_without_to_is_improper_addressing() -> None:
    assert stream_error("<message from='plays.shakespeare.lit'/>") == "improper-addressing"


def test_a_to_that_is_not_a_jid_is_bounced_as_jid_malformed() -> None:
    with pytest.raises(BadStanza) as info:
        inbound(el("<message id='m1' from='a@plays.shakespeare.lit' to='a@b@c'/>"), DOMAIN)
    assert info.value.error.condition == "jid-malformed"
    assert info.value.stanza.attrs["from"] == "a@plays.shakespeare.lit"


@pytest.mark.parametrize("xml", [
    "<iq type='get' from='plays.shakespeare.lit' to='montague.lit'><ping xmlns='urn:xmpp:ping'/>"
    "</iq>",                                                   # no id
    "<iq type='get' id='1' from='plays.shakespeare.lit' to='montague.lit'/>",   # no payload
    "<iq type='bogus' id='1' from='plays.shakespeare.lit' to='montague.lit'/>",
    "<presence type='bogus' from='plays.shakespeare.lit' to='montague.lit'/>",
])
def test_malformed_stanzas_are_bounced_as_bad_request(xml: str) -> None:
    with pytest.raises(BadStanza) as info:
        inbound(el(xml), DOMAIN)
    assert info.value.error.condition == "bad-request"
