"""The SQLite engine: group commit, per-block undo, failed commits, reads during
writes, another process's write lock, closing (src/blether/storage/sql/sqlite_engine.py).

The worker thread's COMMIT is held on a gate where a test needs "a commit in flight",
so every assertion is about order, never about time.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from blether.storage import StorageError, open_storage
from blether.storage.sql import SqlStorage, sqlite_engine
from blether.storage.sql import schema as s
from blether.storage.sql.sqlite_engine import SqliteFileDatabase, SqliteMemoryDatabase
from blether.storage.sql.stores import Rollback

USER = "alice@localhost"
WAIT_S = 30.0  # an upper bound for "eventually", never a speed expectation


@pytest.fixture
async def st(tmp_path: Path) -> AsyncIterator[SqlStorage]:
    storage = await open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert isinstance(storage, SqlStorage)
    assert isinstance(storage.db, SqliteFileDatabase)
    try:
        yield storage
    finally:
        await storage.close()


def db_of(st: SqlStorage) -> SqliteFileDatabase:
    assert isinstance(st.db, SqliteFileDatabase)
    return st.db


class Gate:
    """Holds the worker thread's COMMIT until opened."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()
        self.calls = 0

    def wrap(self, commit: Callable[[sqlite3.Connection], None]
             ) -> Callable[[sqlite3.Connection], None]:
        def gated(raw: sqlite3.Connection) -> None:
            self.calls += 1
            self.entered.set()
            if not self.open.wait(WAIT_S):
                raise AssertionError("the gate was never opened")
            commit(raw)
        return gated

    async def wait_entered(self) -> None:
        for _ in range(int(WAIT_S / 0.01)):
            if self.entered.is_set():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("no commit started")


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """Request it after ``st``: the storage is opened (and migrated) without a gate."""
    g = Gate()
    monkeypatch.setattr(sqlite_engine, "_commit_sync", g.wrap(sqlite_engine._commit_sync))
    yield g
    g.open.set()  # never leave the worker thread hanging


async def kv_put(st: SqlStorage, key: str, *, undo: bool = False) -> bool:
    """A raw write block; ``undo`` makes it raise Rollback after its insert."""
    try:
        async with st.db.write() as conn:
            await conn.execute(s.kv.insert().values(owner=USER, store="s", key=key, value="v"))
            if undo:
                raise Rollback
    except Rollback:
        return False
    return True


async def test_concurrent_writes_share_one_commit_acknowledged_after_it(
    st: SqlStorage, gate: Gate
) -> None:
    db = db_of(st)
    before = db.commits
    writes = [asyncio.create_task(st.kv.set(USER, "s", f"k{i}", "v")) for i in range(20)]
    await gate.wait_entered()
    # The COMMIT is running: nobody has been told "done", nothing is visible yet, and
    # reads are served meanwhile.
    assert not any(w.done() for w in writes)
    assert await st.kv.keys(USER, "s") == []
    gate.open.set()
    await asyncio.gather(*writes)
    assert db.commits == before + 1 and gate.calls == 1
    assert len(await st.kv.keys(USER, "s")) == 20


async def test_writes_arriving_during_a_commit_form_the_next_batch(
    st: SqlStorage, gate: Gate
) -> None:
    db = db_of(st)
    before = db.commits
    first = asyncio.create_task(st.kv.set(USER, "s", "first", "v"))
    await gate.wait_entered()
    later = [asyncio.create_task(st.kv.set(USER, "s", f"k{i}", "v")) for i in range(10)]
    await asyncio.sleep(0)
    assert not first.done() and not any(w.done() for w in later)
    gate.open.set()
    await asyncio.gather(first, *later)
    assert db.commits == before + 2  # one for `first`, one for all ten that waited
    assert len(await st.kv.keys(USER, "s")) == 11


async def test_rollback_in_one_block_keeps_the_others(st: SqlStorage) -> None:
    db = db_of(st)
    before = db.commits
    results = await asyncio.gather(
        kv_put(st, "a"), kv_put(st, "b", undo=True), kv_put(st, "c"), kv_put(st, "d", undo=True)
    )
    assert list(results) == [True, False, True, False]
    assert await st.kv.keys(USER, "s") == ["a", "c"]
    assert db.commits == before + 1


