"""Fixtures for the adversarial corpus: one real server per module, fresh accounts, and the
guard every case runs under (SECURITY.md: afterwards a separate client that logged in before
the case still gets a ping answered quickly, and the server logged no traceback)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from integration.harness import ServerProcess
from integration.rawclient import NO_FEDERATION, RawClient, RawClients, running_server

# Many SASL failures come from 127.0.0.1 here: the per-IP ban is tested elsewhere
# (tests/integration/test_login.py::test_per_ip_ban).
CONFIG = "[limits]\nauth_failures_per_ip = 100000\n" + NO_FEDERATION
PING_BUDGET = 0.1  # seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(Path(tmp_path_factory.mktemp("adversarial")), CONFIG) as proc:
        yield proc


@pytest.fixture(scope="module")
def accounts(server: ServerProcess) -> dict[str, str]:
    sentinel, attacker, victim = server.new_users(3, prefix="adv")
    return {"sentinel": sentinel, "attacker": attacker, "victim": victim}


@pytest.fixture
async def raw(server: ServerProcess) -> AsyncIterator[RawClients]:
    clients = RawClients(server)
    yield clients
    await clients.close()


@pytest.fixture
async def sentinel(server: ServerProcess, accounts: dict[str, str],
                   raw: RawClients) -> AsyncIterator[RawClient]:
    """A bystander logged in before the case; after it, the server must still serve it."""
    log_before = len(server.log())
    client = await raw.login(accounts["sentinel"])
    await client.ping()
    yield client
    # The first ping after the case; the attacker's connection may still be closing.
    elapsed = await client.ping(timeout=2.0)
    assert elapsed < PING_BUDGET, f"ping took {elapsed * 1000:.0f} ms after the case"
    new_log = server.log()[log_before:]
    assert "Traceback" not in new_log, new_log[-5000:]
