"""Batched, bounded output for a stream connection (DESIGN.md §1.5 and §5).

Everything queued during one event-loop turn goes out in a single `transport.write`, and a peer
that stops reading is disconnected once `limit` bytes wait in the transport's buffer, instead
of growing the server's memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class BatchedOutput:
    def __init__(self, writer: asyncio.StreamWriter, limit: int,
                 label: Callable[[], str], peer: str = "client") -> None:
        self.writer = writer
        self.peer = peer
        self.limit = limit
        self.label = label
        self.closing = False        # once set, only the closing tag may still be written
        self.overflowed = False
        self._out: list[bytes] = []
        self._scheduled = False
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if self.closing and not data.endswith(b"</stream:stream>"):
            return
        self._out.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def write_now(self, data: bytes) -> None:
        """Write at once, after what is queued (the order matters before a TLS upgrade)."""
        self.flush()
        self.writer.transport.write(data)

    def flush(self) -> None:
        self._scheduled = False
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        transport = self.writer.transport
        if transport.is_closing():
            return
        transport.write(data)
        queued = transport.get_write_buffer_size()
        if queued > self.limit:
            log.warning("%s %s is not reading (%d bytes queued); disconnecting",
                        self.label(), self.peer, queued)
            self.overflowed = True
            transport.abort()
