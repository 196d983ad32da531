"""XEP-0185 dialback keys and XEP-0220 elements, checked against the XEPs' own examples."""

from __future__ import annotations

import pytest

from blether.errors import StanzaError
from blether.s2s import dialback as db
from blether.xml.element import Element, serialize
from blether.xml.parser import ElementParsed, XMLStreamParser

HEADER = (b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
          b"xmlns:db='jabber:server:dialback'>")


def parse(xml: str) -> Element:
    parser = XMLStreamParser()
    parser.feed(HEADER)
    events = [e for e in parser.feed(xml.encode()) if isinstance(e, ElementParsed)]
    assert len(events) == 1
    return events[0].element


def test_xep0185_example_key() -> None:
    # XEP-0185 §4, step 4: receiving xmpp.example.com, originating example.org.
    assert db.generate_key("s3cr3tf0rd14lb4ck", "xmpp.example.com", "example.org",
                           "D60000229F") == \
        "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"


@pytest.mark.parametrize(("secret", "receiving", "originating", "sid", "key"), [
    # XEP-0220 Example 1 (capulet.example → montague.example)
    ("s3cr3tf0rd14lb4ck", "montague.example", "capulet.example", "D60000229F",
     "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3"),
    # XEP-0220 §2.2.2 (montague.example → capulet.example)
    ("d14lb4ck43v3r", "capulet.example", "montague.example", "417GAF25",
     "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d"),
])
def test_xep0220_example_keys(secret: str, receiving: str, originating: str, sid: str,
                              key: str) -> None:
    assert db.generate_key(secret, receiving, originating, sid) == key
    assert db.check_key(secret, receiving, originating, sid, key)
    assert db.check_key(secret, receiving, originating, sid, f"  {key.upper()}\n")


@pytest.mark.parametrize("change", ["secret", "receiving", "originating", "sid"])
def test_a_key_binds_every_input(change: str) -> None:
    args = {"secret": "s", "receiving": "a.example", "originating": "b.example", "sid": "X1"}
    key = db.generate_key(args["secret"], args["receiving"], args["originating"], args["sid"])
    args[change] += "x"
    assert not db.check_key(args["secret"], args["receiving"], args["originating"],
                            args["sid"], key)


def test_the_space_separator_removes_concatenation_ambiguity() -> None:
    # XEP-0185 §3: "example.inform.example.org" must not equal another split.
    assert db.generate_key("s", "example.info", "rm.example.org", "1") != \
        db.generate_key("s", "example.in", "form.example.org", "1")


def test_elements_are_written_with_the_db_prefix() -> None:
    el = db.result_request("capulet.example", "montague.example", "abc")
    assert serialize(el, "jabber:client", prefixes=db.PREFIXES) == \
        "<db:result from='capulet.example' to='montague.example'>abc</db:result>"
    el = db.verify_response("montague.example", "capulet.example", "417GAF25", "valid")
    assert serialize(el, "jabber:client", prefixes=db.PREFIXES) == \
        "<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='valid'/>"


def test_a_dialback_error_carries_a_stanza_error_in_the_content_namespace() -> None:
    el = db.result_response("montague.example", "capulet.example", "error",
                            StanzaError("item-not-found"))
    # Serialized on a jabber:server stream, the <error/> inherits jabber:server (XEP-0220 §2.4).
    assert serialize(el, "jabber:client", prefixes=db.PREFIXES) == (
        "<db:result from='montague.example' to='capulet.example' type='error'>"
        "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "</error></db:result>")


def test_feature_element() -> None:
    assert serialize(db.feature(), "jabber:client") == \
        "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"


def test_parse_request_and_answer() -> None:
    req = db.parse(parse("<db:result from='Capulet.Example' to='montague.example'>\n  KEY\n"
                         "</db:result>"))
    assert (req.kind, req.frm, req.to, req.type, req.key) == \
        ("result", "capulet.example", "montague.example", None, "KEY")
    ans = db.parse(parse("<db:verify from='a.example' to='b.example' id='X' type='invalid'/>"))
    assert (ans.kind, ans.stream_id, ans.type) == ("verify", "X", "invalid")


def test_parse_error_condition() -> None:
    el = parse("<db:result from='a.example' to='b.example' type='error'><error type='cancel'>"
               "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
               "</db:result>")
    assert db.parse(el).condition == "item-not-found"


@pytest.mark.parametrize("xml", [
    "<db:result to='b.example'>k</db:result>",                       # no from
    "<db:result from='a.example'>k</db:result>",                      # no to
    "<db:result from='a..example' to='b.example'>k</db:result>",      # not a domain
    "<db:verify from='a.example' to='b.example'>k</db:verify>",       # verify without id
    "<db:result from='a.example' to='b.example' type='maybe'/>",      # unknown type
    "<message xmlns='jabber:server' from='a.example' to='b.example'/>",
])
def test_parse_refuses_unusable_elements(xml: str) -> None:
    with pytest.raises(db.DialbackError):
        db.parse(parse(xml))
