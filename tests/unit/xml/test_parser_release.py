"""`XMLStreamParser.release()`: dropping the expat parser of a quiet stream changes nothing.

The parser is dropped between stanzas and rebuilt, primed with the root's namespace
declarations, at the next feed (docs/performance.md, "Idle memory"). Events, sizes, limits and
errors must be exactly those of a parser that was never released, whatever the read sizes.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blether.xml import parser as parser_module
from blether.xml.element import Element
from blether.xml.parser import (
    POST_AUTH_C2S,
    ElementParsed,
    ParserEvent,
    ParserLimits,
    PolicyViolation,
    XMLError,
    XMLStreamParser,
)

HEADER = (
    b"<?xml version='1.0'?><stream:stream to='example.com' version='1.0' xml:lang='en'"
    b" xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    b" xmlns:db='jabber:server:dialback' xmlns:odd='urn:x?a=1&amp;b=&apos;2&apos;&#9;'>"
)
BODY = (
    "\n <message to='ròmeo@example.net' type='chat' id='☺1'><body>héllo &amp; \U0001f600"
    "<![CDATA[ <cdata> ]]>wörld</body><x xmlns='urn:x' k='a&#10;b'><y/></x></message>\r\n"
    "<presence/>  <iq type='get' id='2'><ping xmlns='urn:xmpp:ping'/></iq >"
    "<db:result to='a' from='b'>key</db:result><odd:thing odd:attr='1'/>"
    "<iq type='a/>b'></iq\n><stream:features><e:x xmlns:e='urn:e' e:a='✓'>日本語</e:x>"
    "</stream:features>\t</stream:stream>"
).encode()
STREAM = HEADER + BODY


def parse(pieces: list[bytes], release: bool, limits: ParserLimits = POST_AUTH_C2S
          ) -> tuple[list[ParserEvent], str | None, int]:
    """Events, the error condition (if any) and how many times the parser was released."""
    p = XMLStreamParser(limits)
    events: list[ParserEvent] = []
    released = 0
    for piece in pieces:
        try:
            events += p.feed(piece)
        except XMLError as exc:
            return events + exc.events, exc.condition, released
        if release and p.release():
            released += 1
    return events, None, released


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def test_released_between_every_stanza_parses_the_same() -> None:
    pieces = [STREAM[i:i + 1] for i in range(len(STREAM))]
    kept = parse(pieces, release=False)
    got = parse(pieces, release=True)
    assert got[:2] == kept[:2]
    assert got[2] >= 8  # released after each stanza and whitespace, the prefixes re-declared
    assert [e.element.xmlns for e in got[0] if isinstance(e, ElementParsed)][3:5] == [
        "jabber:server:dialback", "urn:x?a=1&b='2'\t"]


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=40))
def test_any_split_with_releases_gives_the_same_events(cuts: list[int]) -> None:
    pieces = split_at(STREAM, cuts)
    assert parse(pieces, release=True)[:2] == parse(pieces, release=False)[:2]


def test_not_released_inside_a_stanza_or_a_partial_token() -> None:
    for tail in (b"<iq", b"<iq type='get'>", b"<iq/>&am", b"<iq/>]]", b"<iq/>\r",
                 b"<iq/>\xc3", b"<iq><q/"):
        p = XMLStreamParser(POST_AUTH_C2S)
        p.feed(HEADER + tail)
        assert not p.release(), tail


def test_a_partial_entity_before_a_quiet_period_is_still_an_error() -> None:
    # The bytes expat holds back decide the error; dropping them would accept the stream.
    pieces = [HEADER + b"<iq/>&amp", b"<iq/>"]
    assert parse(pieces, release=True)[1] == parse(pieces, release=False)[1] == \
        "not-well-formed"


@pytest.mark.parametrize("bad", [
    b"text", b"<!-- c -->", b"<iq><a></b></iq>", b"<iq xmlns:x=''/>", b"<u:iq/>",
    b"<?pi x?>", b"\xff", b"<iq>\x00</iq>", b"</stream:stream><x/>",
])
def test_errors_after_a_release_are_the_same(bad: bytes) -> None:
    pieces = [HEADER, b"<presence/>", b" ", bad]
    kept = parse(pieces, release=False)
    got = parse(pieces, release=True)
    assert got[2] >= 2
    assert got[:2] == kept[:2] and kept[1] is not None


def test_limits_count_the_same_after_a_release() -> None:
    fits = b"<iq id='1' type='get'><q xmlns='a'/></iq>"
    assert len(fits) == 41
    limits = ParserLimits(max_stanza_bytes=41)
    for stanza, error in ((fits, None), (fits[:-1] + b" >", "policy-violation")):
        pieces = [HEADER, b"  ", stanza[:10], stanza[10:]]
        kept = parse(pieces, release=False, limits=limits)
        got = parse(pieces, release=True, limits=limits)
        assert got[:2] == kept[:2] and got[1] == error
        if error is None:
            assert [e.size for e in got[0] if isinstance(e, ElementParsed)] == [41]


def test_release_keeps_no_stanza_or_read_alive() -> None:
    p = XMLStreamParser(POST_AUTH_C2S)
    p.feed(HEADER)
    [ev] = p.feed(b"<message><body>" + b"x" * 5000 + b"</body></message>")
    assert isinstance(ev, ElementParsed) and isinstance(ev.element, Element)
    assert p.release()
    assert p._p is None and p._chunk == b"" and p._events == []
    assert p.release()  # idempotent
    with pytest.raises(PolicyViolation):
        p.limits = ParserLimits(max_stanza_bytes=10)
        p.feed(b"<message>x</message>")


def test_shared_tables_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser_module, "_NAMES_MAX", 50)
    monkeypatch.setattr(parser_module, "_INTERN_MAX", 50)
    p = XMLStreamParser(POST_AUTH_C2S)
    p.feed(HEADER)
    for i in range(200):
        p.feed(f"<n{i} a{i}='1'/>".encode())
        assert len(parser_module._NAMES) <= 50
        if i % 2:
            assert p.release()
    assert len(parser_module._INTERN) <= 50 + 2  # never more than one read's names over
