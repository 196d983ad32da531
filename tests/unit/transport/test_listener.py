"""C2SListener bookkeeping without sockets: per-IP admission and the idle sweep."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

from blether.config import load_config
from blether.transport.listener import C2SListener


class Conn:
    def __init__(self, ip: str = "192.0.2.1") -> None:
        self.ip = ip
        self.compacted = 0

    def compact(self) -> None:
        self.compacted += 1


def listener(**limits: Any) -> C2SListener:
    cfg = load_config(None, {f"limits.{k}": v for k, v in limits.items()})
    return C2SListener(SimpleNamespace(config=cfg), None)  # type: ignore[arg-type]


async def test_connections_per_ip_are_capped_and_counted_until_forgotten() -> None:
    lst = listener(connections_per_ip=2, connection_rate_per_ip=0)
    a, b, c = Conn(), Conn(), Conn()
    assert lst.admit(a) is None and lst.admit(b) is None  # type: ignore[arg-type]
    assert lst.admit(c) == "2 connections already open"  # type: ignore[arg-type]
    assert lst.admit(Conn("192.0.2.2")) is None  # type: ignore[arg-type]
    lst.forget(a)  # type: ignore[arg-type]
    lst.forget(a)  # type: ignore[arg-type]  # once only
    assert lst.per_ip["192.0.2.1"] == 1
    assert lst.admit(c) is None  # type: ignore[arg-type]


async def test_connection_rate_per_ip() -> None:
    lst = listener(connections_per_ip=100, connection_rate_per_ip=2)
    results = [lst.admit(Conn()) for _ in range(3)]  # type: ignore[arg-type]
    assert results[:2] == [None, None]
    assert results[2] == "more than 2 new connections per second"


async def test_the_sweep_compacts_connections_that_went_quiet() -> None:
    lst = listener()
    chatty, quiet, silent = Conn(), Conn(), Conn()
    active: set[Any] = lst.active  # Conn stands in for C2SConnection
    active.update({chatty, quiet})
    lst._sweep()  # first interval: both spoke
    assert chatty.compacted == quiet.compacted == 0
    lst.active.add(chatty)  # type: ignore[arg-type]
    lst._sweep()  # quiet said nothing for a whole interval
    assert (chatty.compacted, quiet.compacted, silent.compacted) == (0, 1, 0)
    lst._sweep()  # compacted once, not again while it stays quiet
    assert quiet.compacted == 1 and chatty.compacted == 1
    lst.stop_accepting()


async def test_accepted_sockets_have_keepalive_and_no_nagle() -> None:
    cfg = load_config(None, {"c2s.bind": ["127.0.0.1"], "c2s.port": 0, "c2s.tls_port": None})
    lst = C2SListener(SimpleNamespace(config=cfg, hosts=frozenset({"localhost"})),
                      None)  # type: ignore[arg-type]
    await lst.start()
    try:
        _host, port, _kind = lst.addresses[0]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if lst.connections:
                break
            await asyncio.sleep(0.01)
        [conn] = lst.connections
        sock = conn.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        writer.close()
    finally:
        await lst.shutdown(timeout=1.0)
