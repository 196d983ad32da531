"""SQL implementations of the account, offline, key-value and blocklist stores.

Every public method is one transaction from :class:`~.engine.Database` (``read()``
or ``write()``). Where a method must serialise with concurrent writers of the same
user, it first touches that user's "lock row" (``accounts``, ``offline_counters``;
``roster_versions`` in ``roster.py``) and then the dependent rows, always in that
order, so PostgreSQL transactions queue on the row lock instead of deadlocking.
On SQLite ``BEGIN IMMEDIATE`` already serialises every writer.

Statements are prebuilt once (``statements.py``) and executed with named parameters.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from ..api import AccountExists, AccountNotFound, OfflineMessage, ScramCredentials
from . import statements as q
from .engine import Database

__all__ = [
    "Rollback",
    "SqlAccountStore",
    "SqlBlocklistStore",
    "SqlKeyValueStore",
    "SqlOfflineStore",
]

# Bound the number of parameters per statement (SQLite's limit is 32766).
_CHUNK = 500


class Rollback(Exception):
    """Raised inside a write transaction to undo it without reporting a failure."""


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
        self._upserts = q.upserts(db.dialect)

    async def create(self, user: str, credentials: Sequence[ScramCredentials]) -> None:
        rows = _credential_rows(user, credentials)
        account = {"jid": user, "domain": _domain_of(user), "created_at": now_micros()}
        async with self._db.write() as conn:
            # ON CONFLICT DO NOTHING instead of catching IntegrityError: two racing
            # creates are told apart without parsing driver errors.
            if (await conn.execute(self._upserts.account_create, account)).first() is None:
                raise AccountExists(user)
            if rows:
                await conn.execute(q.CREDENTIALS_INSERT, rows)

    async def exists(self, user: str) -> bool:
        async with self._db.read() as conn:
            return (await conn.execute(q.ACCOUNT_EXISTS, {"user": user})).first() is not None

    async def get_credentials(self, user: str, mechanism: str) -> ScramCredentials | None:
        params = {"user": user, "mechanism": mechanism}
        async with self._db.read() as conn:
            row = (await conn.execute(q.CREDENTIALS_GET, params)).first()
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
        params = {"user": user}
        async with self._db.write() as conn:
            # Locking the account row keeps a concurrent delete from slipping in
            # between the check and the insert.
            if (await conn.execute(q.ACCOUNT_LOCK, params)).first() is None:
                raise AccountNotFound(user)
            await conn.execute(q.CREDENTIALS_DELETE, params)
            if rows:
                await conn.execute(q.CREDENTIALS_INSERT, rows)

    async def delete(self, user: str) -> None:
        async with self._db.write() as conn:
            # Credentials go with it (ON DELETE CASCADE).
            await conn.execute(q.ACCOUNT_DELETE, {"user": user})

    async def list(self, domain: str) -> builtins.list[str]:
        async with self._db.read() as conn:
            jids = (await conn.execute(q.ACCOUNTS_OF_DOMAIN, {"domain": domain})).scalars().all()
        # Sorted here, not in SQL: PostgreSQL would use the database's locale
        # collation, SQLite code points; Python gives the same order on both.
        return sorted(jids)

    async def count(self, domain: str) -> int:
        async with self._db.read() as conn:
            return int((await conn.execute(q.ACCOUNTS_COUNT, {"domain": domain})).scalar_one())


class SqlOfflineStore:
    """XEP-0160 offline messages with a per-user counter row for the quota."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._upserts = q.upserts(db.dialect)

    async def push(self, user: str, stanza_xml: str, stamp: datetime, quota: int) -> int | None:
        message = {"owner": user, "stamp": to_micros(stamp), "stanza": stanza_xml}
        try:
            async with self._db.write() as conn:
                # Incrementing the counter row locks it (PostgreSQL) until commit: a
                # concurrent push for the same user waits here and then sees our
                # increment, so the quota cannot be overshot.
                bump = {"owner": user, "messages": 1}
                if (await conn.execute(self._upserts.offline_bump, bump)).scalar_one() > quota:
                    raise Rollback
                return int((await conn.execute(q.OFFLINE_INSERT, message)).scalar_one())
        except Rollback:
            return None

    async def list(self, user: str, limit: int | None = None) -> builtins.list[OfflineMessage]:
        async with self._db.read() as conn:
            if limit is None:
                result = await conn.execute(q.OFFLINE_LIST, {"user": user})
            else:
                params = {"user": user, "limit": max(limit, 0)}
                result = await conn.execute(q.OFFLINE_LIST_LIMIT, params)
            rows = result.all()
        return [
            OfflineMessage(id=mid, stanza_xml=stanza, stamp=from_micros(stamp))
            for mid, stanza, stamp in rows  # by position: cheaper than named access
        ]

    async def delete(self, user: str, ids: Sequence[int]) -> None:
        wanted = sorted(set(ids))
        if not wanted:
            return
        async with self._db.write() as conn:
            # Counter row first (the same order as push and purge_user).
            if (await conn.execute(q.OFFLINE_COUNTER_LOCK, {"user": user})).first() is None:
                return  # no counter row: the user has no messages
            removed = 0
            for part in chunks(wanted):
                result = await conn.execute(q.OFFLINE_DELETE, {"user": user, "ids": part})
                removed += result.rowcount
            if removed:
                params = {"user": user, "removed": removed}
                await conn.execute(q.OFFLINE_COUNTER_SUBTRACT, params)

    async def count(self, user: str) -> int:
        async with self._db.read() as conn:
            value = (await conn.execute(q.OFFLINE_COUNT, {"user": user})).scalar()
        return int(value or 0)


