"""StreamProtocol: the I/O side of a c2s stream, with a recording stanza layer.

Events are handled in order, one read after the other; reads that arrive while a handler waits
are queued and reading pauses (RFC 6120 §10.1 order, TCP back-pressure); no task exists while
the connection is quiet; the stream ends with the session ended first, then the transport.
"""

from __future__ import annotations

import asyncio
from typing import Any

from blether import ns
from blether.errors import StreamError
from blether.stream.connection import StreamClosed, StreamEvent, StreamOpened, XMPPStream
from blether.transport.protocol import StreamProtocol
from blether.xml.element import Element
from unit.transport.fakes import FakeListener, FakeTransport, until

HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
          b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")


class Recorder(StreamProtocol):
    """Records events; a stanza whose id is in `hold` waits until that future is done."""

    __slots__ = ("ended", "hold", "seen")

    def __init__(self, listener: Any) -> None:
        super().__init__(listener)
        self.stream = XMPPStream(ns.CLIENT, frozenset({"localhost"}), listener.pre_auth_limits)
        self.seen: list[str] = []
        self.hold: dict[str, asyncio.Future[None]] = {}
        self.ended: list[str] = []

    async def handle(self, event: StreamEvent) -> bool:
        if isinstance(event, StreamError):
            raise event
        if isinstance(event, StreamOpened):
            self.seen.append("open")
            self.write(self.stream.header())
            return False
        if isinstance(event, StreamClosed):
            self.seen.append("close")
            self.end_reason = "closed"
            self.write(self.stream.footer())
            self.out.closing = True
            return False
        assert isinstance(event, Element)
        ident = event.attrs.get("id", "")
        self.seen.append(ident)
        if ident in self.hold:
            await self.hold[ident]
        return ident.startswith("restart")

    async def end_session(self, reason: str) -> None:
        self.ended.append(reason)

    def timed_out(self) -> None:
        self.fail(StreamError("connection-timeout", "stream negotiation took too long"))


async def opened(**limits: Any) -> tuple[Recorder, FakeTransport, FakeListener]:
    listener = FakeListener(**limits)
    conn = Recorder(listener)
    t = FakeTransport()
    t.protocol = conn
    conn.connection_made(t)
    conn.data_received(HEADER)
    await until(lambda: conn.worker is None)
    return conn, t, listener


async def test_events_are_handled_in_order_and_no_task_stays() -> None:
    conn, t, _ = await opened()
    conn.data_received(b"<iq id='1'/><iq id='2'/>")
    conn.data_received(b"<iq id='3'/>")
    await until(lambda: conn.worker is None)
    assert conn.seen == ["open", "1", "2", "3"]
    conn.data_received(b"<iq id='4'")  # a partial stanza: nothing to do, no task
    assert conn.worker is None
    conn.data_received(b"/>")
    await until(lambda: conn.worker is None)
    assert conn.seen[-1] == "4" and t.reading


async def test_reads_wait_while_a_handler_waits_and_reading_pauses() -> None:
    conn, t, _ = await opened()
    gate = conn.hold["slow"] = asyncio.get_running_loop().create_future()
    conn.data_received(b"<iq id='slow'/><iq id='a'/>")
    await until(lambda: conn.seen[-1] == "slow")
    conn.data_received(b"<iq id='b'/>")
    conn.data_received(b"<iq id='c'/>")
    await asyncio.sleep(0.01)
    assert conn.seen[-1] == "slow" and not t.reading
    gate.set_result(None)
    await until(lambda: conn.worker is None)
    assert conn.seen[1:] == ["slow", "a", "b", "c"] and t.reading


async def test_a_restart_discards_the_rest_of_its_read_only() -> None:
    conn, _t, _ = await opened()
    gate = conn.hold["restart"] = asyncio.get_running_loop().create_future()
    conn.data_received(b"<iq id='restart'/><iq id='dropped'/>")
    await until(lambda: conn.seen[-1] == "restart")
    conn.data_received(b"<iq id='kept'/>")
    gate.set_result(None)
    await until(lambda: conn.worker is None)
    assert conn.seen[1:] == ["restart", "kept"]


async def test_over_the_read_rate_reading_pauses_and_nothing_is_lost() -> None:
    conn, t, _ = await opened(c2s_read_rate=100)  # bursts of 200 bytes
    stanzas = b"".join(b"<iq id='%d'/>" % i for i in range(30))  # 390 bytes
    conn.data_received(stanzas)
    assert not t.reading and conn.seen == ["open"]  # waits before handling the read
    await until(lambda: t.reading, timeout=10)
    await until(lambda: conn.worker is None)
    assert conn.seen[1:] == [str(i) for i in range(30)]


async def test_eof_ends_the_session_after_the_handler_then_closes() -> None:
    conn, t, listener = await opened()
    gate = conn.hold["x"] = asyncio.get_running_loop().create_future()
    conn.data_received(b"<iq id='x'/>")
    await until(lambda: conn.seen[-1] == "x")
    assert conn.eof_received() is True  # half-closed: the answers still go out
    assert conn.ended == [] and not t.closing
    gate.set_result(None)
    await until(lambda: t.closing and conn.ended == ["dropped"])
    await until(lambda: listener.forgotten == [conn])


async def test_a_stream_error_is_sent_then_the_stream_ends() -> None:
    conn, t, listener = await opened()
    t.data()
    conn.data_received(b"<iq id='1'/><!-- no comments -->")
    await until(lambda: t.closing)
    assert conn.seen[-1] == "1"
    out = t.data()
    assert b"<restricted-xml" in out and out.endswith(b"</stream:stream>")
    assert conn.ended == ["error"]
    await until(lambda: listener.forgotten == [conn])
    conn.data_received(b"<iq id='late'/>")  # after the end: ignored
    assert conn.seen[-1] == "1"


async def test_the_peer_closing_the_stream_closes_it() -> None:
    conn, t, _ = await opened()
    conn.data_received(b"</stream:stream>")
    await until(lambda: t.closing)
    assert conn.seen[-1] == "close" and t.data().endswith(b"</stream:stream>")
    assert conn.ended == ["closed"]


async def test_negotiation_timeout() -> None:
    listener = FakeListener(negotiation_timeout=0.01)
    conn = Recorder(listener)
    t = FakeTransport()
    t.protocol = conn
    conn.connection_made(t)
    await until(lambda: t.closing)
    assert b"<connection-timeout" in t.data()


async def test_connection_lost_ends_the_session_once() -> None:
    conn, t, listener = await opened()
    t.data()
    conn.connection_lost(ConnectionResetError())
    await until(lambda: listener.forgotten == [conn])
    conn.connection_lost(None)
    await asyncio.sleep(0)
    assert conn.ended == ["dropped"] and not t.written


async def test_compact_releases_the_parser_of_a_quiet_stream_only() -> None:
    conn, _t, _ = await opened()
    gate = conn.hold["busy"] = asyncio.get_running_loop().create_future()
    conn.data_received(b"<iq id='busy'/>")
    await until(lambda: conn.seen[-1] == "busy")
    conn.compact()
    assert conn.stream.parser._p is not None  # a handler runs: left alone
    gate.set_result(None)
    await until(lambda: conn.worker is None)
    conn.compact()
    assert conn.stream.parser._p is None
    conn.data_received(b"<iq id='after'/>")
    await until(lambda: conn.worker is None)
    assert conn.seen[-1] == "after"
