"""Batched, bounded output for a stream connection (DESIGN.md §1.5 and §5).

Everything queued during one event-loop turn goes out in a single `transport.write`, and a peer
that stops reading is disconnected once `limit` bytes wait in the transport's buffer, instead
of growing the server's memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class WriteTarget(Protocol):
    """What output is written to: an asyncio transport, or the TLS layer over one."""

    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...

    def abort(self) -> None: ...


class BatchedOutput:
    """`target` is a transport-like object, or a StreamWriter whose current transport is used
    (it changes when a StreamWriter starts TLS)."""

    __slots__ = ("_loop", "_out", "_scheduled", "_writer", "closing", "label", "limit",
                 "overflowed", "peer", "target")

    def __init__(self, target: asyncio.StreamWriter | WriteTarget, limit: int,
                 label: Callable[[], str], peer: str = "client") -> None:
        self._writer = target if isinstance(target, asyncio.StreamWriter) else None
        self.target: WriteTarget | None = None if self._writer is not None \
            else target  # type: ignore[assignment]
        self.peer = peer
        self.limit = limit
        self.label = label
        self.closing = False        # once set, only the closing tag may still be written
        self.overflowed = False
        self._out: list[bytes] | None = None  # made at the first write (idle streams: none)
        self._scheduled = False
        self._loop = asyncio.get_running_loop()

    @property
    def transport(self) -> WriteTarget:
        if self._writer is not None:
            return self._writer.transport
        assert self.target is not None
        return self.target

    def write(self, data: bytes) -> None:
        if self.closing and not data.endswith(b"</stream:stream>"):
            return
        out = self._out
        if out is None:
            out = self._out = []
        out.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def write_now(self, data: bytes) -> None:
        """Write at once, after what is queued (the order matters before a TLS upgrade)."""
        self.flush()
        self.transport.write(data)

    def flush(self) -> None:
        self._scheduled = False
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(data)
        queued = transport.get_write_buffer_size()
        if queued > self.limit:
            log.warning("%s %s is not reading (%d bytes queued); disconnecting",
                        self.label(), self.peer, queued)
            self.overflowed = True
            transport.abort()

    def release(self) -> None:
        """Drop the (empty) batch list of a quiet stream."""
        if not self._out and not self._scheduled:
            self._out = None
