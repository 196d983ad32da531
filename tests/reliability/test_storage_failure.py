"""Storage failures are the sender's problem, never the whole server's (SECURITY.md
"Durability": a database error gets the sender `internal-server-error`, as ejabberd's
"Database failure"; XEP-0160: a message that could not be stored is bounced, not lost).

* SQLite on a full disk: the server's maximum file size (RLIMIT_FSIZE, set on the running
  process with prlimit; Python ignores SIGXFSZ, so writes fail with EFBIG just like ENOSPC)
  is pinned just above the database's size. Offline messages that no longer fit are
  bounced with `internal-server-error`; pings, online delivery and the rest go on; when space
  is back, storing works again, and every message that was not bounced is delivered.
* PostgreSQL gone: the server's database stops accepting connections and its sessions are
  terminated mid-run; same expectations, and recovery once it is back.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from integration.harness import ServerProcess
from integration.rawclient import RawClient, condition
from reliability.helpers import NO_FEDERATION, Clients, QuietServer, create_accounts


@pytest.fixture
def stopper() -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    yield servers
    for s in servers:
        s.stop()


async def offline_burst(c: RawClient, to: str, prefix: str, n: int, size: int
                        ) -> tuple[list[str], list[str]]:
    """Send `n` chat messages to an offline account; (stored ids, refused ids) by the replies
    that came back before a ping's answer (processing is in order, RFC 6120 §10.1)."""
    ids = [f"{prefix}{i}" for i in range(n)]
    for i in ids:
        await c.send(f"<message to='{to}' id='{i}' type='chat'><body>{i} {'y' * size}</body>"
                     f"</message>")
    ping_id = f"after-{prefix}"
    await c.send(f"<iq type='get' id='{ping_id}' to='localhost'><ping xmlns='urn:xmpp:ping'/>"
                 f"</iq>")
    refused = []
    while True:
        el = await c.element(timeout=30)
        if el.name == "iq" and el.attrs.get("id") == ping_id:
            break
        if el.name == "message" and el.attrs.get("type") == "error":
            assert el.find("error").attrs["type"] == "cancel"  # RFC 6120 §8.3.3.6  # type: ignore[union-attr]
            assert condition(el) == "internal-server-error", el
            refused.append(el.attrs["id"])
    return [i for i in ids if i not in refused], refused


async def check_server_still_serves(c: RawClient, peer: RawClient) -> None:
    assert await c.ping() < 1.0
    assert peer.jid is not None
    await c.send(f"<message to='{peer.jid}' id='live'><body>still here</body></message>")
    got = await peer.stanza(lambda e: e.name == "message" and e.attrs.get("id") == "live")
    assert got.find_text("body", "jabber:client") == "still here"


async def collect_offline(c: RawClient, expect: int) -> list[str]:
    await c.send("<presence/>")
    got: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (len(got) < expect or time.monotonic() < deadline - 9):
        try:
            el = await c.element(timeout=1)
        except AssertionError:
            continue
        if el.name == "message":
            got.append(el.attrs["id"])
    return got   # (waits at least a second, so a message too many would be seen)


async def test_sqlite_disk_full(tmp_path: Path, stopper: list[ServerProcess]) -> None:
    users = ["sender@localhost", "absent@localhost", "peer@localhost"]
    await create_accounts(tmp_path, users)
    server = QuietServer(tmp_path, config_text=NO_FEDERATION, pipe=True)
    stopper.append(server)
    server.start()
    assert server.proc is not None
    clients = Clients(server)
    try:
        c = await clients.login("sender@localhost")
        peer = await clients.login("peer@localhost")
        await peer.send("<presence/>")
        stored, refused = await offline_burst(c, "absent@localhost", "ok", 3, 1000)
        assert refused == []
        biggest = max(p.stat().st_size for p in tmp_path.glob("blether.db*"))
        limit = biggest + 1024 * 1024
        inf = resource.RLIM_INFINITY   # only the soft limit: raising it back needs no privilege
        resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (limit, inf))
        full_stored, full_refused = await offline_burst(c, "absent@localhost", "full", 40,
                                                        200_000)
        assert full_refused, "40 messages of 200 kB fitted into 1 MiB of file growth?"
        await check_server_still_serves(c, peer)
        assert server.proc.poll() is None
        resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (inf, inf))
        after, after_refused = await offline_burst(c, "absent@localhost", "again", 3, 1000)
        assert after_refused == [], "storage did not recover once space was back"
        r = await clients.login("absent@localhost")
        got = await collect_offline(r, len(stored + full_stored + after))
        assert got == stored + full_stored + after   # every accepted one, in order, once
        print(f"\ndisk full: {len(full_refused)} of 40 messages refused with "
              f"internal-server-error, {len(full_stored)} stored; recovered afterwards")
    finally:
        await clients.close()
    assert server.stop() == 0
    log = server.log()
    assert "storing an offline message for absent@localhost failed" in log   # logged ...
    assert "internal error; closing the stream" not in log   # ... and no stream was killed


POSTGRES_DSN = os.environ.get("BLETHER_TEST_POSTGRES_DSN",
                              "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.mark.postgres
async def test_postgresql_goes_away(tmp_path: Path, stopper: list[ServerProcess]) -> None:
    from sqlalchemy.engine import make_url

    admin_url = make_url(POSTGRES_DSN).set(drivername="postgresql")
    admin_dsn = admin_url.render_as_string(hide_password=False)
    try:
        admin = await asyncpg.connect(admin_dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("BLETHER_TEST_POSTGRES") == "skip":
            pytest.skip(f"PostgreSQL unreachable: {exc!r}")
        raise
    name = f"blether_gone_{os.getpid()}_{int(time.time())}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    server = ServerProcess(tmp_path, config_text=NO_FEDERATION + f'[storage]\nurl = "{url}"\n')
    stopper.append(server)
    clients = Clients(server)
    try:
        server.add_user("sender@localhost")
        server.add_user("absent@localhost")
        server.add_user("peer@localhost")
        server.start()
        c = await clients.login("sender@localhost")
        peer = await clients.login("peer@localhost")
        await peer.send("<presence/>")
        stored, refused = await offline_burst(c, "absent@localhost", "ok", 3, 100)
        assert refused == []
        # The database goes away: no new connections, the existing ones killed.
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            f"WHERE datname = '{name}'")
        gone_stored, gone_refused = await offline_burst(c, "absent@localhost", "gone", 5, 100)
        assert gone_stored == [] and len(gone_refused) == 5
        await check_server_still_serves(c, peer)
        assert server.proc is not None and server.proc.poll() is None
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        after, after_refused = await offline_burst(c, "absent@localhost", "back", 3, 100)
        assert after_refused == []
        r = await clients.login("absent@localhost")
        assert await collect_offline(r, 6) == stored + after
    finally:
        await clients.close()
        assert server.stop() == 0, server.log()[-3000:]
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