async def test_a_failing_block_raises_alone(st: SqlStorage) -> None:
    await kv_put(st, "dup")
    results = await asyncio.gather(
        kv_put(st, "x"), kv_put(st, "dup"), kv_put(st, "y"), return_exceptions=True
    )
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], StorageError)  # the UNIQUE violation, wrapped
    assert isinstance(results[1].__cause__, Exception)
    assert await st.kv.keys(USER, "s") == ["dup", "x", "y"]


async def test_a_lone_rolled_back_block_needs_no_commit(st: SqlStorage) -> None:
    db = db_of(st)
    before = db.commits
    assert await kv_put(st, "gone", undo=True) is False
    assert db.commits == before
    assert await kv_put(st, "kept") is True
    assert await st.kv.keys(USER, "s") == ["kept"]


async def test_a_failed_commit_fails_every_writer_of_the_batch(st: SqlStorage) -> None:
    """A real COMMIT failure: a deferred foreign key that is still violated at COMMIT."""
    await st.kv.set(USER, "s", "old", "v")

    async def orphan_credentials() -> None:
        async with st.db.write() as conn:
            await conn.execute(text("PRAGMA defer_foreign_keys=ON"))
            await conn.execute(s.account_credentials.insert().values(
                jid="nobody@localhost", mechanism="SCRAM-SHA-1", salt=b"s", iterations=1,
                stored_key=b"k", server_key=b"k"))

    results = await asyncio.gather(
        st.kv.set(USER, "s", "a", "v"), orphan_credentials(), st.kv.set(USER, "s", "b", "v"),
        st.offline.push(USER, "<message/>", datetime.now(UTC), 10), return_exceptions=True,
    )
    assert all(isinstance(r, StorageError) for r in results), results
    assert "FOREIGN KEY" in str(results[1])
    # Nothing of the batch was kept, and the database goes on working.
    assert await st.kv.keys(USER, "s") == ["old"]
    assert await st.offline.count(USER) == 0
    async with st.db.read() as conn:
        assert (await conn.execute(select(s.account_credentials.c.jid))).all() == []
    await st.kv.set(USER, "s", "after", "v")
    assert await st.kv.keys(USER, "s") == ["after", "old"]


async def test_an_io_error_at_commit_fails_the_batch_and_recovers(
    st: SqlStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_disk(raw: sqlite3.Connection) -> None:
        raw.execute("ROLLBACK")  # what SQLite does itself after an I/O error
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_engine, "_commit_sync", broken_disk)
    results = await asyncio.gather(*(st.kv.set(USER, "s", f"k{i}", "v") for i in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, StorageError) and "disk I/O error" in str(r) for r in results)
    monkeypatch.undo()
    assert await st.kv.keys(USER, "s") == []
    await st.kv.set(USER, "s", "k", "v")
    assert await st.kv.keys(USER, "s") == ["k"]


async def test_a_writer_cancelled_while_waiting_does_not_disturb_the_batch(
    st: SqlStorage, gate: Gate
) -> None:
    first = asyncio.create_task(st.kv.set(USER, "s", "first", "v"))
    await gate.wait_entered()
    a = asyncio.create_task(st.kv.set(USER, "s", "a", "v"))
    b = asyncio.create_task(st.kv.set(USER, "s", "b", "v"))
    await asyncio.sleep(0)
    a.cancel()
    gate.open.set()
    await asyncio.gather(first, b)
    with pytest.raises(asyncio.CancelledError):
        await a
    # `a` was cancelled before its block ran, so only the others are there.
    assert await st.kv.keys(USER, "s") == ["b", "first"]


async def test_reads_are_not_blocked_by_an_open_write_block(st: SqlStorage) -> None:
    await st.kv.set(USER, "s", "k", "committed")
    inside, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def slow_writer() -> None:
        async with st.db.write() as conn:
            await conn.execute(s.kv.update().values(value="pending"))
            order.append("slow")
            inside.set()
            await release.wait()  # the write transaction stays open meanwhile

    async def second_writer() -> None:
        async with st.db.write() as conn:
            order.append("second")
            await conn.execute(s.kv.update().values(value="second"))

    slow = asyncio.create_task(slow_writer())
    await inside.wait()
    second = asyncio.create_task(second_writer())
    # Reads go on, and see only what is committed.
    assert await st.kv.get(USER, "s", "k") == "committed"
    assert await st.roster.get_all(USER) == ([], 0)
    assert order == ["slow"]  # the second block waits for the first: no interleaving
    release.set()
    await asyncio.gather(slow, second)
    assert order == ["slow", "second"]
    assert await st.kv.get(USER, "s", "k") == "second"


