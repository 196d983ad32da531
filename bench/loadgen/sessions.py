"""Opening many sessions at a bounded concurrency, spread over several loopback source addresses
(one address has ~28 000 ephemeral ports, net.ipv4.ip_local_port_range)."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.loadgen.xmpp import LoginError, Target, XMPPConnection, login

SESSIONS_PER_SOURCE = 25000


def source_addresses(count: int) -> list[str]:
    """Loopback source addresses for `count` connections: 127.0.0.1, 127.0.0.2, …"""
    needed = max(1, -(-count // SESSIONS_PER_SOURCE))
    return [f"127.0.0.{i + 1}" for i in range(needed)]


@dataclass
class LoginBatch:
    connections: list[XMPPConnection | None]
    durations_ns: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> list[XMPPConnection]:
        return [c for c in self.connections if c is not None]


async def login_many(target: Target, users: Sequence[str], password: str, *,
                     starttls: bool = False, concurrency: int = 50, roster: bool = True,
                     presence: bool = True, keep: bool = True,
                     after_login: Callable[[XMPPConnection], None] | None = None,
                     other: Callable[[XMPPConnection, ET.Element], None] | None = None,
                     timeout: float = 60.0) -> LoginBatch:
    """Log every user in (one session each). With `keep` False each session is closed right
    after its login completes (the login scenario); otherwise it is kept, handed to
    `after_login` (e.g. to switch it to a sink) and returned."""
    sources = source_addresses(len(users)) if keep else ["127.0.0.1"]
    batch = LoginBatch([None] * len(users))
    next_index = 0
    # Closing runs beside the next logins, as a client would not wait to see the server's
    # closing tag (ejabberd answers it only after ~100 ms); all closes end before we return.
    closing: list[asyncio.Task[None]] = []

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(users):
            i = next_index
            next_index += 1
            src = sources[i % len(sources)]
            t0 = time.perf_counter_ns()
            try:
                conn = await login(target, users[i], password, starttls=starttls,
                                   roster=roster, presence=presence, timeout=timeout,
                                   local_addr=(src, 0) if src != "127.0.0.1" else None,
                                   other=other)
            except (LoginError, OSError, TimeoutError) as exc:
                batch.failures.append(f"{users[i]}: {type(exc).__name__}: {exc}")
                continue
            batch.durations_ns.append(time.perf_counter_ns() - t0)
            if keep:
                batch.connections[i] = conn
                if after_login is not None:
                    after_login(conn)
            else:
                closing.append(asyncio.create_task(conn.close()))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(users)))))
    await asyncio.gather(*closing)
    return batch


async def close_all(conns: Sequence[XMPPConnection], concurrency: int = 200) -> None:
    """Close streams politely, a bounded number at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one(c: XMPPConnection) -> None:
        async with sem:
            await c.close(timeout=5.0)

    await asyncio.gather(*(one(c) for c in conns))
