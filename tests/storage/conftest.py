"""Fixtures for the storage contract suite: each test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``BLETHER_TEST_POSTGRES_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, used only as an admin
connection). Each test module gets its own freshly created database, dropped at
the end, so parallel runs (xdist workers, several CI jobs on one server) never
share tables; tests within a module start from truncated tables.

An unreachable PostgreSQL makes the ``postgresql`` tests fail, not skip: CI must
exercise both backends. Set ``BLETHER_TEST_POSTGRES=skip`` to skip them locally.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from blether.storage import Storage, open_storage
from blether.storage.sql import SqlStorage
from blether.storage.sql.schema import metadata

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


class PostgresDatabases:
    """Creates uniquely named databases on the test server and drops them later."""

    def __init__(self, dsn: str) -> None:
        url = make_url(dsn)
        # asyncpg wants a plain libpq-style DSN without the SQLAlchemy driver suffix.
        self._admin_url = url.set(drivername="postgresql")
        self._names: list[str] = []

    def _admin_dsn(self) -> str:
        return self._admin_url.render_as_string(hide_password=False)

    async def _execute(self, sql: str) -> None:
        conn = await asyncpg.connect(self._admin_dsn(), timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def check(self) -> None:
        asyncio.run(self._execute("SELECT 1"))

    def create(self) -> str:
        name = f"blether_test_{uuid.uuid4().hex[:16]}"
        asyncio.run(self._execute(f'CREATE DATABASE "{name}"'))
        self._names.append(name)
        return self._admin_url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        async def drop() -> None:
            for name in self._names:
                # FORCE: a test that failed may have leaked pooled connections.
                await self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        asyncio.run(drop())
        self._names.clear()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresDatabases]:
    dsn = os.environ.get("BLETHER_TEST_POSTGRES_DSN", DEFAULT_DSN)
    databases = PostgresDatabases(dsn)
    try:
        databases.check()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        message = f"PostgreSQL at {make_url(dsn)!r} is unreachable: {e!r}"
        if os.environ.get("BLETHER_TEST_POSTGRES") == "skip":
            pytest.skip(message)
        pytest.fail(message + " (set BLETHER_TEST_POSTGRES=skip to skip these tests)")
    yield databases
    databases.drop_all()


@pytest.fixture(scope="module")
def postgres_module_url(postgres: PostgresDatabases) -> str:
    """One database shared by the tests of a module (truncated before each test)."""
    return postgres.create()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The database the ``storage`` fixture opens."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'blether.db'}"
    return str(request.getfixturevalue("postgres_module_url"))


@pytest.fixture
def fresh_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A brand-new, empty database (no schema yet) for migration/durability tests."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'fresh-{uuid.uuid4().hex[:8]}.db'}"
    databases: PostgresDatabases = request.getfixturevalue("postgres")
    return databases.create()


async def truncate_all(storage: Storage) -> None:
    assert isinstance(storage, SqlStorage)
    names = ", ".join(t.name for t in metadata.sorted_tables)
    async with storage.db.write() as conn:
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
async def storage(backend: str, storage_url: str) -> AsyncIterator[Storage]:
    st = await open_storage(storage_url)
    if backend == "postgresql":
        await truncate_all(st)
    try:
        yield st
    finally:
        await st.close()
