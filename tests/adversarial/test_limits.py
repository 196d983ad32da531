"""Resource limits that need their own server configuration (SECURITY.md table: per-IP
connection cap, pre-authentication timeout; RFC 6120 §4.9.3.4 connection-timeout)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from integration.harness import ServerProcess
from integration.rawclient import NO_FEDERATION, RawClient, RawClients, running_server

CONFIG = NO_FEDERATION + """
[limits]
connections_per_ip = 4
negotiation_timeout = 1.5
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(Path(tmp_path_factory.mktemp("limits")), CONFIG) as proc:
        yield proc


@pytest.fixture
async def raw(server: ServerProcess) -> AsyncIterator[RawClients]:
    clients = RawClients(server)
    yield clients
    await clients.close()


async def test_idle_unauthenticated_connection_times_out(raw: RawClients) -> None:
    c = await raw.connect()
    await c.open_stream()
    start = time.monotonic()
    assert await c.stream_error(timeout=5) == "connection-timeout"
    assert 1.0 < time.monotonic() - start < 4.0


async def test_slow_drip_does_not_extend_the_negotiation_deadline(raw: RawClients) -> None:
    # One byte every half second never completes a stanza: the deadline is absolute.
    c = await raw.connect()
    await c.open_stream()
    start = time.monotonic()
    for byte in b"<iq type='get' id='drip'>":
        if c.eof or c.events:
            break
        await c.send(bytes([byte]))
        await c._fill(0.5)
    assert await c.stream_error(timeout=5) == "connection-timeout"
    assert time.monotonic() - start < 4.0


async def test_bound_sessions_do_not_time_out(server: ServerProcess, raw: RawClients) -> None:
    [jid] = server.new_users(1)
    c = await raw.login(jid)
    await c.silence(2.0)
    await c.ping()


async def hold(raw: RawClients, n: int) -> list[RawClient]:
    """n open streams; retried while connections of earlier tests are still being released
    (the server counts a connection until its cleanup is done)."""
    for _ in range(20):
        held = [await raw.connect() for _ in range(n)]
        try:
            for c in held:
                await c.open_stream()
            return held
        except AssertionError:
            for c in held:
                await c.close()
            await asyncio.sleep(0.25)
    raise AssertionError(f"could not hold {n} connections")


async def test_connections_per_ip_are_capped(raw: RawClients) -> None:
    held = await hold(raw, 4)
    extra = await raw.connect()
    assert await extra.stream_error() == "policy-violation"
    await held[0].close()
    await held[0].closed(2.0)
    await asyncio.sleep(0.2)
    again = await raw.connect()
    await again.open_stream()  # a slot was freed