class SqlKeyValueStore:
    """Per-account documents keyed by (store, key)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._upserts = q.upserts(db.dialect)

    async def get(self, user: str, store: str, key: str) -> str | None:
        params = {"user": user, "store": store, "key": key}
        async with self._db.read() as conn:
            value: str | None = (await conn.execute(q.KV_GET, params)).scalar()
        return value

    async def set(self, user: str, store: str, key: str, value: str) -> None:
        row = {"owner": user, "store": store, "key": key, "value": value}
        async with self._db.write() as conn:
            await conn.execute(self._upserts.kv_set, row)

    async def set_many(self, user: str, entries: Sequence[tuple[str, str, str]]) -> None:
        if not entries:
            return
        # De-duplicated first (the later entry wins): a multi-row INSERT may not touch one
        # row twice.
        latest = {(st, k): v for st, k, v in entries}
        rows = [{"owner": user, "store": st, "key": k, "value": v}
                for (st, k), v in latest.items()]
        async with self._db.write() as conn:
            await conn.execute(self._upserts.kv_set, rows)

    async def delete(self, user: str, store: str, key: str) -> None:
        params = {"user": user, "store": store, "key": key}
        async with self._db.write() as conn:
            await conn.execute(q.KV_DELETE, params)

    async def keys(self, user: str, store: str) -> builtins.list[str]:
        async with self._db.read() as conn:
            rows = await conn.execute(q.KV_KEYS, {"user": user, "store": store})
            return sorted(rows.scalars().all())


class SqlBlocklistStore:
    """XEP-0191 blocklists; an autoincrement id keeps insertion order."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._upserts = q.upserts(db.dialect)

    async def get(self, user: str) -> builtins.list[str]:
        async with self._db.read() as conn:
            rows = await conn.execute(q.BLOCKLIST_GET, {"user": user})
            return builtins.list(rows.scalars().all())

    async def add(self, user: str, jids: Sequence[str]) -> None:
        unique = builtins.list(dict.fromkeys(jids))  # de-duplicated, order kept
        if not unique:
            return
        async with self._db.write() as conn:
            # One row per statement execution, in order, so ids follow `jids`.
            await conn.execute(
                self._upserts.blocklist_add, [{"owner": user, "jid": j} for j in unique]
            )

    async def remove(self, user: str, jids: Sequence[str]) -> None:
        unique = builtins.list(dict.fromkeys(jids))
        if not unique:
            return
        async with self._db.write() as conn:
            for part in chunks(unique):
                await conn.execute(q.BLOCKLIST_REMOVE, {"user": user, "jids": part})

    async def clear(self, user: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(q.BLOCKLIST_CLEAR, {"user": user})
