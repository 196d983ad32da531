"""Stream errors on the wire (RFC 6120 §4.9, §11): the exact condition element in
urn:ietf:params:xml:ns:xmpp-streams, then </stream:stream>, then the TCP connection closed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from blether.xml.element import Element
from integration.harness import ServerProcess
from integration.rawclient import (
    NO_FEDERATION,
    STREAMS,
    RawClient,
    RawClients,
    header,
    running_server,
)

OK_HEADER = header("localhost")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(Path(tmp_path_factory.mktemp("srv")), NO_FEDERATION) as proc:
        yield proc


@pytest.fixture
async def raw(server: ServerProcess) -> AsyncIterator[RawClients]:
    clients = RawClients(server)
    yield clients
    await clients.close()


async def error_for(raw: RawClients, data: bytes) -> str:
    c = await raw.connect()
    await c.send(data)
    return await c.stream_error()


@pytest.mark.parametrize(("data", "expected"), [
    # RFC 6120 §4.8.1, §4.8.2, §4.8.5, §4.7.5, §4.9.3.6
    (header(stream_ns="http://example.com/streams"), "invalid-namespace"),
    (header(xmlns="jabber:server"), "invalid-namespace"),
    (header(xmlns="urn:example:nothing"), "invalid-namespace"),
    (header(prefix="foo"), "bad-namespace-prefix"),
    (header(prefix=""), "bad-namespace-prefix"),
    (header(version="2.0"), "unsupported-version"),
    (header(version=None), "unsupported-version"),
    (header(to="example.net"), "host-unknown"),
    (header(to=None), "host-unknown"),
    # §11.1 restricted XML, before and in the header
    (b"<!-- hello -->" + OK_HEADER, "restricted-xml"),
    (b"<?xml version='1.0'?><?pi data?>" + header(decl=False), "restricted-xml"),
    (b"<?xml version='1.0'?><!DOCTYPE stream:stream>" + header(decl=False), "restricted-xml"),
    (b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 "
     b"'&lol;&lol;&lol;&lol;'>]>" + header(decl=False), "restricted-xml"),
    # §11.8 XML 1.0 only; §11.6 UTF-8 only
    (b"<?xml version='1.1'?>" + header(decl=False), "restricted-xml"),
    (b"<?xml version='1.0' encoding='ISO-8859-1'?>" + header(decl=False),
     "unsupported-encoding"),
    (b"<?xml version='1.0' encoding='UTF-16'?>" + header(decl=False), "unsupported-encoding"),
    (b"\xff\xfe<\x00s\x00", "unsupported-encoding"),
    # §11.3 not well-formed (the server answers with its own header first, §4.9.1.2)
    (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "not-well-formed"),
    (b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='localhost' "
     b"to='localhost' version='1.0' xmlns='jabber:client'>", "not-well-formed"),
])
async def test_header_stage_errors(raw: RawClients, data: bytes, expected: str) -> None:
    assert await error_for(raw, data) == expected


@pytest.mark.parametrize(("data", "expected"), [
    (b"<message><body>unclosed</message>", "not-well-formed"),
    (b"<message to='a' to='b'/>", "not-well-formed"),
    (b"<message>\x00</message>", "not-well-formed"),
    (b"<message><body>&#0;</body></message>", "not-well-formed"),
    (b"<!-- a comment -->", "restricted-xml"),
    (b"<?pi?>", "restricted-xml"),
    (b"<message><body>&nbsp;</body></message>", "restricted-xml"),
    (b"<message><body>\xc3\x28</body></message>", "unsupported-encoding"),
    (b"<message><body>\xed\xa0\x80</body></message>", "unsupported-encoding"),  # surrogate
    (b"<message><body>\xc0\xaf</body></message>", "unsupported-encoding"),      # overlong
    (b"<x:message/>", "bad-namespace-prefix"),
    (b"hello", "bad-format"),
])
async def test_errors_after_the_header(raw: RawClients, data: bytes, expected: str) -> None:
    c = await raw.connect()
    await c.open_stream()
    await c.send(data)
    assert await c.stream_error() == expected


async def test_oversized_stanza_before_auth_keeps_the_server_serving(
        server: ServerProcess, raw: RawClients) -> None:
    # SECURITY.md point 5: 8 KiB before authentication, policy-violation above it.
    [jid] = server.new_users(1)
    bystander = await raw.login(jid)
    c = await raw.secured()
    big = b"<iq type='get' id='big'><query xmlns='jabber:iq:register'>" + b"x" * 9000 + \
        b"</query></iq>"
    start = time.monotonic()
    await c.send(big)
    assert await c.stream_error() == "policy-violation"
    assert time.monotonic() - start < 2.0
    assert await bystander.ping() < 0.1


async def test_stanza_just_under_the_pre_auth_limit_is_fine(raw: RawClients) -> None:
    c = await raw.secured()
    stanza = b"<iq type='get' id='fits'><query xmlns='urn:example:nothing'>" + b"x" * 8000 + \
        b"</query></iq>"
    assert len(stanza) < 8192
    await c.send(stanza)
    reply = await c.element()
    assert reply.attrs["id"] == "fits" and reply.attrs["type"] == "error"


async def test_oversized_stanza_after_auth(server: ServerProcess, raw: RawClients) -> None:
    [jid] = server.new_users(1)
    c = await raw.login(jid)
    await c.send(b"<message to='" + jid.encode() + b"'><body>" + b"x" * 100_000 +
                 b"</body></message>")  # well under 256 KiB: fine
    await c.ping()
    await c.send(b"<message><body>" + b"x" * 270_000 + b"</body></message>")
    assert await c.stream_error() == "policy-violation"


@pytest.mark.parametrize("element", [
    "<foo/>",
    "<message xmlns='urn:example:other'/>",
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>",
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    "<stream:features/>",
])
async def test_non_stanza_after_bind_is_unsupported_stanza_type(
        server: ServerProcess, raw: RawClients, element: str) -> None:
    [jid] = server.new_users(1)
    c = await raw.login(jid)
    await c.send(element)
    assert await c.stream_error() == "unsupported-stanza-type"


async def test_stanzas_before_bad_bytes_are_processed_first(server: ServerProcess,
                                                             raw: RawClients) -> None:
    # RFC 6120 §10.1: in order — the ping was complete before the comment began.
    [jid] = server.new_users(1)
    c = await raw.login(jid)
    await c.send("<iq type='get' id='first' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
                 "<!-- then this -->")
    reply = await c.element()
    assert (reply.attrs["id"], reply.attrs["type"]) == ("first", "result")
    assert await c.stream_error() == "restricted-xml"


async def test_error_after_tls_restart_uses_the_new_stream(raw: RawClients) -> None:
    c = await raw.connect()
    await c.open_stream()
    await c.starttls()
    await c.send("<!-- x -->")
    assert await c.stream_error() == "restricted-xml"


async def test_error_text_is_present_and_in_the_streams_namespace(raw: RawClients) -> None:
    c = await raw.connect()
    await c.send(header("example.net"))
    while True:
        ev = await c.next()
        if isinstance(ev, Element) and ev.name == "error":
            break
    assert ev.xmlns == STREAMS
    text = ev.find("text", "urn:ietf:params:xml:ns:xmpp-streams")
    assert text is not None and text.text


async def test_nothing_processed_after_the_error(server: ServerProcess,
                                                 raw: RawClients) -> None:
    # §4.9.1.1: after the error the stream is gone, even if more bytes were sent with it.
    [jid] = server.new_users(1)
    watcher = await raw.login(jid, resource="watcher")
    c: RawClient = await raw.login(jid, resource="sender")
    await c.send(f"<!-- x --><message to='{jid}/watcher'><body>late</body></message>")
    assert await c.stream_error() == "restricted-xml"
    await watcher.silence(0.3)
