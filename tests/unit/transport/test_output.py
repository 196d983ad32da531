"""BatchedOutput (DESIGN.md §1.5): one write per loop turn, bounded, closing tag last."""

from __future__ import annotations

import asyncio

from blether.transport.output import BatchedOutput
from unit.transport.fakes import FakeTransport


def output(transport: FakeTransport, limit: int = 1000) -> BatchedOutput:
    return BatchedOutput(transport, limit, lambda: "[test]")


async def test_writes_of_one_turn_go_out_in_one_transport_write() -> None:
    t = FakeTransport()
    out = output(t)
    out.write(b"<a/>")
    out.write(b"<b/>")
    assert t.written == []
    await asyncio.sleep(0)
    assert t.written == [b"<a/><b/>"]


async def test_closing_lets_only_the_closing_tag_through() -> None:
    t = FakeTransport()
    out = output(t)
    out.closing = True
    out.write(b"<message/>")
    out.write(b"<stream:error/></stream:stream>")
    out.flush()
    assert t.written == [b"<stream:error/></stream:stream>"]


async def test_a_peer_that_does_not_read_is_cut_off() -> None:
    t = FakeTransport()
    out = output(t, limit=10)
    t.buffered = 11
    out.write(b"<a/>")
    out.flush()
    assert out.overflowed and t.aborted


async def test_write_now_goes_after_what_is_queued() -> None:
    t = FakeTransport()
    out = output(t)
    out.write(b"<features/>")
    out.write_now(b"<proceed/>")
    assert t.written == [b"<features/>", b"<proceed/>"]


async def test_the_target_can_change_and_a_stream_writer_is_followed() -> None:
    t1, t2 = FakeTransport(), FakeTransport()
    out = output(t1)
    out.target = t2  # e.g. the TLS layer after STARTTLS
    out.write_now(b"x")
    assert t2.written == [b"x"] and t1.written == []

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    writer = asyncio.StreamWriter(t1, asyncio.StreamReaderProtocol(reader), reader, loop)
    out = BatchedOutput(writer, 1000, lambda: "[test]")
    out.write_now(b"y")
    assert t1.written == [b"y"]


async def test_release_drops_the_batch_list_of_a_quiet_stream() -> None:
    out = output(FakeTransport())
    out.write(b"<a/>")
    out.release()  # something is pending: kept
    assert out._out == [b"<a/>"]
    await asyncio.sleep(0)
    out.release()
    assert out._out is None
    out.write(b"<b/>")
    await asyncio.sleep(0)
