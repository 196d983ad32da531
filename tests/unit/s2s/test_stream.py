"""jabber:server framing and the per-stanza address rules of RFC 6120 §8.1 on s2s streams."""

from __future__ import annotations

import pytest

from blether import ns
from blether.errors import StanzaError, StreamError
from blether.s2s import dialback as db
from blether.s2s.stream import (
    InitiatingStream,
    ServerStream,
    check_addresses,
    check_stanza,
    to_internal,
)
from blether.stream.connection import StreamOpened
from blether.xml.element import Element
from blether.xml.parser import PRE_AUTH

PEER_HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
               b"xmlns:stream='http://etherx.jabber.org/streams' "
               b"xmlns:db='jabber:server:dialback' from='remote.example' to='local.example' "
               b"version='1.0'>")
AUTHED = {("remote.example", "local.example")}
HOSTS = frozenset({"local.example", "other.local"})


def stanza(xml: str) -> Element:
    s = ServerStream(HOSTS, PRE_AUTH)
    s.receive(PEER_HEADER)
    (el,) = s.receive(xml.encode())
    assert isinstance(el, Element)
    return el


def test_response_header_declares_dialback_and_addresses_the_peer() -> None:
    s = ServerStream(HOSTS, PRE_AUTH)
    (opened,) = s.receive(PEER_HEADER)
    assert isinstance(opened, StreamOpened) and opened.to == "local.example"
    head = s.header("local.example").decode()
    assert "xmlns='jabber:server'" in head and "xmlns:db='jabber:server:dialback'" in head
    assert "from='local.example'" in head and "to='remote.example'" in head
    assert f"id='{s.stream_id}'" in head and len(s.stream_id) == 32


def test_unknown_to_is_host_unknown() -> None:
    s = ServerStream(frozenset({"elsewhere.example"}), PRE_AUTH)
    with pytest.raises(StreamError) as err:
        s.receive(PEER_HEADER)
    assert err.value.condition == "host-unknown"


def test_client_namespace_is_refused_on_s2s() -> None:
    s = ServerStream(HOSTS, PRE_AUTH)
    with pytest.raises(StreamError) as err:
        s.receive(PEER_HEADER.replace(b"xmlns='jabber:server'", b"xmlns='jabber:client'"))
    assert err.value.condition == "invalid-namespace"


def test_stanzas_are_written_unqualified_and_dialback_prefixed() -> None:
    s = ServerStream(HOSTS, PRE_AUTH)
    msg = Element("message", ns.CLIENT, {"to": "a@remote.example"},
                  [Element("body", ns.CLIENT, None, ["hi"])])
    assert s.element(msg) == b"<message to='a@remote.example'><body>hi</body></message>"
    assert s.element(db.result_request("l.example", "r.example", "K")) == \
        b"<db:result from='l.example' to='r.example'>K</db:result>"


def test_incoming_stanzas_move_to_jabber_client() -> None:
    el = stanza("<message from='a@remote.example' to='b@local.example'><body>hi</body>"
                "<x xmlns='urn:example'><y/></x></message>")
    assert el.xmlns == ns.SERVER
    out = to_internal(el)
    assert out.xmlns == ns.CLIENT and out.find("body", ns.CLIENT) is not None
    x = out.find("x", "urn:example")
    assert x is not None and x.find("y", "urn:example") is not None   # other namespaces kept
    assert el.xmlns == ns.SERVER                                      # the original is a value


@pytest.mark.parametrize(("xml", "condition"), [
    ("<message to='b@local.example'/>", "improper-addressing"),
    ("<message from='a@remote.example'/>", "improper-addressing"),
    ("<message from='a@remote.example' to='b@nowhere.example'/>", "host-unknown"),
    ("<message from='a@forged.example' to='b@local.example'/>", "invalid-from"),
    ("<message from='a@remote.example' to='b@other.local'/>", "invalid-from"),  # pair not authed
    ("<message from='@@' to='b@local.example'/>", "invalid-from"),
])
def test_address_stream_errors(xml: str, condition: str) -> None:
    with pytest.raises(StreamError) as err:
        check_addresses(stanza(xml), HOSTS, AUTHED)
    assert err.value.condition == condition


def test_authenticated_pair_passes() -> None:
    to, frm = check_addresses(stanza("<message from='A@Remote.Example/r' to='b@local.example'/>"),
                              HOSTS, AUTHED)
    assert str(to) == "b@local.example" and str(frm) == "a@remote.example/r"


def test_malformed_to_is_a_stanza_error() -> None:
    with pytest.raises(StanzaError) as err:
        check_addresses(stanza("<message from='a@remote.example' to='b@@local.example'/>"),
                        HOSTS, AUTHED)
    assert err.value.condition == "jid-malformed"


@pytest.mark.parametrize("xml", [
    "<iq type='get' from='a@remote.example' to='local.example'><ping xmlns='urn:xmpp:ping'/></iq>",
    "<iq type='fetch' id='1'/>",
    "<iq type='get' id='1'/>",
    "<iq type='set' id='1'><a xmlns='x'/><b xmlns='x'/></iq>",
    "<presence type='away'/>",
])
def test_broken_stanzas_are_bad_requests(xml: str) -> None:
    with pytest.raises(StanzaError) as err:
        check_stanza(to_internal(stanza(xml)))
    assert err.value.condition == "bad-request"


def test_initiating_stream_reads_the_response_header() -> None:
    s = InitiatingStream("local.example", "remote.example", PRE_AUTH)
    assert b"to='remote.example'" in s.initial_header()
    assert b" id=" not in s.initial_header()
    (opened,) = s.receive(PEER_HEADER.replace(b"from=", b"id='abc' from="))
    assert isinstance(opened, StreamOpened)
    assert s.peer_id == "abc" and s.peer_supports_dialback


def test_initiating_stream_needs_an_id() -> None:
    s = InitiatingStream("local.example", "remote.example", PRE_AUTH)
    with pytest.raises(StreamError) as err:
        s.receive(PEER_HEADER)
    assert err.value.condition == "invalid-xml"
