"""Property tests: split-invariance of the parser, serialize/parse round trips."""

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from blether.xml.element import Element, serialize, to_bytes
from blether.xml.parser import (
    POST_AUTH_C2S,
    ElementParsed,
    ParserEvent,
    StreamFooter,
    StreamHeader,
    XMLStreamParser,
)

C = "jabber:client"
HEADER = (
    "<?xml version='1.0' encoding='UTF-8'?><stream:stream to='example.com' version='1.0'"
    " xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)
STREAM = (
    HEADER
    + "\n <message to='ròmeo@example.net' type='chat' id='☺1'><body>héllo &amp; \U0001f600"
    "<![CDATA[ <cdata> ]]>wörld</body><x xmlns='urn:x' k='a&#10;b'><y/></x></message>\r\n"
    "<presence/>  <iq type='get' id='2'><ping xmlns='urn:xmpp:ping'/></iq >"
    "<r xmlns='urn:xmpp:sm:3'></r><a xmlns='urn:xmpp:sm:3' h='1'/><iq type='a/>b'></iq\n>"
    "<stream:features><e:x xmlns:e='urn:e' e:a='✓'>日本語</e:x></stream:features>"
    "\t</stream:stream>"
).encode()


def parse(pieces: list[bytes]) -> list[ParserEvent]:
    p = XMLStreamParser(POST_AUTH_C2S)
    events: list[ParserEvent] = []
    for piece in pieces:
        events += p.feed(piece)
    return events


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


REFERENCE = parse([STREAM])


def test_reference_stream_parses() -> None:
    kinds = [type(e) for e in REFERENCE]
    assert kinds == [StreamHeader, *[ElementParsed] * 7, StreamFooter]
    sizes = [e.size for e in REFERENCE if isinstance(e, ElementParsed)]
    tails = [b"<r xmlns='urn:xmpp:sm:3'></r>", b"<a xmlns='urn:xmpp:sm:3' h='1'/>",
             b"<iq type='a/>b'></iq\n>"]
    assert sizes[3:6] == [len(t) for t in tails]
    assert sizes[1] == len("<presence/>")


def test_one_byte_feeds_give_the_same_events() -> None:
    assert parse([STREAM[i:i + 1] for i in range(len(STREAM))]) == REFERENCE


def test_every_single_cut_gives_the_same_events() -> None:
    # Includes every cut inside a multi-byte UTF-8 character.
    for cut in range(1, len(STREAM)):
        assert parse([STREAM[:cut], STREAM[cut:]]) == REFERENCE, cut


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=40))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    assert parse(split_at(STREAM, cuts)) == REFERENCE


# -- generated trees ----------------------------------------------------------------------


def _xml_char(c: str) -> bool:
    o = ord(c)
    return o in (0x9, 0xA, 0xD) or 0x20 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD or o >= 0x10000


xml_chars = st.characters(min_codepoint=0x9, exclude_categories=["Cs"]).filter(_xml_char)
texts = st.text(xml_chars, min_size=1, max_size=20)
# Bias towards the characters that need escaping.
specials = st.sampled_from(["&", "<", ">", "'", '"', "\r", "\n", "\t", "]]>", "é", "\U0001f600"])
values = st.lists(st.one_of(texts, specials), max_size=6).map("".join)
names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_.\-]{0,6}", fullmatch=True).filter(
    lambda n: not n.lower().startswith("xml")
)
namespaces = st.sampled_from([C, C, "urn:a", "urn:b", "jabber:iq:roster", ""])
attr_keys = st.one_of(
    names,
    st.just("xml:lang"),
    st.builds(lambda ns, n: f"{{{ns}}}{n}", st.sampled_from(["urn:a", "urn:attr"]), names),
)
attr_dicts = st.dictionaries(attr_keys, values, max_size=4)


def _normalise(children: list[Element | str]) -> list[Element | str]:
    # The parser merges adjacent text and never produces empty strings.
    out: list[Element | str] = []
    for c in children:
        if isinstance(c, str):
            if not c:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += c
                continue
        out.append(c)
    return out


def _element(children: st.SearchStrategy[list[Element | str]]) -> st.SearchStrategy[Element]:
    return st.builds(
        lambda name, ns, attrs, kids: Element(name, ns, attrs, _normalise(kids)),
        names, namespaces, attr_dicts, children,
    )


leaves = _element(st.lists(values, max_size=1))
trees = st.recursive(
    leaves,
    lambda inner: _element(st.lists(st.one_of(inner, values), max_size=4)),
    max_leaves=12,
)


@settings(max_examples=300)
@given(trees)
def test_generated_trees_round_trip(tree: Element) -> None:
    events = parse([HEADER.encode(), to_bytes(tree)])
    assert events[1:] == [ElementParsed(tree, len(to_bytes(tree)))]


@given(trees, st.lists(st.integers(min_value=1, max_value=10_000), max_size=10))
def test_generated_trees_round_trip_under_any_split(tree: Element, cuts: list[int]) -> None:
    data = to_bytes(tree)
    cuts = [c % len(data) for c in cuts if c % len(data)]
    events = parse([HEADER.encode(), *split_at(data, cuts)])
    [ev] = events[1:]
    assert isinstance(ev, ElementParsed) and ev.element == tree
    assert serialize(ev.element) == serialize(tree)
