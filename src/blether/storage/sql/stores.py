"""SQL implementations of the account, offline, key-value and blocklist stores.

Every public method is one transaction from :class:`~.engine.Database` (``read()``
or ``write()``). Where a method must serialise with concurrent writers of the same
user, it first touches that user's "lock row" (``accounts``, ``offline_counters``;
``roster_versions`` in ``roster.py``) and then the dependent rows, always in that
order, so PostgreSQL transactions queue on the row lock instead of deadlocking.
On SQLite ``BEGIN IMMEDIATE`` already serialises every writer.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..api import AccountExists, AccountNotFound, OfflineMessage, ScramCredentials
from . import schema as s
from .engine import Database

__all__ = [
    "Rollback",
    "SqlAccountStore",
    "SqlBlocklistStore",
    "SqlKeyValueStore",
    "SqlOfflineStore",
    "insert",
]

# Bound the number of parameters per statement (SQLite's limit is 32766).
_CHUNK = 500


class Rollback(Exception):
    """Raised inside a write transaction to undo it without reporting a failure."""


def insert(db: Database, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports ``ON CONFLICT`` on the database's dialect."""
    if db.dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def now_micros() -> int:
    return time.time_ns() // 1000


def to_micros(stamp: datetime) -> int:
    if stamp.tzinfo is None or stamp.utcoffset() is None:
        # A naive time is ambiguous; refusing it beats silently shifting it.
        raise ValueError("stamp must be timezone-aware")
    delta = stamp - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    seconds, micro = divmod(micros, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micro)


def chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _domain_of(user: str) -> str:
    # A prepared bare JID is local@domain; neither part may contain '@'.
    return user.partition("@")[2] or user


def _credential_rows(user: str, credentials: Sequence[ScramCredentials]) -> list[dict[str, Any]]:
    mechanisms = [c.mechanism for c in credentials]
    if len(set(mechanisms)) != len(mechanisms):
        raise ValueError(f"duplicate SCRAM mechanism in {mechanisms}")
    return [
        {
            "jid": user,
            "mechanism": c.mechanism,
            "salt": c.salt,
            "iterations": c.iterations,
            "stored_key": c.stored_key,
            "server_key": c.server_key,
        }
        for c in credentials
    ]


class SqlAccountStore:
    """Accounts; credentials live in a child table deleted with the account."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, user: str, credentials: Sequence[ScramCredentials]) -> None:
        rows = _credential_rows(user, credentials)
        async with self._db.write() as conn:
            # ON CONFLICT DO NOTHING instead of catching IntegrityError: two racing
            # creates are told apart without parsing driver errors.
            stmt = (
                insert(self._db, s.accounts)
                .values(jid=user, domain=_domain_of(user), created_at=now_micros())
                .on_conflict_do_nothing(index_elements=["jid"])
                .returning(s.accounts.c.jid)
            )
            if (await conn.execute(stmt)).first() is None:
                raise AccountExists(user)
            if rows:
                await conn.execute(s.account_credentials.insert(), rows)

    async def exists(self, user: str) -> bool:
        async with self._db.read() as conn:
            stmt = select(s.accounts.c.jid).where(s.accounts.c.jid == user)
            return (await conn.execute(stmt)).first() is not None

    async def get_credentials(self, user: str, mechanism: str) -> ScramCredentials | None:
        c = s.account_credentials.c
        stmt = select(c.mechanism, c.salt, c.iterations, c.stored_key, c.server_key).where(
            c.jid == user, c.mechanism == mechanism
        )
        async with self._db.read() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        return ScramCredentials(
            mechanism=row.mechanism,
            salt=bytes(row.salt),
            iterations=row.iterations,
            stored_key=bytes(row.stored_key),
            server_key=bytes(row.server_key),
        )

    async def set_credentials(self, user: str, credentials: Sequence[ScramCredentials]) -> None:
        rows = _credential_rows(user, credentials)
        async with self._db.write() as conn:
            # Locking the account row keeps a concurrent delete from slipping in
            # between the check and the insert.
            lock = select(s.accounts.c.jid).where(s.accounts.c.jid == user).with_for_update()
            if (await conn.execute(lock)).first() is None:
                raise AccountNotFound(user)
            await conn.execute(
                delete(s.account_credentials).where(s.account_credentials.c.jid == user)
            )
            if rows:
                await conn.execute(s.account_credentials.insert(), rows)

    async def delete(self, user: str) -> None:
        async with self._db.write() as conn:
            # Credentials go with it (ON DELETE CASCADE).
            await conn.execute(delete(s.accounts).where(s.accounts.c.jid == user))

    async def list(self, domain: str) -> builtins.list[str]:
        async with self._db.read() as conn:
            stmt = select(s.accounts.c.jid).where(s.accounts.c.domain == domain)
            jids = (await conn.execute(stmt)).scalars().all()
        # Sorted here, not in SQL: PostgreSQL would use the database's locale
        # collation, SQLite code points; Python gives the same order on both.
        return sorted(jids)

    async def count(self, domain: str) -> int:
        async with self._db.read() as conn:
            stmt = select(func.count()).where(s.accounts.c.domain == domain)
            return int((await conn.execute(stmt)).scalar_one())


class SqlOfflineStore:
    """XEP-0160 offline messages with a per-user counter row for the quota."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def push(self, user: str, stanza_xml: str, stamp: datetime, quota: int) -> int | None:
        micros = to_micros(stamp)
        counters = s.offline_counters
        try:
            async with self._db.write() as conn:
                # Incrementing the counter row locks it (PostgreSQL) until commit: a
                # concurrent push for the same user waits here and then sees our
                # increment, so the quota cannot be overshot.
                bump = (
                    insert(self._db, counters)
                    .values(owner=user, messages=1)
                    .on_conflict_do_update(
                        index_elements=["owner"],
                        set_={"messages": counters.c.messages + 1},
                    )
                    .returning(counters.c.messages)
                )
                if (await conn.execute(bump)).scalar_one() > quota:
                    raise Rollback
                stmt = (
                    s.offline_messages.insert()
                    .values(owner=user, stamp=micros, stanza=stanza_xml)
                    .returning(s.offline_messages.c.id)
                )
                return int((await conn.execute(stmt)).scalar_one())
        except Rollback:
            return None

    async def list(self, user: str, limit: int | None = None) -> builtins.list[OfflineMessage]:
        m = s.offline_messages.c
        stmt = select(m.id, m.stanza, m.stamp).where(m.owner == user).order_by(m.id)
        if limit is not None:
            stmt = stmt.limit(max(limit, 0))
        async with self._db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            OfflineMessage(id=r.id, stanza_xml=r.stanza, stamp=from_micros(r.stamp)) for r in rows
        ]

    async def delete(self, user: str, ids: Sequence[int]) -> None:
        wanted = sorted(set(ids))
        if not wanted:
            return
        counters, m = s.offline_counters, s.offline_messages
        async with self._db.write() as conn:
            # Counter row first (the same order as push and purge_user).
            lock = select(counters.c.messages).where(counters.c.owner == user).with_for_update()
            if (await conn.execute(lock)).first() is None:
                return  # no counter row: the user has no messages
            removed = 0
            for part in chunks(wanted):
                result = await conn.execute(
                    delete(m).where(m.c.owner == user, m.c.id.in_(part))
                )
                removed += result.rowcount
            if removed:
                await conn.execute(
                    update(counters)
                    .where(counters.c.owner == user)
                    .values(messages=counters.c.messages - removed)
                )

    async def count(self, user: str) -> int:
        c = s.offline_counters.c
        async with self._db.read() as conn:
            value = (await conn.execute(select(c.messages).where(c.owner == user))).scalar()
        return int(value or 0)


