"""SQLite file databases: reads on the event-loop thread, group commit in one thread.

SECURITY.md (Durability) requires ``synchronous=FULL``: a write is acknowledged only
once its COMMIT has reached the disk. With one transaction per write, every write cost
an fsync (docs/performance.md item 3); here writes share them:

* Statements run on the calling (event-loop) thread (``sqlite_conn.SyncConnection``).
* Reads: a small pool of ``query_only`` connections, each ``read()`` one snapshot;
  in WAL mode they never wait for the writer.
* Writes: one writer connection. The first write block of a batch takes SQLite's
  write lock with ``BEGIN IMMEDIATE`` (if another process holds it, the wait happens
  in the worker thread, so the CLI next to a running server still works); every
  ``write()`` block runs in its own SAVEPOINT, so ``Rollback`` or an error undoes that
  block only, and finished blocks join the open batch. One loop turn later (or when
  the commit in flight is done) the batch's COMMIT, the fsync, runs in the worker
  thread while the loop goes on serving. Every ``write()`` of the batch returns only
  after that COMMIT succeeded; if it fails, all of them raise StorageError and the
  transaction is rolled back. An ``asyncio.Lock`` keeps write blocks and the commit
  from ever interleaving on the connection, even if a block awaits something else.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from ..api import StorageError
from .engine import DB_ERRORS, Database
from .sqlite_conn import (
    BUSY_MS,
    SQLITE_BUSY_TIMEOUT_S,
    Handle,
    SqliteMemoryDatabase,
    SyncConnection,
    mark_in_transaction,
    open_handle,
    sync_engine,
)

__all__ = ["SqliteFileDatabase", "SqliteMemoryDatabase", "SyncConnection"]

log = logging.getLogger(__name__)

T = TypeVar("T")
# Idle reader connections kept open; more are opened while blocks overlap.
SQLITE_IDLE_READERS = 4
_SAVEPOINT = "blether_write"
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def _is_busy(e: sqlite3.Error) -> bool:
    return e.sqlite_errorcode & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def _commit_sync(raw: sqlite3.Connection) -> None:
    """COMMIT in the worker thread (sqlite3 releases the GIL for the fsync). On failure
    the transaction is rolled back here, so the connection is clean again."""
    try:
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise


async def _uninterrupted(fut: asyncio.Future[T]) -> T:
    """Await a worker-thread job to its end even if cancelled meanwhile (the thread
    cannot be stopped and owns the connection until it is done); a cancellation is
    raised afterwards."""
    interrupted = False
    while not fut.done():
        try:
            await asyncio.shield(fut)  # cheaper than asyncio.wait: fewer loop turns
        except asyncio.CancelledError:
            if fut.cancelled():
                raise
            interrupted = True
        except Exception:  # the job's own error: fut.result() raises it below
            pass
    if interrupted:
        raise asyncio.CancelledError
    return fut.result()


class _Batch:
    """The write blocks sharing one transaction, waiting for its COMMIT."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: list[asyncio.Future[None]] = []


