"""Test doubles for the transport layer: a transport that records, a listener without sockets."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from blether.xml.parser import ParserLimits


class FakeTransport:
    """Enough of an asyncio transport for the protocol, output and TLS layers."""

    def __init__(self, peer: tuple[str, int] = ("192.0.2.1", 40000)) -> None:
        self.peer = peer
        self.written: list[bytes] = []
        self.closing = False
        self.aborted = False
        self.reading = True
        self.buffered = 0  # what get_write_buffer_size reports
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def write(self, data: bytes) -> None:
        assert not self.closing, "write after close"
        self.written.append(bytes(data))

    def data(self) -> bytes:
        out = b"".join(self.written)
        self.written.clear()
        return out

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def pause_reading(self) -> None:
        assert self.reading
        self.reading = False

    def resume_reading(self) -> None:
        assert not self.reading
        self.reading = True

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            if self.protocol is not None:
                asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()


def limits(**overrides: Any) -> SimpleNamespace:
    values: dict[str, Any] = {
        "outbound_buffer_bytes": 1 << 20, "negotiation_timeout": 60.0,
        "tls_handshake_timeout": 30.0, "c2s_read_rate": 0,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


class FakeListener:
    """What StreamProtocol uses of C2SListener."""

    def __init__(self, **limit_overrides: Any) -> None:
        self.s = SimpleNamespace(config=SimpleNamespace(limits=limits(**limit_overrides)))
        self.loop = asyncio.get_running_loop()
        self.active: set[Any] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.forgotten: list[Any] = []
        self.pre_auth_limits = ParserLimits()

    def track(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def forget(self, conn: Any) -> None:
        self.forgotten.append(conn)


async def until(predicate: Any, timeout: float = 5.0) -> None:
    """Let the loop run until `predicate()` holds (fails the test after `timeout`)."""
    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(wait(), timeout)
