"""SQLite connections for the storage stores: SQLAlchemy Core on the stdlib driver,
called directly on the event-loop thread; and the ``sqlite://`` (memory) database.

Why not SQLAlchemy's ``AsyncConnection`` over aiosqlite: that costs ~0.8 ms of CPU per
transaction (greenlet switches, a thread hop per statement; docs/performance.md item 1)
where a statement called directly costs ~20 µs. Calling SQLite on the loop thread is
safe because nothing there waits: WAL readers never wait for the writer, and the
writer holds SQLite's write lock before it runs a statement (``sqlite_engine.py``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from sqlalchemy import Connection, CursorResult, Executable, ScalarResult, create_engine, pool
from sqlalchemy.engine import URL, Engine
from sqlalchemy.engine.interfaces import CoreExecuteOptionsParameter
from sqlalchemy.ext.asyncio import AsyncConnection

from ..api import StorageError
from .engine import DB_ERRORS, Database

__all__ = [
    "SQLITE_BUSY_TIMEOUT_S",
    "Handle",
    "SqliteMemoryDatabase",
    "SyncConnection",
    "mark_in_transaction",
    "open_handle",
    "sync_engine",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

# How long a connection waits for another process's lock (the writer: in the worker thread).
SQLITE_BUSY_TIMEOUT_S = 10.0
BUSY_MS = int(SQLITE_BUSY_TIMEOUT_S * 1000)


class SyncConnection:
    """What a SQLite ``read()``/``write()`` block gets: the part of ``AsyncConnection``
    the stores use, calling a synchronous SQLAlchemy ``Connection`` directly.

    Results are those of the synchronous connection (rows fetched on demand from the
    sqlite3 cursor, which SQLite allows across COMMIT); ``run_sync`` calls at once.
    """

    __slots__ = ("sync_connection",)

    def __init__(self, connection: Connection) -> None:
        self.sync_connection = connection

    async def execute(
        self,
        statement: Executable,
        parameters: Any = None,
        *,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> CursorResult[Any]:
        return self.sync_connection.execute(
            statement, parameters, execution_options=execution_options
        )

    async def scalar(
        self,
        statement: Executable,
        parameters: Any = None,
        *,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> Any:
        return self.sync_connection.scalar(
            statement, parameters, execution_options=execution_options
        )

    async def scalars(
        self,
        statement: Executable,
        parameters: Any = None,
        *,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> ScalarResult[Any]:
        return self.sync_connection.scalars(
            statement, parameters, execution_options=execution_options
        )

    async def exec_driver_sql(
        self,
        statement: str,
        parameters: Any = None,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> CursorResult[Any]:
        return self.sync_connection.exec_driver_sql(statement, parameters, execution_options)

    async def run_sync(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return fn(self.sync_connection, *args, **kwargs)


class Handle:
    """One open connection: SQLAlchemy's, the sqlite3 one under it, a cursor for our
    own transaction statements and the adapter handed to store code."""

    __slots__ = ("conn", "cur", "raw", "sa")

    def __init__(self, sa: Connection) -> None:
        self.sa = sa
        raw = sa.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        self.raw = raw
        self.cur = self.raw.cursor()
        # Typed as AsyncConnection so store code is the same for both backends; the
        # contract suite runs every store method on SQLite and PostgreSQL.
        self.conn = cast(AsyncConnection, SyncConnection(sa))

    def close(self) -> None:
        try:
            self.sa.close()
        except DB_ERRORS as e:
            log.warning("closing a SQLite connection failed: %s", e)


def sync_engine(url: URL) -> Engine:
    # isolation_level=None: the sqlite3 module issues no BEGIN of its own, we do.
    # check_same_thread=False: the writer's COMMIT runs in the worker thread (never
    # while the loop thread uses that connection).
    return create_engine(
        url.set(drivername="sqlite+pysqlite"),
        poolclass=pool.NullPool,  # connections are kept by the database objects below
        connect_args={"isolation_level": None, "check_same_thread": False},
    )


def open_handle(engine: Engine, *, reader: bool) -> Handle:
    h = Handle(engine.connect())
    try:
        if reader:
            # Readers must never write: catches a store method on the wrong kind of block.
            h.cur.execute("PRAGMA query_only=ON")
        # WAL is a property of the file, switched on once by prepare().
        h.cur.execute("PRAGMA synchronous=FULL")
        h.cur.execute("PRAGMA foreign_keys=ON")
        h.cur.execute(f"PRAGMA busy_timeout={BUSY_MS}")
    except BaseException:
        h.close()
        raise
    return h


def mark_in_transaction(h: Handle) -> None:
    """Tell SQLAlchemy a transaction is open (bookkeeping only: no SQL on pysqlite),
    so Alembic treats it as external and leaves the COMMIT to us."""
    if not h.sa.in_transaction():
        h.sa.begin()


class SqliteMemoryDatabase(Database):
    """``sqlite://``: one connection (each connection to :memory: is its own
    database), one transaction at a time, committed on the loop."""

    def __init__(self, url: URL) -> None:
        super().__init__("sqlite")
        self._engine = sync_engine(url)
        self._lock = asyncio.Lock()
        self._handle: Handle | None = None

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._transaction("BEGIN", "read")

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._transaction("BEGIN IMMEDIATE", "write")

    @asynccontextmanager
    async def _transaction(self, begin: str, what: str) -> AsyncIterator[AsyncConnection]:
        self._check_open()
        async with self._lock:
            self._check_open()
            try:
                if self._handle is None:
                    self._handle = open_handle(self._engine, reader=False)
                h = self._handle
                h.cur.execute(begin)
                mark_in_transaction(h)
                try:
                    yield h.conn
                    h.cur.execute("COMMIT")
                finally:
                    if h.raw.in_transaction:
                        h.cur.execute("ROLLBACK")
            except DB_ERRORS as e:
                raise StorageError(f"database {what} failed: {e}") from e

    async def close(self) -> None:
        self.closed = True
        async with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
        self._engine.dispose()
