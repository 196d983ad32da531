"""Fixtures: one real server per test module, clients that log in and clean up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.harness import Client, ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(Path(tmp_path_factory.mktemp("blether")))
    proc.start()
    yield proc
    code = proc.stop()
    log = proc.log()
    assert "Traceback" not in log, f"the server logged a traceback:\n{log[-5000:]}"
    assert code == 0, f"server exited with {code}:\n{log[-3000:]}"


@pytest.fixture
async def connect(server: ServerProcess) -> AsyncIterator[Any]:
    """`await connect(jid)` → a logged-in Client; all are disconnected after the test."""
    clients: list[Client] = []

    async def _connect(jid: str, password: str = "secret", *, direct_tls: bool = False,
                       resource: str | None = None, **kw: Any) -> Client:
        full = f"{jid}/{resource}" if resource else jid
        client = Client(full, password, **kw)
        clients.append(client)
        ok = await client.login(server, direct_tls=direct_tls)
        assert ok, f"{jid} could not log in"
        return client

    yield _connect
    for c in clients:
        await c.close()
