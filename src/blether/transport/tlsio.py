"""TLS in memory for c2s streams (RFC 6120 §5 STARTTLS, XEP-0368 direct TLS).

An `ssl.SSLObject` over two `ssl.MemoryBIO`s, driven from the protocol's `data_received`, in
place of `loop.start_tls`: uvloop's SSLProtocol allocates a 256 KiB read buffer per connection
and the pages touched by the largest record stay resident (~34 KiB per idle session,
docs/performance.md). Here decrypted bytes are read into one buffer shared by every connection
(reads are synchronous, in the callback), and data goes through the BIOs in pieces of at most
`_PIECE` bytes: a memory BIO keeps the largest buffer it ever held, so the pieces bound what a
quiet connection keeps after a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import cast

log = logging.getLogger(__name__)

_PIECE = 2048
_READ = 65536
_BUF = bytearray(_READ)
_VIEW = memoryview(_BUF)


class TLSLayer:
    """Server-side TLS on `transport`; quacks like a transport for writing (BatchedOutput)."""

    __slots__ = ("_in", "_out", "_pending", "eof", "established", "obj", "transport")

    def __init__(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        self.transport = transport
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self._in, self._out, server_side=True)
        self.established = False
        self.eof = False  # the peer sent close_notify
        self._pending: list[bytes] | None = None  # written before the handshake completed

    # -- reading --------------------------------------------------------------------------
    def receive(self, data: bytes) -> bytes:
        """Bytes from the network in, application bytes out (b"" while handshaking).

        Raises ssl.SSLError when the handshake fails or a record is bad; what OpenSSL has to
        send (handshake records, an alert) is written to the transport either way.
        """
        obj, bio = self.obj, self._in
        plain: list[bytes] = []
        try:
            for start in range(0, len(data), _PIECE):
                bio.write(data[start:start + _PIECE] if len(data) > _PIECE else data)
                if not self.established:
                    try:
                        obj.do_handshake()
                    except ssl.SSLWantReadError:
                        continue
                    self.established = True
                while not self.eof:
                    try:
                        n = cast(int, obj.read(_READ, _BUF))  # into the buffer: a count
                    except ssl.SSLWantReadError:
                        break
                    if n == 0:  # close_notify
                        self.eof = True
                        break
                    plain.append(bytes(_VIEW[:n]))
                    if not bio.pending:
                        # OpenSSL reads one record at a time from the BIO (no read-ahead):
                        # with the BIO empty, another read could only say SSLWantReadError.
                        break
        finally:
            self._send_records()
        if self.established and self._pending:
            pending, self._pending = self._pending, None
            self.write(b"".join(pending))
        return plain[0] if len(plain) == 1 else b"".join(plain)

    def _send_records(self) -> None:
        if self._out.pending:
            out = self._out.read()
            if not self.transport.is_closing():
                self.transport.write(out)

    # -- writing (the BatchedOutput WriteTarget interface) -------------------------------
    def write(self, data: bytes) -> None:
        if not self.established:
            if self._pending is None:
                self._pending = []
            self._pending.append(data)
            return
        obj, bio = self.obj, self._out
        try:
            if len(data) <= _PIECE:
                obj.write(data)
                out = bio.read()
            else:
                records = []
                view = memoryview(data)
                for start in range(0, len(data), _PIECE):
                    obj.write(view[start:start + _PIECE])
                    records.append(bio.read())
                out = b"".join(records)
        except ssl.SSLError as exc:  # e.g. after our close_notify: nothing more can be sent
            log.info("TLS write failed: %s", exc)
            self.transport.abort()
            return
        self.transport.write(out)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size()

    def abort(self) -> None:
        self.transport.abort()

    def close(self) -> None:
        """close_notify (RFC 8446 §6.1), then close the TCP connection once it is written."""
        if self.transport.is_closing():
            return
        if self.established:
            with contextlib.suppress(ssl.SSLError, ValueError):
                self.obj.unwrap()
            self._send_records()
        self.transport.close()
