"""Bookkeeping shared by the stream listeners (c2s, components): socket options, open
connections per IP, and what a shutdown waits for."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

C = TypeVar("C")


def tune_socket(transport: asyncio.BaseTransport | asyncio.StreamWriter) -> None:
    """TCP keepalive finds dead peers; no Nagle delay for small stanzas."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ConnectionTable(Generic[C]):
    """Open connections and their count per IP.

    Task-per-connection listeners use `run`; protocol-based ones `add` and `remove`, and
    `track` the few tasks a connection runs at its end so a shutdown can wait for them.
    """

    def __init__(self) -> None:
        self.connections: set[C] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.per_ip: Counter[str] = Counter()
        self._empty: asyncio.Future[None] | None = None

    def add(self, conn: C, ip: str) -> None:
        self.per_ip[ip] += 1
        self.connections.add(conn)

    def remove(self, conn: C, ip: str) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]
        if not self.connections and self._empty is not None and not self._empty.done():
            self._empty.set_result(None)

    def track(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def wait_empty(self, timeout: float) -> bool:
        """Wait until every connection is removed; False if some are left after `timeout`."""
        if not self.connections:
            return True
        self._empty = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._empty), timeout)
        return not self.connections

    async def run(self, conn: C, ip: str, serve: Callable[[], Awaitable[None]]) -> None:
        """Count `conn` as open from `ip` while `serve()` runs."""
        self.add(conn, ip)
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            await serve()
        finally:
            if task is not None:
                self.tasks.discard(task)
            self.remove(conn, ip)
