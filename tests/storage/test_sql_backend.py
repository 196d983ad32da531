"""Backend specifics outside the shared contract: URLs, SQLite settings, crashes, outages."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from blether.storage import RosterItem, StorageError, open_storage
from blether.storage.sql import SqlStorage
from blether.storage.sql.engine import create_database, normalise_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////var/lib/blether/db.sqlite", "sqlite+pysqlite:////var/lib/blether/db.sqlite"),
        ("sqlite+aiosqlite:///rel.db", "sqlite+pysqlite:///rel.db"),
        ("sqlite+pysqlite:///rel.db", "sqlite+pysqlite:///rel.db"),
        ("sqlite://", "sqlite+pysqlite://"),
        ("postgresql://u@h:5433/db", "postgresql+asyncpg://u@h:5433/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db?ssl=require", "postgresql+asyncpg://u@h/db?ssl=require"),
    ],
)
def test_normalise_url(url: str, expected: str) -> None:
    assert normalise_url(url).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "postgresql+psycopg2://u@h/db", "sqlite+pysqlcipher:///x.db", "nonsense"],
)
async def test_unsupported_url_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        await open_storage(url)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there any more


async def test_unreachable_postgres_raises_storage_error() -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres"
    with pytest.raises(StorageError) as info:
        await open_storage(url)
    assert info.value.__cause__ is not None  # the driver error is kept
    st = SqlStorage(create_database(url))  # built without connecting, as after an outage
    with pytest.raises(StorageError):
        await st.ping()
    with pytest.raises(StorageError):
        await st.roster.put("alice@localhost", RosterItem("bob@localhost"))
    await st.close()


async def test_sqlite_connection_settings(tmp_path: Path) -> None:
    st = await open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert isinstance(st, SqlStorage)
    try:
        async with st.db.write() as conn:
            pragmas = {
                name: (await conn.execute(text(f"PRAGMA {name}"))).scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
        # synchronous 2 = FULL: committed data survives power loss, not just kill -9.
        assert pragmas == {
            "journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 10000,
        }
        async with st.db.read() as conn:
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 2
        with pytest.raises(StorageError, match="readonly"):  # readers are query_only
            async with st.db.read() as conn:
                await conn.execute(text("DELETE FROM kv"))
    finally:
        await st.close()


async def test_sqlite_memory_database() -> None:
    st = await open_storage("sqlite://")
    try:
        await asyncio.gather(*(st.kv.set("a@x", "s", str(n), "v") for n in range(10)))
        assert len(await st.kv.keys("a@x", "s")) == 10
        assert await st.offline.push("a@x", "<m/>", datetime.now(UTC), 1) is not None
        assert await st.offline.push("a@x", "<m/>", datetime.now(UTC), 1) is None
    finally:
        await st.close()


async def test_sqlite_waits_for_another_process_writer(tmp_path: Path) -> None:
    """A write lock held elsewhere (the CLI, a backup) delays us instead of failing."""
    path = tmp_path / "db.sqlite"
    st = await open_storage(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO kv VALUES ('x@y', 's', 'k', 'from elsewhere')")
    threading.Timer(0.5, holder.execute, args=("COMMIT",)).start()
    try:
        await st.kv.set("a@x", "s", "k", "v")
        assert await st.kv.get("a@x", "s", "k") == "v"
        assert await st.kv.get("x@y", "s", "k") == "from elsewhere"
    finally:
        await st.close()
        await asyncio.sleep(0.6)
        holder.close()


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from datetime import UTC, datetime
    from blether.storage import RosterItem, open_storage

    async def main() -> None:
        st = await open_storage(sys.argv[1])
        for n in range(20):
            await st.offline.push("alice@localhost", f"<m n='{n}'/>", datetime.now(UTC), 100)
        await st.roster.put("alice@localhost", RosterItem("bob@localhost", "Bob"))
        print("committed", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no close(), no checkpoint, no atexit

    asyncio.run(main())
    """
)


async def test_sqlite_committed_data_survives_kill_9(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, url],
        capture_output=True, text=True, timeout=60, env={**os.environ},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.strip() == "committed"
    st = await open_storage(url)
    try:
        assert await st.offline.count("alice@localhost") == 20
        assert len(await st.offline.list("alice@localhost")) == 20
        assert await st.roster.get("alice@localhost", "bob@localhost") == RosterItem(
            "bob@localhost", "Bob"
        )
    finally:
        await st.close()
