"""Database URLs, engines and transactions for the SQL backends.

A :class:`Database` hands out short transactions: ``read()`` for queries and
``write()`` for changes. Both wrap every driver or SQLAlchemy failure in
:class:`~blether.storage.api.StorageError` (the original stays as ``__cause__``).
Statements are SQLAlchemy Core on both backends; store code is written against
``AsyncConnection`` (``execute``, ``run_sync``).

SQLite (``sqlite_engine.py``): statements run on the event-loop thread on the stdlib
``sqlite3`` driver and writes are group-committed in one worker thread (one fsync
per batch, each write acknowledged only after its batch's COMMIT):

* SQLite has a single writer per database file: one writer connection, write
  blocks queue on an ``asyncio.Lock``; readers have their own connections and,
  thanks to WAL, never block the writer or each other.
* We issue ``BEGIN`` ourselves (the sqlite3 module's legacy transaction control is
  switched off with ``isolation_level=None``) so reads run inside real
  transactions and write transactions start with ``BEGIN IMMEDIATE``: the write
  lock is taken up front, so another process (the CLI next to a running server)
  waits ``busy_timeout`` instead of failing on a read-to-write lock upgrade, and a
  read-check-write sequence such as the offline quota is race-free.
* ``synchronous=FULL`` on every connection: SECURITY.md (Durability) requires that
  offline messages and rosters survive ``kill -9`` and power loss once committed.

PostgreSQL (SQLAlchemy asyncio over asyncpg): one pool; writes run at READ COMMITTED
and lock the rows they serialise on (see ``stores.py``); reads run at REPEATABLE READ
so a method that issues several SELECTs sees one snapshot.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
from sqlalchemy import exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..api import StorageError

__all__ = ["Database", "create_database", "normalise_url"]

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
    """Map the accepted URL spellings onto one canonical form per backend.

    ``sqlite:///rel.db`` / ``sqlite:////abs.db`` / ``sqlite://`` (memory) and
    ``postgresql://`` / ``postgres://`` are accepted with or without the driver
    suffix; any other driver or dialect is refused with :class:`ValueError`.
    SQLite runs on the stdlib ``sqlite3`` driver (``sqlite+pysqlite``); the
    ``sqlite+aiosqlite`` spelling of earlier configurations is still accepted.
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError as e:
        raise ValueError(f"invalid storage URL: {e}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "pysqlite", "aiosqlite"):
        return parsed.set(drivername="sqlite+pysqlite")
    if backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(
        f"unsupported storage URL scheme {parsed.drivername!r}: "
        "use sqlite:///path.db or postgresql://user@host/db"
    )


def _is_sqlite_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


class Database(ABC):
    """Transactions on one database; see the module docstring for the engines."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect  # "sqlite" | "postgresql"
        self.closed = False

    @abstractmethod
    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A read-only transaction (a consistent snapshot on both backends)."""

    @abstractmethod
    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction: rolled back if the block raises; when the block is
        left normally, the ``async with`` returns once the changes are committed."""

    async def prepare(self) -> None:  # noqa: B027 (optional hook: most need nothing)
        """Set the database up before first use (SQLite: WAL mode)."""

    @abstractmethod
    async def close(self) -> None:
        """Close every connection; any later use raises StorageError."""

    def _check_open(self) -> None:
        # A closed database would silently open new connections; a closed
        # Storage must fail loudly instead.
        if self.closed:
            raise StorageError("storage is closed")


class PostgresDatabase(Database):
    """PostgreSQL through SQLAlchemy's asyncio engine on asyncpg."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__("postgresql")
        self.writer = engine
        self.reader = engine.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        self._check_open()
        try:
            async with self.reader.begin() as conn:
                yield conn
        except DB_ERRORS as e:
            raise StorageError(f"database read failed: {e}") from e

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        self._check_open()
        try:
            async with self.writer.begin() as conn:
                yield conn
        except DB_ERRORS as e:
            raise StorageError(f"database write failed: {e}") from e

    async def close(self) -> None:
        self.closed = True
        try:
            # The reader is the writer with other options (the same pool).
            await self.writer.dispose()
        except DB_ERRORS as e:
            raise StorageError(f"closing the database failed: {e}") from e


def create_database(url: str) -> Database:
    """Build the database object for ``url`` (no connection is opened yet)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        # Imported here: sqlite_engine builds on this module.
        from .sqlite_engine import SqliteFileDatabase, SqliteMemoryDatabase

        if _is_sqlite_memory(parsed):
            return SqliteMemoryDatabase(parsed)
        return SqliteFileDatabase(parsed)
    return _postgres_database(parsed)


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
    return PostgresDatabase(engine)