async def test_another_process_holding_the_write_lock_blocks_no_reads(
    st: SqlStorage, tmp_path: Path
) -> None:
    holder = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO kv VALUES ('x@y', 's', 'k', 'elsewhere')")
        write = asyncio.create_task(st.kv.set(USER, "s", "k", "v"))
        for _ in range(5):
            await asyncio.sleep(0.01)
            assert await st.kv.get(USER, "s", "k") is None  # the loop keeps serving
        assert not write.done()
        holder.execute("COMMIT")
        await asyncio.wait_for(write, WAIT_S)
        assert await st.kv.get(USER, "s", "k") == "v"
        assert await st.kv.get("x@y", "s", "k") == "elsewhere"
    finally:
        holder.close()


async def test_close_waits_for_the_commit_in_flight_then_refuses(
    st: SqlStorage, gate: Gate, tmp_path: Path
) -> None:
    writes = [asyncio.create_task(st.kv.set(USER, "s", f"k{i}", "v")) for i in range(5)]
    await gate.wait_entered()
    closing = asyncio.create_task(st.close())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not closing.done() and not any(w.done() for w in writes)
    with pytest.raises(StorageError, match="storage is closed"):
        await st.kv.set(USER, "s", "late", "v")
    gate.open.set()
    await closing
    await asyncio.gather(*writes)  # acknowledged: they were committed before the close
    with pytest.raises(StorageError, match="storage is closed"):
        await st.kv.get(USER, "s", "k0")
    with pytest.raises(StorageError, match="storage is closed"):
        await st.kv.set(USER, "s", "k0", "v")
    await st.close()  # closing twice is harmless
    again = await open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        assert len(await again.kv.keys(USER, "s")) == 5
    finally:
        await again.close()


async def test_writers_queued_behind_close_are_refused(st: SqlStorage, gate: Gate) -> None:
    first = asyncio.create_task(st.kv.set(USER, "s", "first", "v"))
    await gate.wait_entered()
    queued = asyncio.create_task(st.kv.set(USER, "s", "queued", "v"))  # waits for the lock
    await asyncio.sleep(0)
    closing = asyncio.create_task(st.close())
    await asyncio.sleep(0)
    gate.open.set()
    await first
    await closing
    with pytest.raises(StorageError, match="storage is closed"):
        await queued


async def test_memory_database_rolls_back_and_closes() -> None:
    st = await open_storage("sqlite://")
    assert isinstance(st, SqlStorage) and isinstance(st.db, SqliteMemoryDatabase)
    try:
        results = await asyncio.gather(kv_put(st, "a"), kv_put(st, "b", undo=True))
        assert list(results) == [True, False]
        assert await st.kv.keys(USER, "s") == ["a"]
        with pytest.raises(StorageError):
            await kv_put(st, "a")  # UNIQUE violation
        assert await st.kv.keys(USER, "s") == ["a"]
    finally:
        await st.close()
    with pytest.raises(StorageError, match="storage is closed"):
        await st.kv.keys(USER, "s")



async def test_the_connection_adapter_offers_what_store_code_uses(st: SqlStorage) -> None:
    async with st.db.write() as conn:
        await conn.execute(s.kv.insert(), [
            {"owner": USER, "store": "s", "key": k, "value": k.upper()} for k in "ab"
        ])
        assert await conn.scalar(select(s.kv.c.value).where(s.kv.c.key == "a")) == "A"
        assert (await conn.scalars(select(s.kv.c.key))).all() == ["a", "b"]
        assert (await conn.exec_driver_sql("SELECT count(*) FROM kv")).scalar() == 2
        assert await conn.run_sync(lambda c, n: c.in_transaction() and n, 7) == 7
