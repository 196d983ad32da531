"""The I/O side of a c2s stream (RFC 6120 §4-§5): one `asyncio.Protocol` per connection.

Bytes arrive in `data_received` (through the TLS layer once TLS is on), go to the sans-IO
`XMPPStream`, and the events are handled in order by `handle` (C2SConnection). Handling may
wait (storage, hooks), so it runs in a task, but only while there is work: a quiet connection
has no task, no StreamReader/StreamWriter and, once the listener's sweep finds it idle, no
expat parser (docs/performance.md, "Idle memory"). Reads that arrive while a handler waits are
kept, in order, and reading pauses until they are handled (TCP back-pressure; RFC 6120 §10.1
order: a stanza's storage work is done before the next one is read).

Limits (docs/security.md): the read-rate shaper pauses reading (nothing is dropped); output
is batched and bounded (`BatchedOutput`); the negotiation and TLS handshake timeouts are
timers that exist only until the stream is bound / the handshake is done.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
import time
from typing import TYPE_CHECKING

from blether.errors import StreamError
from blether.stream.connection import StreamEvent, XMPPStream
from blether.transport.accept import tune_socket
from blether.transport.output import BatchedOutput
from blether.transport.tlsio import TLSLayer

if TYPE_CHECKING:
    from blether.transport.listener import C2SListener

log = logging.getLogger(__name__)

# Linux copies SO_KEEPALIVE from the listening socket (set by the listener) and uvloop sets
# TCP_NODELAY itself: no per-connection socket object is needed there.
_TUNE_EACH = sys.platform != "linux"


class ReadShaper:
    """Token bucket over bytes read: `rate` bytes/s sustained, bursts of 2 s (SECURITY.md)."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: int, burst_seconds: float = 2.0) -> None:
        self.rate = rate
        self.capacity = rate * burst_seconds
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def consume(self, n: int) -> float:
        """Account for `n` bytes; return how long to pause reading (0 if within the rate)."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class StreamProtocol(asyncio.Protocol):
    """Transport, TLS, shaping, timers, the handler task and the end of a connection.

    Subclasses provide `stream`, `handle`, `end_session`, `touched` and `tls_established`.
    """

    __slots__ = ("_backlog", "_deadline", "_done", "_eof", "_finished", "_lost", "_paused",
                 "_shaper", "_shaping", "_tls_timer", "_worker", "end_reason", "ip", "listener",
                 "out", "stream", "tls", "transport")

    stream: XMPPStream

    def __init__(self, listener: C2SListener) -> None:
        self.listener = listener
        self.ip = ""
        self.tls: TLSLayer | None = None
        self.end_reason = "dropped"  # given to SESSION_ENDED
        self._worker: asyncio.Task[None] | None = None
        self._backlog: list[bytes] | None = None  # reads waiting for the handler, in order
        self._paused = False
        rate = listener.s.config.limits.c2s_read_rate
        self._shaper = ReadShaper(rate) if rate > 0 else None
        self._shaping = False
        self._deadline: asyncio.TimerHandle | None = None
        self._tls_timer: asyncio.TimerHandle | None = None
        self._eof = False
        self._lost = False  # the transport is closed
        self._finished = False  # the cleanup started
        self._done = False  # ... and ended

    @property
    def worker(self) -> asyncio.Task[None] | None:
        """The task handling events, while there are some."""
        return self._worker

    # -- what the stanza layer provides ---------------------------------------------------
    async def handle(self, event: StreamEvent) -> bool:
        """Handle one event; True discards the rest of the read (a stream restart)."""
        raise NotImplementedError

    async def end_session(self, reason: str) -> None:
        raise NotImplementedError

    def touched(self) -> None:
        """Bytes arrived (before shaping)."""

    def tls_established(self) -> None:
        """The TLS handshake completed."""

    def timed_out(self) -> None:
        """The negotiation deadline passed."""

    @property
    def label(self) -> str:
        return f"[conn-{id(self):x} {self.ip}]"

    def _label(self) -> str:
        return self.label

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if peer else ""
        if _TUNE_EACH:
            tune_socket(transport)
        lim = self.listener.s.config.limits
        self.out = BatchedOutput(self.transport, lim.outbound_buffer_bytes, self._label)
        loop = self.listener.loop
        self._deadline = loop.call_later(lim.negotiation_timeout, self.timed_out)

    def data_received(self, data: bytes) -> None:
        tls = self.tls
        if tls is not None:
            was = tls.established
            try:
                data = tls.receive(data)
            except ssl.SSLError as exc:
                what = "TLS error" if tls.established else "TLS handshake failed"
                log.info("%s %s: %s", self.label, what, exc)
                self.abort()
                return
            if not was and tls.established:
                self._cancel_tls_timer()
                self.tls_established()
            if data:
                self._input(data)
            if tls.eof:  # close_notify: like a TCP FIN, after what came before it
                self.eof_received()
            return
        self._input(data)

    def _input(self, data: bytes) -> None:
        if self.out.closing:
            return
        self.touched()
        shaper = self._shaper
        if shaper is not None:
            pause = shaper.consume(len(data))
            if pause > 0:
                # Over the read rate: stop reading for a while (TCP back-pressure does the
                # rest). Nothing is dropped, unlike a shaper that discards (Prosody's
                # mod_limits behaves the same way).
                self._shaping = True
                self.listener.loop.call_later(pause, self._shaped)
                self._queue(data)
                return
        if self._worker is None and not self._shaping and not self._backlog:
            events = self._receive(data)
            if events:
                self._worker = self.listener.loop.create_task(self._work(events))
            return
        self._queue(data)

    def eof_received(self) -> bool:
        self._eof = True
        self._kick()
        return True  # the transport is closed by _cleanup, after the handler's output

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self._finished:
            log.info("%s connection lost: %s", self.label, exc)
        self._lost = True
        self.out.closing = True
        self._backlog = None
        if self._done:
            self.listener.forget(self)
        else:
            self._maybe_finish()

    # -- input ----------------------------------------------------------------------------
    def _receive(self, data: bytes) -> list[StreamEvent]:
        try:
            return self.stream.receive(data)
        except StreamError as exc:
            return [exc]

    def _queue(self, data: bytes) -> None:
        if self._backlog is None:
            self._backlog = []
        self._backlog.append(data)
        if not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def _shaped(self) -> None:
        self._shaping = False
        self._kick()

    def _kick(self) -> None:
        """Start handling queued reads if nothing runs; resume reading; finish when done."""
        if self._worker is not None or self._shaping:
            return
        backlog = self._backlog
        while backlog and not self.out.closing:
            events = self._receive(backlog.pop(0))
            if events:
                self._worker = self.listener.loop.create_task(self._work(events))
                return
        if self._paused and not self._lost:
            self._paused = False
            self.transport.resume_reading()
        if self.out.closing or self._eof or self._lost:
            self._maybe_finish()

    async def _work(self, events: list[StreamEvent]) -> None:
        """Handle events in order, then whatever was read meanwhile; then end (no task idle)."""
        try:
            while True:
                for event in events:
                    if await self.handle(event) or self.out.closing:
                        break  # RFC 6120 §5.4.3.3 / §6.4.6: the rest of the read is discarded
                backlog = self._backlog
                if not backlog or self._shaping or self.out.closing:
                    break
                events = self._receive(backlog.pop(0))
        except StreamError as exc:
            self.fail(exc)
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.info("%s connection lost: %s", self.label, exc)
            self.out.closing = True
        except Exception:
            log.exception("%s internal error; closing the stream", self.label)
            self.end_reason = "error"
            self.write(self.stream.error(StreamError("internal-server-error")))
            self.out.closing = True
            self.flush()
        finally:
            self._worker = None
            self._kick()

    def compact(self) -> None:
        """A quiet connection: drop what is only needed while bytes flow."""
        if self._worker is None and not self._backlog and not self._lost:
            self.stream.compact()
            self.out.release()
            self._backlog = None

    # -- output and closing ---------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.out.write(data)

    def flush(self) -> None:
        self.out.flush()
        if self.out.overflowed:
            self.end_reason = "slow-reader"

    def _write_now(self, data: bytes) -> None:
        """Write bypassing batching (before a TLS upgrade, the order must be exact)."""
        self.out.write_now(data)

    def fail(self, exc: StreamError) -> None:
        """A stream error (RFC 6120 §4.9): send it with the closing tag; the stream ends."""
        if self.out.closing:
            return
        log.info("%s stream error: %s", self.label, exc)
        self.end_reason = "error"
        self.write(self.stream.error(exc))
        self.out.closing = True
        self.flush()
        self._kick()

    def start_tls(self, context: ssl.SSLContext, timeout: float) -> None:
        """From now on every byte read goes through TLS (the handshake is the peer's move)."""
        self.tls = tls = TLSLayer(self.transport, context)
        self.out.target = tls
        self._tls_timer = self.listener.loop.call_later(timeout, self._tls_timeout)

    def _tls_timeout(self) -> None:
        self._tls_timer = None
        log.info("%s TLS handshake failed: timed out", self.label)
        self.abort()

    def _cancel_tls_timer(self) -> None:
        if self._tls_timer is not None:
            self._tls_timer.cancel()
            self._tls_timer = None

    def cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def abort(self) -> None:
        self.out.closing = True
        self.transport.abort()

    def close_transport(self) -> None:
        """Close once written (after close_notify on TLS); idempotent."""
        if self.transport.is_closing():
            return
        if self.tls is not None:
            self.tls.close()
        else:
            self.transport.close()

    def _maybe_finish(self) -> None:
        """Once the stream is over and no handler runs: end the session, close, forget."""
        if self._worker is not None or self._finished:
            return
        self._finished = True
        self.out.closing = True
        self.cancel_deadline()
        self._cancel_tls_timer()
        self.listener.track(self.listener.loop.create_task(self._cleanup()))

    async def _cleanup(self) -> None:
        try:
            await self.end_session(self.end_reason)
        finally:
            self.flush()
            self.close_transport()
            self._done = True
            if self._lost:  # else when the transport has closed (what is queued is written)
                self.listener.forget(self)