class SqlKeyValueStore:
    """Per-account documents keyed by (store, key)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user: str, store: str, key: str) -> str | None:
        c = s.kv.c
        stmt = select(c.value).where(c.owner == user, c.store == store, c.key == key)
        async with self._db.read() as conn:
            value: str | None = (await conn.execute(stmt)).scalar()
        return value

    async def set(self, user: str, store: str, key: str, value: str) -> None:
        stmt = (
            insert(self._db, s.kv)
            .values(owner=user, store=store, key=key, value=value)
            .on_conflict_do_update(index_elements=["owner", "store", "key"], set_={"value": value})
        )
        async with self._db.write() as conn:
            await conn.execute(stmt)

    async def set_many(self, user: str, entries: Sequence[tuple[str, str, str]]) -> None:
        if not entries:
            return
        stmt = insert(self._db, s.kv)
        stmt = stmt.on_conflict_do_update(
            index_elements=["owner", "store", "key"], set_={"value": stmt.excluded.value}
        )
        # De-duplicated first (the later entry wins): a multi-row INSERT may not touch one
        # row twice.
        latest = {(st, k): v for st, k, v in entries}
        rows = [{"owner": user, "store": st, "key": k, "value": v}
                for (st, k), v in latest.items()]
        async with self._db.write() as conn:
            await conn.execute(stmt, rows)

    async def delete(self, user: str, store: str, key: str) -> None:
        c = s.kv.c
        async with self._db.write() as conn:
            await conn.execute(
                delete(s.kv).where(c.owner == user, c.store == store, c.key == key)
            )

    async def keys(self, user: str, store: str) -> builtins.list[str]:
        c = s.kv.c
        async with self._db.read() as conn:
            rows = (await conn.execute(select(c.key).where(c.owner == user, c.store == store)))
            return sorted(rows.scalars().all())


class SqlBlocklistStore:
    """XEP-0191 blocklists; an autoincrement id keeps insertion order."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user: str) -> builtins.list[str]:
        c = s.blocklist.c
        async with self._db.read() as conn:
            rows = await conn.execute(select(c.jid).where(c.owner == user).order_by(c.id))
            return builtins.list(rows.scalars().all())

    async def add(self, user: str, jids: Sequence[str]) -> None:
        unique = builtins.list(dict.fromkeys(jids))  # de-duplicated, order kept
        if not unique:
            return
        stmt = insert(self._db, s.blocklist).on_conflict_do_nothing(
            index_elements=["owner", "jid"]
        )
        async with self._db.write() as conn:
            # One row per statement execution, in order, so ids follow `jids`.
            await conn.execute(stmt, [{"owner": user, "jid": j} for j in unique])

    async def remove(self, user: str, jids: Sequence[str]) -> None:
        unique = builtins.list(dict.fromkeys(jids))
        if not unique:
            return
        c = s.blocklist.c
        async with self._db.write() as conn:
            for part in chunks(unique):
                await conn.execute(delete(s.blocklist).where(c.owner == user, c.jid.in_(part)))

    async def clear(self, user: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(delete(s.blocklist).where(s.blocklist.c.owner == user))
