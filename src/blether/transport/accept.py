"""Bookkeeping shared by the stream listeners (c2s, components): socket options, open
connections per IP, and the connection tasks a shutdown waits for."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

C = TypeVar("C")


def tune_socket(writer: asyncio.StreamWriter) -> None:
    """TCP keepalive finds dead peers; no Nagle delay for small stanzas."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ConnectionTable(Generic[C]):
    def __init__(self) -> None:
        self.connections: set[C] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.per_ip: Counter[str] = Counter()

    async def run(self, conn: C, ip: str, serve: Callable[[], Awaitable[None]]) -> None:
        """Count `conn` as open from `ip` while `serve()` runs."""
        self.per_ip[ip] += 1
        self.connections.add(conn)
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            await serve()
        finally:
            self.connections.discard(conn)
            if task is not None:
                self.tasks.discard(task)
            self.per_ip[ip] -= 1
            if self.per_ip[ip] <= 0:
                del self.per_ip[ip]
