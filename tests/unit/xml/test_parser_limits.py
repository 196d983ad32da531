"""Parser limits (SECURITY.md points 2 and 5): counted outside expat, before feeding it."""

import time

import pytest

from blether.xml.parser import (
    POST_AUTH_C2S,
    POST_AUTH_S2S,
    PRE_AUTH,
    ElementParsed,
    ParserEvent,
    ParserLimits,
    PolicyViolation,
    StreamHeader,
    XMLStreamParser,
)

HEADER = (
    b"<stream:stream to='example.com' version='1.0' xmlns='jabber:client'"
    b" xmlns:stream='http://etherx.jabber.org/streams'>"
)


def opened(limits: ParserLimits = PRE_AUTH) -> XMLStreamParser:
    p = XMLStreamParser(limits)
    assert [type(e) for e in p.feed(HEADER)] == [StreamHeader]
    return p


def stanza_of_size(n: int) -> bytes:
    """A <message/> of exactly n bytes."""
    skeleton = b"<message><body></body></message>"
    return b"<message><body>" + b"x" * (n - len(skeleton)) + b"</body></message>"


def sized(events: list[ParserEvent]) -> list[int]:
    return [e.size for e in events if isinstance(e, ElementParsed)]


def test_presets() -> None:
    assert ParserLimits(8192, 16, 64, 32, 4096) == PRE_AUTH
    assert POST_AUTH_C2S.max_stanza_bytes == 262144 and POST_AUTH_C2S.max_elements == 10000
    assert POST_AUTH_S2S.max_stanza_bytes == 524288 and POST_AUTH_S2S.max_depth == 64


@pytest.mark.parametrize("chunk", [None, 1, 7, 512])
def test_stanza_exactly_at_limit_passes_and_one_more_byte_fails(chunk: int | None) -> None:
    ok, too_big = stanza_of_size(8192), stanza_of_size(8193)
    for data, fits in ((b" \n" + ok + b"\n", True), (too_big, False)):
        p = opened()
        step = chunk or len(data)
        pieces = [data[i:i + step] for i in range(0, len(data), step)]
        if fits:
            events: list[ParserEvent] = []
            for piece in pieces:
                events += p.feed(piece)
            assert sized(events) == [8192]
        else:
            with pytest.raises(PolicyViolation) as info:
                for piece in pieces:
                    p.feed(piece)
            assert info.value.limit == "stanza-too-big"
            assert info.value.condition == "policy-violation"


def test_many_stanzas_in_one_big_feed_are_fine() -> None:
    p = opened()
    one = stanza_of_size(8000)
    assert sized(p.feed((one + b"\n") * 50)) == [8000] * 50


def _attack(limits: ParserLimits, feed_size: int) -> tuple[int, float]:
    """Feed a 4 MiB attribute value in `feed_size` reads; return bytes accepted, seconds."""
    p = opened(limits)
    body = b"<message a='" + b"A" * (4 * 1024 * 1024) + b"'/>"
    fed = 0
    start = time.process_time()
    with pytest.raises(PolicyViolation) as info:
        for i in range(0, len(body), feed_size):
            piece = body[i:i + feed_size]
            p.feed(piece)
            fed += len(piece)
    assert info.value.limit == "stanza-too-big"
    return fed, time.process_time() - start


def test_huge_token_in_small_reads_is_cut_off_early() -> None:
    fed, seconds = _attack(PRE_AUTH, 512)
    assert fed <= PRE_AUTH.max_stanza_bytes + 512
    assert seconds < 1.0  # sanity only; unbounded this is ~10 s (SECURITY.md point 2)


def test_huge_token_post_auth_limit_is_still_cheap() -> None:
    fed, seconds = _attack(POST_AUTH_C2S, 512)
    assert fed <= POST_AUTH_C2S.max_stanza_bytes + 512
    assert seconds < 1.0


def test_huge_token_in_one_feed_never_reaches_expat_whole() -> None:
    p = opened()
    with pytest.raises(PolicyViolation):
        p.feed(b"<message a='" + b"A" * (4 * 1024 * 1024) + b"'/>")
    # White-box: expat was handed at most the limit's worth of the stanza.
    assert p._fed <= len(HEADER) + PRE_AUTH.max_stanza_bytes


