"""XMPPStream (RFC 6120 §4): header validation, restarts, and the bytes we write.

Each stream-level failure must carry the exact §4.9.3 condition: the parser's restricted-XML
verdicts (§11) and the header checks (§4.7, §4.8) both end up as a StreamError here.
"""

from __future__ import annotations

import re

import pytest

from blether import ns
from blether.errors import StreamError
from blether.stream.connection import StreamClosed, StreamOpened, XMPPStream
from blether.xml.element import Element
from blether.xml.parser import (
    PRE_AUTH,
    ElementParsed,
    ParserEvent,
    ParserLimits,
    StreamFooter,
    StreamHeader,
    XMLStreamParser,
)

HOSTS = frozenset({"localhost", "example.org"})
DECL = b"<?xml version='1.0'?>"


def head(to: str | None = "localhost", *, version: str | None = "1.0",
         content: str | None = "jabber:client", stream_ns: str = ns.STREAMS,
         prefix: str = "stream", lang: str | None = None) -> bytes:
    attrs = []
    if content is not None:
        attrs.append(f"xmlns='{content}'")
    attrs.append(f"xmlns:{prefix}='{stream_ns}'" if prefix else f"xmlns='{stream_ns}'")
    if to is not None:
        attrs.append(f"to='{to}'")
    if version is not None:
        attrs.append(f"version='{version}'")
    if lang is not None:
        attrs.append(f"xml:lang='{lang}'")
    name = f"{prefix}:stream" if prefix else "stream"
    return f"<{name} {' '.join(attrs)}>".encode()


def stream() -> XMPPStream:
    return XMPPStream(ns.CLIENT, HOSTS, PRE_AUTH)


def condition_of(data: bytes, s: XMPPStream | None = None) -> str:
    """The stream error `data` causes: raised (bad header) or as the last event (bad XML)."""
    s = s or stream()
    try:
        events = s.receive(data)
    except StreamError as exc:
        return exc.condition
    assert events and isinstance(events[-1], StreamError), f"no stream error: {events!r}"
    assert not any(isinstance(e, StreamError) for e in events[:-1])
    return events[-1].condition


def test_valid_header_opens_the_stream() -> None:
    s = stream()
    [ev] = s.receive(DECL + head("LocalHost", lang="fr"))
    assert ev == StreamOpened("localhost", None, "fr", "1.0")
    assert s.to == "localhost" and s.lang == "fr"


def test_header_from_is_reported() -> None:
    data = head().replace(b"to=", b"from='juliet@localhost' to=")
    [ev] = stream().receive(data)
    assert isinstance(ev, StreamOpened) and ev.from_ == "juliet@localhost"


def test_language_defaults_to_en() -> None:
    [ev] = stream().receive(head())
    assert isinstance(ev, StreamOpened) and ev.lang == "en"


def test_stanzas_and_close_are_events() -> None:
    s = stream()
    evs = s.receive(head() + b"<message to='a@localhost'><body>hi</body></message> \n"
                    b"</stream:stream>")
    assert isinstance(evs[0], StreamOpened)
    assert isinstance(evs[1], Element) and evs[1].name == "message"
    assert evs[1].xmlns == ns.CLIENT and evs[1].find_text("body") == "hi"
    assert isinstance(evs[2], StreamClosed)