class SqliteFileDatabase(Database):
    """A SQLite file: reads on the loop, group-committed writes (module docstring)."""

    def __init__(self, url: URL) -> None:
        super().__init__("sqlite")
        self._engine = sync_engine(url)
        self._lock = asyncio.Lock()  # held by a write block, the committer, prepare, close
        self._writer: Handle | None = None
        self._idle: list[Handle] = []
        self._batch: _Batch | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blether-sqlite")
        self.commits = 0  # batches committed (for tests and diagnostics)

    # -- reads -------------------------------------------------------------------------

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        self._check_open()
        try:
            h = self._idle.pop() if self._idle else open_handle(self._engine, reader=True)
        except DB_ERRORS as e:
            raise StorageError(f"database read failed: {e}") from e
        try:
            try:
                h.cur.execute("BEGIN")
                yield h.conn
            finally:
                if h.raw.in_transaction:
                    h.cur.execute("ROLLBACK")  # a snapshot that wrote nothing: ends it
        except DB_ERRORS as e:
            raise StorageError(f"database read failed: {e}") from e
        finally:
            if self.closed or h.raw.in_transaction or len(self._idle) >= SQLITE_IDLE_READERS:
                h.close()
            else:
                self._idle.append(h)

    # -- writes ------------------------------------------------------------------------

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        self._check_open()
        async with self._lock:
            self._check_open()  # closed while we queued
            try:
                w = self._writer or self._open_writer()
                batch = self._batch or await self._begin(w)
                # (Should this fail, an open transaction without blocks is simply
                # reused by the next writer.)
                w.cur.execute(f"SAVEPOINT {_SAVEPOINT}")
            except DB_ERRORS as e:
                raise StorageError(f"database write failed: {e}") from e
            try:
                yield w.conn
                w.cur.execute(f"RELEASE {_SAVEPOINT}")
            except BaseException as e:
                self._undo(w, batch)
                if isinstance(e, DB_ERRORS):
                    raise StorageError(f"database write failed: {e}") from e
                raise
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            batch.waiters.append(done)
            if len(batch.waiters) == 1:
                # Commit once the blocks already queued (and those running this loop
                # turn) have joined: the committer queues on the lock behind them.
                task = asyncio.create_task(self._commit_when_free(w, batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        await done

    def _open_writer(self) -> Handle:
        self._writer = open_handle(self._engine, reader=False)
        return self._writer

    def _drop_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def _begin(self, w: Handle) -> _Batch:
        """Start the batch's transaction, taking SQLite's write lock up front."""
        try:
            # Without waiting: a busy handler sleeping here would stall the loop.
            w.cur.execute("PRAGMA busy_timeout=0")
            try:
                w.cur.execute("BEGIN IMMEDIATE")
            finally:
                w.cur.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        except sqlite3.OperationalError as e:
            if not _is_busy(e):
                raise
            # Another process (the CLI, a backup) holds the write lock: wait for it up
            # to busy_timeout in the worker thread.
            fut = asyncio.get_running_loop().run_in_executor(
                self._thread, w.raw.execute, "BEGIN IMMEDIATE"
            )
            try:
                await _uninterrupted(fut)
            except asyncio.CancelledError:
                if fut.exception() is None:
                    w.cur.execute("ROLLBACK")
                raise
        mark_in_transaction(w)
        self._batch = _Batch()
        return self._batch

    def _undo(self, w: Handle, batch: _Batch) -> None:
        """Undo a failed block only; blocks that already joined the batch stay."""
        try:
            if w.raw.in_transaction:
                w.cur.execute(f"ROLLBACK TO {_SAVEPOINT}")
                w.cur.execute(f"RELEASE {_SAVEPOINT}")
                if not batch.waiters:
                    w.cur.execute("ROLLBACK")  # nothing else in it: no commit needed
                    self._batch = None
                return
        except sqlite3.Error as e:
            log.warning("undoing a SQLite write block failed: %s", e)
        # SQLite rolled the whole transaction back (after an I/O error or a full
        # disk), or it could not be cleaned up: the joined blocks are lost too.
        self._fail(w, batch, "the transaction was rolled back", None)

    def _fail(self, w: Handle, batch: _Batch, reason: str, cause: BaseException | None) -> None:
        if self._batch is batch:
            self._batch = None
        if w.raw.in_transaction:
            try:
                w.cur.execute("ROLLBACK")
            except sqlite3.Error as e:
                log.warning("rolling back a SQLite transaction failed: %s", e)
                self._drop_writer()  # a fresh connection for the next batch
        for done in batch.waiters:
            if not done.done():
                error = StorageError(f"database write failed: {reason}")
                error.__cause__ = cause
                done.set_exception(error)

    async def _commit_when_free(self, w: Handle, batch: _Batch) -> None:
        async with self._lock:
            if self._batch is batch:
                await self._commit(w, batch)

    async def _commit(self, w: Handle, batch: _Batch) -> None:
        """COMMIT the batch in the worker thread and tell its writers (lock held)."""
        self._batch = None
        fut = asyncio.get_running_loop().run_in_executor(self._thread, _commit_sync, w.raw)
        try:
            await _uninterrupted(fut)
        finally:
            # Reached once the thread is done, also when we were cancelled meanwhile.
            error = fut.exception()
            if error is None:
                self.commits += 1
                for done in batch.waiters:
                    if not done.done():
                        done.set_result(None)
            else:
                self._fail(w, batch, str(error), error)

    # -- life cycle --------------------------------------------------------------------

    async def prepare(self) -> None:
        """Put the file in WAL mode (readers then never wait for the writer).

        Switching the journal mode needs an exclusive lock and SQLite reports
        "database is locked" at once instead of waiting ``busy_timeout`` (several
        processes opening a new file together), so we retry here, asynchronously.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SQLITE_BUSY_TIMEOUT_S
        async with self._lock:
            try:
                w = self._writer or self._open_writer()
                while True:
                    fut = loop.run_in_executor(self._thread, _journal_mode_wal, w.raw)
                    try:
                        mode = await _uninterrupted(fut)
                        break
                    except sqlite3.OperationalError as e:
                        if not _is_busy(e) or loop.time() > deadline:
                            raise
                    await asyncio.sleep(0.02)
            except DB_ERRORS as e:
                raise StorageError(f"cannot enable SQLite WAL mode: {e}") from e
        if mode != "wal":
            # E.g. a file system without shared memory: still correct, just slower.
            log.warning("SQLite refused WAL journal mode (got %s)", mode)

    async def close(self) -> None:
        """Commit what is waiting, close every connection; later use raises."""
        self.closed = True
        try:
            async with self._lock:  # after the block or commit in progress
                batch, w = self._batch, self._writer
                if batch is not None and w is not None:
                    if batch.waiters:
                        await self._commit(w, batch)
                    else:
                        self._fail(w, batch, "storage is closed", None)
                self._drop_writer()
                while self._idle:
                    self._idle.pop().close()
        finally:
            self._thread.shutdown(wait=False)
        # Committers queued behind us find nothing left to do.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._engine.dispose()


def _journal_mode_wal(raw: sqlite3.Connection) -> str:
    row = raw.execute("PRAGMA journal_mode=WAL").fetchone()
    return "" if row is None else str(row[0]).lower()
