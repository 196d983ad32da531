"""TCP listeners for c2s (STARTTLS port and XEP-0368 direct TLS port) with per-IP caps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from blether.errors import StreamError
from blether.transport.accept import ConnectionTable, tune_socket
from blether.transport.c2s import C2SConnection

if TYPE_CHECKING:
    from blether.core.services import Services
    from blether.transport.tls import TLSManager

log = logging.getLogger(__name__)


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

    async def start(self) -> None:
        cfg = self.s.config.c2s
        for host in cfg.bind:
            server = await asyncio.start_server(self._plain, host, cfg.port, reuse_address=True)
            self.servers.append(server)
            self.addresses += [(str(s.getsockname()[0]), int(s.getsockname()[1]), "starttls")
                               for s in server.sockets]
            if cfg.tls_port is not None:
                tls_server = await asyncio.start_server(
                    self._direct_tls, host, cfg.tls_port, ssl=self.tls.client_context,
                    ssl_handshake_timeout=self.s.config.limits.tls_handshake_timeout,
                    reuse_address=True)
                self.servers.append(tls_server)
                self.addresses += [(str(s.getsockname()[0]), int(s.getsockname()[1]),
                                    "direct-tls") for s in tls_server.sockets]

    async def _plain(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, direct_tls=False)

    async def _direct_tls(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, direct_tls=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                     direct_tls: bool) -> None:
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if peer else ""
        tune_socket(writer)
        conn = C2SConnection(self.s, self.tls, reader, writer, direct_tls=direct_tls)
        limits = self.s.config.limits
        refusal = None
        if self.per_ip[ip] >= limits.connections_per_ip:
            refusal = f"{self.per_ip[ip]} connections already open"
        elif not self._rate_ok(ip, limits.connection_rate_per_ip):
            refusal = f"more than {limits.connection_rate_per_ip:g} new connections per second"
        if refusal is not None:
            log.warning("refusing connection from %s: %s", ip, refusal)
            conn.write(conn.stream.error(StreamError("policy-violation",
                                                     "too many connections from your address")))
            conn._flush()
            writer.close()
            return
        await self.table.run(conn, ip, conn.run)

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

    def stop_accepting(self) -> None:
        for server in self.servers:
            server.close()

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
        if self.tasks:
            _done, pending = await asyncio.wait(list(self.tasks), timeout=timeout)
            if pending:
                # Clients that neither read nor close: drop them so their tasks finish their
                # own cleanup normally instead of being cancelled in the middle of it.
                for conn in list(self.connections):
                    conn.abort()
                _done, pending = await asyncio.wait(pending, timeout=1.0)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        for server in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