@pytest.mark.parametrize(("data", "condition"), [
    # §4.8.1: the stream element must be {http://etherx.jabber.org/streams}stream
    (head(stream_ns="http://example.com/streams"), "invalid-namespace"),
    (head().replace(b"stream:stream", b"stream:strem"), "invalid-namespace"),
    # §4.8.2: the content namespace must be jabber:client on c2s
    (head(content="jabber:server"), "invalid-namespace"),
    (head(content="urn:example:bogus"), "invalid-namespace"),
    (head(content=None), "invalid-namespace"),
    # §4.8.5: the streams namespace must be bound to the 'stream' prefix
    (head(prefix="foo"), "bad-namespace-prefix"),
    (head(prefix="", content=None), "bad-namespace-prefix"),
    # §4.7.5: a major version above 1 (or none at all, i.e. pre-1.0) is not supported
    (head(version="2.0"), "unsupported-version"),
    (head(version=None), "unsupported-version"),
    (head(version="x.y"), "unsupported-version"),
    # §4.9.3.6: 'to' missing, not a domain, or a domain we do not serve
    (head(to=None), "host-unknown"),
    (head(to="example.net"), "host-unknown"),
    (head(to="not a domain"), "host-unknown"),
    (head(to="user@localhost"), "host-unknown"),
])
def test_header_conditions(data: bytes, condition: str) -> None:
    assert condition_of(DECL + data) == condition


def test_version_1_minor_above_zero_is_accepted() -> None:
    # RFC 6120 §4.7.5: minor versions are backward compatible.
    [ev] = stream().receive(head(version="1.1"))
    assert isinstance(ev, StreamOpened) and ev.version == "1.1"


@pytest.mark.parametrize(("data", "condition"), [
    # RFC 6120 §11.1: the parser's restricted-XML verdicts reach the stream as-is.
    (head() + b"<!-- a comment -->", "restricted-xml"),
    (head() + b"<?pi data?>", "restricted-xml"),
    (b"<!DOCTYPE x [<!ENTITY a 'b'>]>" + head(), "restricted-xml"),
    (head() + b"<message><body>&ent;</body></message>", "restricted-xml"),
    (b"<?xml version='1.1'?>" + head(), "restricted-xml"),
    # §11.6: UTF-8 only, declared or actual
    (b"<?xml version='1.0' encoding='ISO-8859-1'?>" + head(), "unsupported-encoding"),
    (head() + b"<message><body>\xff\xfe</body></message>", "unsupported-encoding"),
    # §11.3: not well-formed
    (head() + b"<message><body></message>", "not-well-formed"),
    (head() + b"<message a='1' a='2'/>", "not-well-formed"),
    # §11.2: unbound prefix
    (head() + b"<foo:message/>", "bad-namespace-prefix"),
    # §4.9.3.1 (well-formed, but text between stanzas)
    (head() + b"hello", "bad-format"),
])
def test_parser_conditions_become_stream_errors(data: bytes, condition: str) -> None:
    assert condition_of(data) == condition


def test_stanzas_before_bad_bytes_come_first() -> None:
    # RFC 6120 §10.1: what arrived intact before the bad bytes is processed, in order.
    events = stream().receive(head() + b"<presence/><!-- x -->")
    assert [type(e) for e in events] == [StreamOpened, Element, StreamError]
    assert isinstance(events[1], Element) and events[1].name == "presence"


def test_bad_header_raises_even_with_stanzas_after_it() -> None:
    with pytest.raises(StreamError) as info:
        stream().receive(head(to="example.net") + b"<presence/>")
    assert info.value.condition == "host-unknown"


def test_oversized_stanza_is_policy_violation() -> None:
    s = stream()
    s.receive(head())
    big = b"<message><body>" + b"x" * PRE_AUTH.max_stanza_bytes + b"</body></message>"
    assert condition_of(big, s) == "policy-violation"


def test_set_limits_raises_the_stanza_limit() -> None:
    s = stream()
    s.receive(head())
    s.set_limits(ParserLimits(100_000, 64, 64, 10_000, 4096))
    big = b"<message><body>" + b"x" * 50_000 + b"</body></message>"
    [el] = s.receive(big)
    assert isinstance(el, Element) and len(el.find_text("body") or "") == 50_000


def test_restart_expects_a_new_header() -> None:
    s = stream()
    s.receive(head())
    s.header()
    s.restart()
    assert not s.header_sent
    [ev] = s.receive(DECL + head("example.org"))
    assert isinstance(ev, StreamOpened) and ev.to == "example.org"


# -- output -------------------------------------------------------------------------------

