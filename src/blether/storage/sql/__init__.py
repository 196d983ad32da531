"""SQL storage backend (SQLite and PostgreSQL) on SQLAlchemy Core 2.

``engine`` builds the databases and their transactions (PostgreSQL on SQLAlchemy's
asyncio engine, SQLite in ``sqlite_engine``: statements on the event loop, group
commit in a worker thread), ``schema`` holds the tables, ``migrations`` the Alembic
history, ``stores``/``roster`` the store classes.
"""

from __future__ import annotations

from sqlalchemy import delete, select

from ..api import AccountStore, BlocklistStore, KeyValueStore, OfflineStore, RosterStore
from . import schema as s
from .engine import Database, create_database
from .migrate import upgrade_to_head
from .roster import SqlRosterStore
from .stores import SqlAccountStore, SqlBlocklistStore, SqlKeyValueStore, SqlOfflineStore

__all__ = ["SqlStorage", "open_sql_storage"]


class SqlStorage:
    """All stores on one :class:`Database`; implements ``blether.storage.Storage``."""

    accounts: AccountStore
    roster: RosterStore
    offline: OfflineStore
    kv: KeyValueStore
    blocklist: BlocklistStore

    def __init__(self, db: Database) -> None:
        self.db = db
        self.accounts = SqlAccountStore(db)
        self.roster = SqlRosterStore(db)
        self.offline = SqlOfflineStore(db)
        self.kv = SqlKeyValueStore(db)
        self.blocklist = SqlBlocklistStore(db)

    async def purge_user(self, user: str) -> None:
        async with self.db.write() as conn:
            # Lock rows go first, in the order the stores take them (see
            # stores.py), so a concurrent write of this user waits instead of
            # deadlocking; the credentials go with the account (ON DELETE CASCADE).
            await conn.execute(delete(s.accounts).where(s.accounts.c.jid == user))
            for table in (
                s.roster_versions,
                s.roster_items,
                s.roster_tombstones,
                s.roster_pending_in,
                s.offline_counters,
                s.offline_messages,
                s.kv,
                s.blocklist,
            ):
                await conn.execute(delete(table).where(table.c.owner == user))

    async def ping(self) -> None:
        async with self.db.read() as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        await self.db.close()


async def open_sql_storage(url: str) -> SqlStorage:
    """Open the database at ``url`` and migrate its schema to the newest revision."""
    db = create_database(url)
    try:
        await db.prepare()
        await upgrade_to_head(db)
    except BaseException:
        await db.close()
        raise
    return SqlStorage(db)
