"""TCP listeners for c2s (STARTTLS port and XEP-0368 direct TLS port) with per-IP caps.

Each accepted connection is a `C2SConnection` protocol (no task while it is quiet). Every
`IDLE_SWEEP` seconds the connections that received bytes in the interval before but none in
the last one are compacted: their expat parser and buffers are dropped until they speak again
(docs/performance.md, "Idle memory").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, cast

from blether.errors import StreamError
from blether.transport.accept import ConnectionTable
from blether.transport.c2s import C2SConnection
from blether.xml.parser import ParserLimits

if TYPE_CHECKING:
    from blether.core.services import Services
    from blether.transport.protocol import StreamProtocol
    from blether.transport.tls import TLSManager

log = logging.getLogger(__name__)

IDLE_SWEEP = 0.25  # seconds; a connection is compacted after 0.25-0.5 s without bytes from it


class C2SListener:
    def __init__(self, services: Services, tls: TLSManager) -> None:
        self.s = services
        self.tls = tls
        self.servers: list[asyncio.Server] = []
        self.table: ConnectionTable[C2SConnection] = ConnectionTable()
        self.connections = self.table.connections
        self.tasks = self.table.tasks
        self.per_ip = self.table.per_ip
        self.addresses: list[tuple[str, int, str]] = []
        self._buckets: dict[str, tuple[float, float]] = {}
        lim = services.config.limits
        # Shared by every connection (they never change per connection).
        self.pre_auth_limits = ParserLimits(lim.pre_auth_stanza_bytes, lim.pre_auth_max_depth,
                                            lim.max_attributes, lim.pre_auth_max_elements,
                                            4096)
        self.post_auth_limits = ParserLimits(lim.c2s_stanza_bytes, lim.max_depth,
                                             lim.max_attributes, lim.max_elements, 4096)
        self.active: set[C2SConnection] = set()  # got bytes in this sweep interval
        self._recent: set[C2SConnection] = set()  # ... in the one before
        self._sweeper: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()

    async def start(self) -> None:
        cfg = self.s.config.c2s
        loop = self.loop
        for host in cfg.bind:
            server = await loop.create_server(lambda: C2SConnection(self, direct_tls=False),
                                              host, cfg.port, reuse_address=True)
            self.servers.append(server)
            self.addresses += [(str(s.getsockname()[0]), int(s.getsockname()[1]), "starttls")
                               for s in server.sockets]
            if cfg.tls_port is not None:
                tls_server = await loop.create_server(
                    lambda: C2SConnection(self, direct_tls=True), host, cfg.tls_port,
                    reuse_address=True)
                self.servers.append(tls_server)
                self.addresses += [(str(s.getsockname()[0]), int(s.getsockname()[1]),
                                    "direct-tls") for s in tls_server.sockets]
        for server in self.servers:  # inherited by accepted sockets (see protocol._TUNE_EACH)
            for sock in server.sockets:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._sweeper = loop.call_later(IDLE_SWEEP, self._sweep)

    # -- per connection -------------------------------------------------------------------
    def admit(self, conn: C2SConnection) -> str | None:
        """Count a new connection, or say why it is refused (it is then not counted)."""
        ip = conn.ip
        limits = self.s.config.limits
        if self.per_ip[ip] >= limits.connections_per_ip:
            return f"{self.per_ip[ip]} connections already open"
        if not self._rate_ok(ip, limits.connection_rate_per_ip):
            return f"more than {limits.connection_rate_per_ip:g} new connections per second"
        self.table.add(conn, ip)
        return None

    def forget(self, conn: StreamProtocol) -> None:
        self.table.remove(cast(C2SConnection, conn), conn.ip)

    def track(self, task: asyncio.Task[Any]) -> None:
        self.table.track(task)

    def _rate_ok(self, ip: str, rate: float) -> bool:
        """Token bucket per IP: `rate` new connections per second, bursts of `rate`."""
        if rate <= 0:
            return True
        now = time.monotonic()
        tokens, stamp = self._buckets.get(ip, (rate, now))
        tokens = min(rate, tokens + (now - stamp) * rate)
        if len(self._buckets) > 100000:  # forget addresses whose bucket is full again
            self._buckets = {k: v for k, v in self._buckets.items()
                             if v[0] + (now - v[1]) * rate < rate}
        if tokens < 1:
            self._buckets[ip] = (tokens, now)
            return False
        self._buckets[ip] = (tokens - 1, now)
        return True

    def _sweep(self) -> None:
        """Compact the connections that went quiet during the last interval."""
        for conn in self._recent - self.active:
            conn.compact()
        self._recent, self.active = self.active, set()
        self._sweeper = self.loop.call_later(IDLE_SWEEP, self._sweep)

    # -- stopping -------------------------------------------------------------------------
    def stop_accepting(self) -> None:
        for server in self.servers:
            server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def shutdown(self, timeout: float = 5.0) -> None:
        """RFC 6120 §4.9.3.22: end every session, then tell each client <system-shutdown/>.

        Sessions end first, while every stream is still open, so the unavailable presence
        the presence feature sends for each of them still reaches contacts on this server.
        """
        self.stop_accepting()
        conns = list(self.connections)
        for conn in conns:
            await conn.end_session("shutdown")
        for conn in conns:
            await conn.close(StreamError("system-shutdown", "Server is shutting down"))
        if not await self.table.wait_empty(timeout):
            # Clients that neither read nor close: drop them so their connections finish
            # their own cleanup normally instead of being cancelled in the middle of it.
            for conn in list(self.connections):
                conn.abort()
            if not await self.table.wait_empty(1.0):
                pending = [t for t in self.tasks if not t.done()]
                pending += [w for c in self.connections if (w := c.worker) is not None]
                for t in pending:
                    t.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
        if self.tasks:  # cleanups of connections that ended meanwhile
            await asyncio.wait(list(self.tasks), timeout=1.0)
        for server in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
