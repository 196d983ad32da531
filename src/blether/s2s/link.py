"""One TCP (+TLS) connection carrying an s2s stream: bytes in → stream events, bytes out.

Shared by the incoming and outgoing drivers. Writes go straight to the transport (asyncio
buffers them); a peer that stops reading while we have more than `max_buffer` bytes queued is
disconnected (DESIGN.md §1.5: bounded, never growing without limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque

from blether import ns
from blether.errors import StreamError
from blether.s2s.stream import ServerStream
from blether.stream.connection import StreamClosed, StreamEvent, StreamOpened
from blether.xml.element import Element

log = logging.getLogger(__name__)


class ConnectionClosed(ConnectionError):
    """The peer closed the TCP connection."""


class PeerStreamError(Exception):
    """The peer sent <stream:error/>; `condition` is its defined condition."""

    def __init__(self, condition: str, text: str | None) -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition


def peer_error(el: Element) -> PeerStreamError:
    cond = next((c.name for c in el.elements()
                 if c.xmlns == ns.STREAM_ERRORS and c.name != "text"), "undefined-condition")
    return PeerStreamError(cond, el.find_text("text", ns.STREAM_ERRORS))


class Link:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 stream: ServerStream, max_buffer: int) -> None:
        self.reader = reader
        self.writer = writer
        self.stream = stream
        self.max_buffer = max_buffer
        self.events: deque[StreamEvent] = deque()
        self.closed = False
        peer = writer.get_extra_info("peername")
        self.ip = str(peer[0]) if peer else ""

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        obj = self.writer.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    @property
    def secure(self) -> bool:
        return self.ssl_object is not None

    # -- reading -------------------------------------------------------------------------
    async def fill(self, timeout: float | None) -> None:
        """Read once and parse. Raises TimeoutError, ConnectionClosed or StreamError."""
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not data:
            raise ConnectionClosed("the peer closed the connection")
        self.events.extend(self.stream.receive(data))

    async def next(self, timeout: float | None = None) -> StreamOpened | Element | StreamClosed:
        """The next event; a StreamError event (bad XML from the peer) is raised."""
        while not self.events:
            await self.fill(timeout)
        event = self.events.popleft()
        if isinstance(event, StreamError):
            raise event
        return event

    # -- writing -------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.closed:
            return
        transport = self.writer.transport
        if transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.max_buffer:
            log.warning("s2s peer %s is not reading (%d bytes queued); disconnecting", self.ip,
                        transport.get_write_buffer_size())
            self.abort()

    def send(self, el: Element) -> None:
        self.write(self.stream.element(el))

    async def start_tls(self, ctx: ssl.SSLContext, server_hostname: str | None,
                        timeout: float) -> None:
        # Anything buffered before the handshake must not be read as if it came through TLS
        # (RFC 6120 §5.4.3.3; the STARTTLS command-injection class).
        self.events.clear()
        self.reader._buffer.clear()  # type: ignore[attr-defined]
        # Awaited in this task, not through wait_for (which in 3.11 runs it in a new task):
        # start_tls pauses reading synchronously, so the peer's ClientHello cannot slip into
        # the plaintext reader in between (it did, under uvloop, and the handshake hung).
        await self.writer.start_tls(ctx, server_hostname=server_hostname,
                                    ssl_handshake_timeout=timeout)
        self.stream.restart()

    def abort(self) -> None:
        self.closed = True
        self.writer.transport.abort()

    async def close(self, data: bytes = b"", wait_for_peer: float = 0.0) -> None:
        """Write `data` (our closing tag or error), optionally wait for the peer to close its
        stream (RFC 6120 §4.4), then close TCP."""
        if self.closed:
            return
        if data:
            self.write(data)
        self.closed = True
        if wait_for_peer > 0:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain_until_closed(), wait_for_peer)
        with contextlib.suppress(Exception):
            self.writer.close()

    async def _drain_until_closed(self) -> None:
        while await self.reader.read(65536):
            pass