def parse_output(data: bytes) -> list[ParserEvent]:
    p = XMLStreamParser(ParserLimits(1 << 20, 100, 100, 10_000, 4096))
    return p.feed(data)


def test_header_output() -> None:
    s = stream()
    s.receive(head(lang="de"))
    out = s.header()
    [h] = parse_output(out)
    assert isinstance(h, StreamHeader)
    assert (h.ns, h.prefix, h.name, h.content_ns) == (ns.STREAMS, "stream", "stream", ns.CLIENT)
    assert h.attrs["from"] == "localhost"
    assert h.attrs["version"] == "1.0"
    assert h.attrs["xml:lang"] == "de"
    assert h.attrs["id"] == s.stream_id
    assert "to" not in h.attrs
    assert out.startswith(b"<?xml version='1.0'?>")


def test_stream_ids_are_fresh_and_at_least_128_bits() -> None:
    s = stream()
    s.receive(head())
    ids = set()
    for _ in range(200):
        s.header()
        ids.add(s.stream_id)
        # RFC 6120 §4.7.3: unpredictable, ≥128 bits of randomness (hex: 32 digits)
        assert re.fullmatch(r"[0-9a-f]{32,}", s.stream_id)
    assert len(ids) == 200


def test_restart_gives_a_new_stream_id() -> None:
    s = stream()
    s.receive(head())
    s.header()
    first = s.stream_id
    s.restart()
    s.receive(head())
    s.header()
    assert s.stream_id != first


def test_header_escapes_attacker_controlled_language() -> None:
    s = stream()
    s.receive(head().replace(b">", b" xml:lang='&apos;&gt;&lt;x'>", 1))
    [h] = parse_output(s.header())
    assert isinstance(h, StreamHeader) and h.attrs["xml:lang"] == "'><x"


def test_features_output() -> None:
    s = stream()
    s.receive(head())
    out = s.header() + s.features([Element("starttls", ns.TLS, None,
                                           [Element("required", ns.TLS)])])
    assert out.endswith(b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                        b"<required/></starttls></stream:features>")
    _h, feats = parse_output(out)
    assert isinstance(feats, ElementParsed)
    assert feats.element.xmlns == ns.STREAMS and feats.element.name == "features"


def test_error_after_our_header() -> None:
    s = stream()
    s.receive(head())
    s.header()
    out = s.error(StreamError("not-authorized", "authenticate first"))
    assert out.startswith(b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:"
                          b"xmpp-streams'/>")
    assert out.endswith(b"</stream:error></stream:stream>")


def test_error_before_our_header_sends_a_header_first() -> None:
    # RFC 6120 §4.9.1.2: an error on a stream we have not answered yet needs our header.
    s = stream()
    with pytest.raises(StreamError) as info:
        s.receive(head(to="example.net"))
    assert not s.header_sent
    out = s.error(info.value)
    events = parse_output(out)
    assert isinstance(events[0], StreamHeader)
    assert isinstance(events[1], ElementParsed)
    err = events[1].element
    assert (err.name, err.xmlns) == ("error", ns.STREAMS)
    assert err.elements()[0].name == "host-unknown"
    assert err.elements()[0].xmlns == ns.STREAM_ERRORS
    assert isinstance(events[2], StreamFooter)


def test_error_text_is_escaped() -> None:
    s = stream()
    s.receive(head())
    s.header()
    out = s.error(StreamError("bad-format", "<evil>&"))
    err = parse_output(s.header() + out)[1]
    assert isinstance(err, ElementParsed)
    assert err.element.find_text("text", ns.STREAM_ERRORS) == "<evil>&"


def test_element_output_inherits_the_content_namespace() -> None:
    s = stream()
    msg = Element("message", ns.CLIENT, {"to": "a@localhost"},
                  [Element("body", ns.CLIENT, None, ["1 < 2"])])
    assert s.element(msg) == b"<message to='a@localhost'><body>1 &lt; 2</body></message>"
    assert s.footer() == b"</stream:stream>"
