"""Database URLs, engines and transactions for the SQL backends.

A :class:`Database` hands out short transactions: ``read()`` for queries and
``write()`` for changes. Both wrap every driver or SQLAlchemy failure in
:class:`~blether.storage.api.StorageError` (the original stays as ``__cause__``).

SQLite (through aiosqlite, one thread per connection):

* SQLite has a single writer per database file. The writer engine has exactly one
  pooled connection, so writers in this process queue on the (asyncio-aware)
  pool instead of spinning on ``SQLITE_BUSY`` inside driver threads; readers have
  their own pool and, thanks to WAL, never block the writer or each other.
* We issue ``BEGIN`` ourselves (the sqlite3 module's legacy transaction control is
  switched off with ``isolation_level=None``) so reads run inside real
  transactions and write transactions start with ``BEGIN IMMEDIATE``: the write
  lock is taken up front, so another process (the CLI next to a running server)
  waits ``busy_timeout`` instead of failing on a read-to-write lock upgrade, and a
  read-check-write sequence such as the offline quota is race-free.
* ``synchronous=FULL`` on every connection: SECURITY.md (Durability) requires that
  offline messages and rosters survive ``kill -9`` and power loss once committed.

PostgreSQL (asyncpg): one pool; writes run at READ COMMITTED and lock the rows they
serialise on (see ``stores.py``); reads run at REPEATABLE READ so a method that
issues several SELECTs sees one snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import Connection, event, exc, pool
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from ..api import StorageError

__all__ = ["Database", "create_database", "normalise_url"]

log = logging.getLogger(__name__)

# How long a SQLite connection waits for another process's write lock.
SQLITE_BUSY_TIMEOUT_S = 10.0
# Readers are cheap threads; a handful covers concurrent roster loads at login.
SQLITE_READERS = 4
# Fail fast on an unreachable PostgreSQL instead of asyncpg's 60 s default.
PG_CONNECT_TIMEOUT_S = 10.0

# Exceptions that mean "the database failed". SQLAlchemy wraps most driver errors,
# but connection set-up can surface raw OSError (refused, DNS) or driver errors.
DB_ERRORS: tuple[type[BaseException], ...] = (
    exc.SQLAlchemyError,
    OSError,
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def normalise_url(url: str) -> URL:
    """Map the accepted URL spellings onto our async drivers.

    ``sqlite:///rel.db`` / ``sqlite:////abs.db`` / ``sqlite://`` (memory) and
    ``postgresql://`` / ``postgres://`` are accepted with or without the driver
    suffix; any other driver or dialect is refused with :class:`ValueError`.
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError as e:
        raise ValueError(f"invalid storage URL: {e}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "aiosqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(
        f"unsupported storage URL scheme {parsed.drivername!r}: "
        "use sqlite:///path.db or postgresql://user@host/db"
    )


def _is_sqlite_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


@dataclass(eq=False)
class Database:
    """Transactions on one database; see the module docstring for the engines."""

    dialect: str  # "sqlite" | "postgresql"
    writer: AsyncEngine
    reader: AsyncEngine
    closed: bool = False

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (a consistent snapshot on both backends)."""
        self._check_open()
        try:
            async with self.reader.begin() as conn:
                yield conn
        except DB_ERRORS as e:
            raise StorageError(f"database read failed: {e}") from e

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; committed on normal exit, rolled back on error."""
        self._check_open()
        try:
            async with self.writer.begin() as conn:
                yield conn
        except DB_ERRORS as e:
            raise StorageError(f"database write failed: {e}") from e

    async def prepare(self) -> None:
        """Put a SQLite file in WAL mode (before first use; no-op elsewhere).

        Switching the journal mode needs an exclusive lock and SQLite reports
        "database is locked" at once instead of waiting ``busy_timeout`` (several
        processes opening a new file together), so we retry here, asynchronously.
        """
        if self.dialect != "sqlite" or _is_sqlite_memory(self.writer.url):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SQLITE_BUSY_TIMEOUT_S
        try:
            async with self.writer.connect() as conn:
                # The raw aiosqlite connection: a PRAGMA that changes the journal
                # mode must run outside the transaction SQLAlchemy would begin.
                raw = (await conn.get_raw_connection()).driver_connection
                assert raw is not None
                while True:
                    try:
                        cursor = await raw.execute("PRAGMA journal_mode=WAL")
                        row = await cursor.fetchone()
                        break
                    except sqlite3.OperationalError as e:
                        if "locked" not in str(e) or loop.time() > deadline:
                            raise
                        await asyncio.sleep(0.02)
        except DB_ERRORS as e:
            raise StorageError(f"cannot enable SQLite WAL mode: {e}") from e
        if row is None or str(row[0]).lower() != "wal":
            # E.g. a file system without shared memory: still correct, just slower.
            log.warning("SQLite refused WAL journal mode (got %s)", row and row[0])

    async def close(self) -> None:
        self.closed = True
        try:
            await self.writer.dispose()
            # On PostgreSQL the reader is the writer with other options (same pool).
            if self.reader.sync_engine.pool is not self.writer.sync_engine.pool:
                await self.reader.dispose()
        except DB_ERRORS as e:
            raise StorageError(f"closing the database failed: {e}") from e

    def _check_open(self) -> None:
        # A disposed engine would silently open new connections; a closed
        # Storage must fail loudly instead.
        if self.closed:
            raise StorageError("storage is closed")


def create_database(url: str) -> Database:
    """Build the engines for ``url`` (no connection is opened yet)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_database(parsed)
    return _postgres_database(parsed)


def _sqlite_database(url: URL) -> Database:
    # isolation_level=None turns off the sqlite3 module's own BEGIN handling so the
    # "begin" listener below decides how each transaction starts.
    connect_args: dict[str, Any] = {"isolation_level": None}
    if _is_sqlite_memory(url):
        # Each connection to :memory: is a separate database, so reads and writes
        # must share one connection; one pooled connection (not StaticPool) also
        # keeps concurrent coroutines from interleaving inside one transaction.
        engine = create_async_engine(
            url, poolclass=pool.AsyncAdaptedQueuePool, pool_size=1, max_overflow=0,
            connect_args=connect_args,
        )
        _configure_sqlite(engine, begin="BEGIN IMMEDIATE", writer=True)
        return Database("sqlite", engine, engine)
    writer = create_async_engine(
        url, poolclass=pool.AsyncAdaptedQueuePool, pool_size=1, max_overflow=0,
        pool_timeout=60, connect_args=connect_args,
    )
    _configure_sqlite(writer, begin="BEGIN IMMEDIATE", writer=True)
    reader = create_async_engine(
        url, poolclass=pool.AsyncAdaptedQueuePool, pool_size=SQLITE_READERS,
        max_overflow=SQLITE_READERS, connect_args=connect_args,
    )
    _configure_sqlite(reader, begin="BEGIN", writer=False)
    return Database("sqlite", writer, reader)


def _configure_sqlite(engine: AsyncEngine, *, begin: str, writer: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cur = dbapi_conn.cursor()
        try:
            # WAL is a property of the file, switched on once by Database.prepare().
            if not writer:
                # Readers must never write: catches a store method on the wrong pool.
                cur.execute("PRAGMA query_only=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        finally:
            cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)


def _postgres_database(url: URL) -> Database:
    engine = create_async_engine(
        url,
        # A server restart leaves dead pooled connections; checking on checkout
        # costs one round trip but turns a failed user request into a reconnect.
        pool_pre_ping=True,
        connect_args={
            "timeout": PG_CONNECT_TIMEOUT_S,
            "server_settings": {"application_name": "blether"},
        },
    )
    reader = engine.execution_options(
        isolation_level="REPEATABLE READ", postgresql_readonly=True
    )
    return Database("postgresql", engine, reader)
