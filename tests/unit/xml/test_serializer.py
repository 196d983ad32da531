"""The XMPP-aware serializer: escaping, namespace inheritance, round trips."""

import pytest

from blether.xml.element import XML_NS, E, Element, serialize, to_bytes
from blether.xml.parser import POST_AUTH_C2S, ElementParsed, XMLStreamParser

C = "jabber:client"
STREAMS = "http://etherx.jabber.org/streams"
HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    b" to='example.com' version='1.0'>"
)


def parse_one(xml: bytes) -> Element:
    p = XMLStreamParser(POST_AUTH_C2S)
    events = p.feed(HEADER + xml)
    assert len(events) == 2 and isinstance(events[1], ElementParsed)
    return events[1].element


def test_stanza_in_content_namespace_has_no_xmlns() -> None:
    el = E("message", C, {"to": "a@b"}, E("body", C, None, "hi"))
    assert serialize(el) == "<message to='a@b'><body>hi</body></message>"


def test_namespace_inheritance() -> None:
    el = E(
        "iq", C, {"type": "result"},
        E("query", "jabber:iq:roster", None,
          E("item", "jabber:iq:roster", {"jid": "a@b"}),
          E("back", C),
          E("none", "")),
    )
    assert serialize(el) == (
        "<iq type='result'><query xmlns='jabber:iq:roster'><item jid='a@b'/>"
        "<back xmlns='jabber:client'/><none xmlns=''/></query></iq>"
    )


def test_parent_ns_argument() -> None:
    el = E("message", "jabber:server", {"to": "a@b"})
    assert serialize(el, "jabber:server") == "<message to='a@b'/>"
    assert serialize(el) == "<message xmlns='jabber:server' to='a@b'/>"
    assert serialize(Element("a", ""), "") == "<a/>"


def test_text_escaping() -> None:
    el = E("body", C, None, "a & b < c > d ]]> 'q' \"qq\" \r\n\t")
    assert serialize(el) == (
        "<body>a &amp; b &lt; c &gt; d ]]&gt; 'q' \"qq\" &#13;\n\t</body>"
    )


def test_attribute_escaping() -> None:
    el = Element("a", C, {"v": "& < > ' \" \t \n \r x"})
    assert serialize(el) == "<a v='&amp; &lt; &gt; &apos; &quot; &#9; &#10; &#13; x'/>"


def test_no_escaping_needed_is_unchanged() -> None:
    assert serialize(E("b", C, {"k": "plain é"}, "plain ☺")) == "<b k='plain é'>plain ☺</b>"


def test_empty_elements_self_close() -> None:
    assert serialize(Element("presence", C)) == "<presence/>"
    assert serialize(E("a", C, None, E("b", C))) == "<a><b/></a>"


def test_mixed_content_order() -> None:
    el = E("p", C, None, "one ", E("b", C, None, "two"), " three")
    assert serialize(el) == "<p>one <b>two</b> three</p>"


def test_xml_lang_and_xml_namespace_attributes() -> None:
    el = Element("body", C, {"xml:lang": "en", f"{{{XML_NS}}}space": "preserve"})
    assert serialize(el) == "<body xml:lang='en' xml:space='preserve'/>"


def test_namespaced_attributes_get_a_declared_prefix() -> None:
    el = E("a", C, {"{urn:x}k": "1", "{urn:y}k": "2", "{urn:x}j": "3", "k": "4"},
           E("b", C, {"{urn:x}k": "5"}))
    out = serialize(el)
    assert "ns0" not in out
    assert out == (
        "<a xmlns:a0='urn:x' a0:k='1' xmlns:a1='urn:y' a1:k='2' a0:j='3' k='4'>"
        "<b xmlns:a0='urn:x' a0:k='5'/></a>"
    )
    assert parse_one(out.encode()) == el


def test_prefixes_for_stream_namespace() -> None:
    features = E("features", STREAMS, None,
                 E("starttls", "urn:ietf:params:xml:ns:xmpp-tls", None, E("required",
                   "urn:ietf:params:xml:ns:xmpp-tls")),
                 E("bind", "urn:ietf:params:xml:ns:xmpp-bind"))
    assert serialize(features) == (
        "<features xmlns='http://etherx.jabber.org/streams'>"
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
        "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></features>"
    )
    out = serialize(features, prefixes={STREAMS: "stream"})
    assert out == (
        "<stream:features>"
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
        "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
    )
    # A jabber:client child of a prefixed element still inherits jabber:client.
    err = E("error", STREAMS, None, E("text", C, None, "x"))
    assert serialize(err, prefixes={STREAMS: "stream"}) == (
        "<stream:error><text>x</text></stream:error>"
    )
    assert parse_one(out.encode()) == features


def test_to_bytes_is_utf8() -> None:
    el = E("body", C, None, "héllo ☺ \U0001f600")
    assert to_bytes(el) == "<body>héllo ☺ \U0001f600</body>".encode()
    assert to_bytes(el, "") == "<body xmlns='jabber:client'>héllo ☺ \U0001f600</body>".encode()


@pytest.mark.parametrize(
    "xml",
    [
        b"<message to='a@b' type='chat' id='1'><body>hi &amp; &lt;bye&gt;</body></message>",
        b"<iq type='get' id='x'><query xmlns='jabber:iq:roster' ver=''/></iq>",
        b"<presence xml:lang='en'><status>a\tb\r\nc</status><x xmlns='urn:a'><y/>t</x></presence>",
        b"<message><body>&#x1F600; &#233;</body><e:x xmlns:e='urn:e' e:attr='1'/></message>",
        b"<message a='&#9;&#10;&#13;&apos;&quot;'><![CDATA[<not a tag> & stuff]]></message>",
    ],
)
def test_round_trip_parse_serialize_parse(xml: bytes) -> None:
    first = parse_one(xml)
    again = parse_one(to_bytes(first))
    assert again == first
    assert to_bytes(again) == to_bytes(first)