def test_keepalives_do_not_accumulate() -> None:
    p = opened()
    for _ in range(3 * PRE_AUTH.max_stanza_bytes):
        assert p.feed(b" ") == []
    assert sized(p.feed(stanza_of_size(8192))) == [8192]
    assert p.feed(b"\n" * 20000) == []
    assert sized(p.feed(b"\n" * 20000 + stanza_of_size(8192))) == [8192]


def test_partial_tag_between_feeds_is_counted() -> None:
    p = opened()
    p.feed(b"   <message a='" + b"A" * 8000)
    with pytest.raises(PolicyViolation):
        p.feed(b"A" * 500)


def _nested(depth: int) -> bytes:
    return b"<message>" + b"<a>" * (depth - 1) + b"</a>" * (depth - 1) + b"</message>"


def test_depth_limit() -> None:
    assert len(opened().feed(_nested(16))) == 1
    with pytest.raises(PolicyViolation) as info:
        opened().feed(_nested(17))
    assert info.value.limit == "depth"


def _attrs(n: int, decls: int = 0) -> bytes:
    attrs = b"".join(b" a%d='v'" % i for i in range(n - decls))
    attrs += b"".join(b" xmlns:p%d='urn:p%d'" % (i, i) for i in range(decls))
    return b"<message" + attrs + b"/>"


def test_attribute_limit_counts_namespace_declarations() -> None:
    assert len(opened().feed(_attrs(64))) == 1
    assert len(opened().feed(_attrs(64, decls=10))) == 1
    for data in (_attrs(65), _attrs(65, decls=1), _attrs(65, decls=65)):
        with pytest.raises(PolicyViolation) as info:
            opened().feed(data)
        assert info.value.limit == "attributes"


def test_attribute_limit_on_nested_element_and_root() -> None:
    with pytest.raises(PolicyViolation):
        opened().feed(b"<message>" + _attrs(65)[:-2] + b"/></message>")
    root = b"<stream:stream" + b"".join(b" a%d='v'" % i for i in range(64)) + b" xmlns:stream='s'>"
    with pytest.raises(PolicyViolation) as info:
        XMLStreamParser().feed(root)
    assert info.value.limit == "attributes"


def test_element_limit() -> None:
    def stanza(n: int) -> bytes:
        return b"<message>" + b"<x/>" * (n - 1) + b"</message>"

    assert len(opened().feed(stanza(32))) == 1
    with pytest.raises(PolicyViolation) as info:
        opened().feed(stanza(33))
    assert info.value.limit == "elements"
    p = opened()
    for _ in range(5):  # the count is per stanza
        assert len(p.feed(stanza(32))) == 1


def test_header_limit() -> None:
    big = b"<stream:stream a='" + b"x" * 5000 + b"' xmlns:stream='http://etherx.jabber.org/streams'>"
    for pieces in ([big], [big[i:i + 100] for i in range(0, len(big), 100)]):
        p = XMLStreamParser()
        with pytest.raises(PolicyViolation) as info:
            for piece in pieces:
                p.feed(piece)
        assert info.value.limit == "header"
    with pytest.raises(PolicyViolation):  # whitespace before the header counts too
        XMLStreamParser().feed(b" " * 4096 + HEADER)
    exact = b"<s" + b" " * (4096 - 3) + b">"
    assert len(XMLStreamParser().feed(exact)) == 1


def test_raising_limits_mid_stream_takes_effect() -> None:
    big = stanza_of_size(20000)
    with pytest.raises(PolicyViolation):
        opened().feed(big)
    p = opened()
    p.limits = POST_AUTH_C2S
    assert sized(p.feed(big)) == [20000]
    # Raised while a stanza is half read: the rest is accepted under the new limit.
    p = opened()
    assert p.feed(big[:8000]) == []
    p.limits = POST_AUTH_C2S
    assert sized(p.feed(big[8000:])) == [20000]


def test_depth_and_elements_raised_after_auth() -> None:
    p = opened()
    p.limits = POST_AUTH_C2S
    assert len(p.feed(_nested(64))) == 1
    assert len(p.feed(b"<message>" + b"<x/>" * 5000 + b"</message>")) == 1


def test_reset_keeps_limits() -> None:
    p = opened()
    p.limits = POST_AUTH_C2S
    p.reset()
    p.feed(HEADER)
    assert sized(p.feed(stanza_of_size(20000))) == [20000]
