"""SQL roster store: items, RFC 6121 §2.6 versions with tombstones, pending requests.

Versioning. Each user has one ``roster_versions`` row; every put or remove bumps
it in the same transaction as the change and stamps the item (or the tombstone of
a removed item) with the new version. ``changes_since(v)`` is then "items and
tombstones with a version above v".

* The row is the per-user lock: every roster write bumps it *first*, so on
  PostgreSQL writers of one user queue on it, commit in version order and never
  deadlock on item rows.
* A new counter starts at the current time in microseconds rather than at 1. A
  purged and re-created account therefore never reissues a version number a
  client may still have cached for the old roster (it would otherwise be told
  "nothing changed" about someone else's roster).
* ``oldest`` is the lowest version a delta can be computed from: the counter's
  start, raised when old tombstones are pruned (at most ``TOMBSTONE_LIMIT`` per
  user are kept). Older, unknown or future versions get ``None`` and the caller
  sends the full roster.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Row, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..api import RosterItem
from . import schema as s
from .engine import Database
from .stores import Rollback, insert, now_micros

__all__ = ["TOMBSTONE_LIMIT", "SqlRosterStore"]

# Tombstones kept per user; beyond this the oldest are pruned and clients with a
# version from before them get the full roster (which is always correct).
TOMBSTONE_LIMIT = 1000

_SUBSCRIPTIONS = frozenset({"none", "to", "from", "both"})

_items = s.roster_items
_versions = s.roster_versions
_tombstones = s.roster_tombstones
_pending = s.roster_pending_in


def _item_from_row(row: Row[*tuple[Any, ...]]) -> RosterItem:
    return RosterItem(
        jid=row.contact,
        name=row.name,
        subscription=row.subscription,
        ask=bool(row.ask),
        approved=bool(row.approved),
        groups=tuple(json.loads(row.groups)),
    )


_ITEM_COLUMNS = (
    _items.c.contact,
    _items.c.name,
    _items.c.subscription,
    _items.c.ask,
    _items.c.approved,
    _items.c.groups,
)


class SqlRosterStore:
    """Rosters, versions and pending inbound subscription requests."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def _bump(self, conn: AsyncConnection, user: str) -> int:
        """Increment (or start) the user's version counter; locks its row."""
        start = now_micros()
        stmt = (
            insert(self._db, _versions)
            .values(owner=user, version=start + 1, oldest=start)
            .on_conflict_do_update(
                index_elements=["owner"], set_={"version": _versions.c.version + 1}
            )
            .returning(_versions.c.version)
        )
        return int((await conn.execute(stmt)).scalar_one())

    async def get_all(self, user: str) -> tuple[list[RosterItem], int]:
        async with self._db.read() as conn:
            # One snapshot: the version matches the items exactly.
            version = (
                await conn.execute(select(_versions.c.version).where(_versions.c.owner == user))
            ).scalar()
            rows = await conn.execute(
                select(*_ITEM_COLUMNS).where(_items.c.owner == user).order_by(_items.c.contact)
            )
            items = [_item_from_row(r) for r in rows]
        return items, int(version or 0)

    async def load(self, user: str) -> tuple[list[RosterItem], int, list[tuple[str, str]]]:
        async with self._db.read() as conn:
            # One snapshot: items, version and pending requests agree with each other.
            version = (
                await conn.execute(select(_versions.c.version).where(_versions.c.owner == user))
            ).scalar()
            rows = await conn.execute(
                select(*_ITEM_COLUMNS).where(_items.c.owner == user).order_by(_items.c.contact)
            )
            items = [_item_from_row(r) for r in rows]
            pending = await conn.execute(
                select(_pending.c.contact, _pending.c.stanza)
                .where(_pending.c.owner == user)
                .order_by(_pending.c.id)
            )
            requests = [(r.contact, r.stanza) for r in pending]
        return items, int(version or 0), requests

    async def get(self, user: str, contact: str) -> RosterItem | None:
        stmt = select(*_ITEM_COLUMNS).where(_items.c.owner == user, _items.c.contact == contact)
        async with self._db.read() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _item_from_row(row)

    async def put(self, user: str, item: RosterItem) -> int:
        if item.subscription not in _SUBSCRIPTIONS:
            raise ValueError(f"invalid subscription {item.subscription!r}")
        values = {
            "name": item.name,
            "subscription": item.subscription,
            "ask": item.ask,
            "approved": item.approved,
            "groups": json.dumps(list(item.groups), ensure_ascii=False),
        }
        async with self._db.write() as conn:
            version = await self._bump(conn, user)
            await conn.execute(
                insert(self._db, _items)
                .values(owner=user, contact=item.jid, version=version, **values)
                .on_conflict_do_update(
                    index_elements=["owner", "contact"], set_={**values, "version": version}
                )
            )
            # A re-added contact is a change, no longer a removal.
            await conn.execute(
                delete(_tombstones).where(
                    _tombstones.c.owner == user, _tombstones.c.contact == item.jid
                )
            )
        return version

    async def remove(self, user: str, contact: str) -> int | None:
        try:
            async with self._db.write() as conn:
                version = await self._bump(conn, user)  # lock first, like put()
                result = await conn.execute(
                    delete(_items).where(_items.c.owner == user, _items.c.contact == contact)
                )
                if result.rowcount == 0:
                    raise Rollback  # nothing removed: undo the bump
                await conn.execute(
                    insert(self._db, _tombstones)
                    .values(owner=user, contact=contact, version=version)
                    .on_conflict_do_update(
                        index_elements=["owner", "contact"], set_={"version": version}
                    )
                )
                await self._prune_tombstones(conn, user)
        except Rollback:
            return None
        return version

    async def _prune_tombstones(self, conn: AsyncConnection, user: str) -> None:
        t = _tombstones.c
        total = (
            await conn.execute(select(func.count()).where(t.owner == user))
        ).scalar_one()
        excess = int(total) - TOMBSTONE_LIMIT
        if excess <= 0:
            return
        cutoff = (
            await conn.execute(
                select(t.version)
                .where(t.owner == user)
                .order_by(t.version)
                .offset(excess - 1)
                .limit(1)
            )
        ).scalar_one()
        await conn.execute(delete(_tombstones).where(t.owner == user, t.version <= cutoff))
        # Deltas from before the cutoff would miss the pruned removals.
        await conn.execute(
            _versions.update().where(_versions.c.owner == user).values(oldest=cutoff)
        )

    async def changes_since(
        self, user: str, version: int
    ) -> tuple[list[RosterItem], list[str], int] | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(_versions.c.version, _versions.c.oldest).where(
                        _versions.c.owner == user
                    )
                )
            ).first()
            if row is None:
                # Never changed: only the empty roster's version 0 is known.
                return ([], [], 0) if version == 0 else None
            current, oldest = int(row.version), int(row.oldest)
            if not oldest <= version <= current:
                return None
            if version == current:
                return [], [], current
            items = await conn.execute(
                select(*_ITEM_COLUMNS)
                .where(_items.c.owner == user, _items.c.version > version)
                .order_by(_items.c.version)
            )
            changed = [_item_from_row(r) for r in items]
            gone = await conn.execute(
                select(_tombstones.c.contact)
                .where(_tombstones.c.owner == user, _tombstones.c.version > version)
                .order_by(_tombstones.c.version)
            )
            removed = list(gone.scalars().all())
        return changed, removed, current

    async def count(self, user: str) -> int:
        async with self._db.read() as conn:
            stmt = select(func.count()).where(_items.c.owner == user)
            return int((await conn.execute(stmt)).scalar_one())

    async def add_pending_in(self, user: str, contact: str, stanza_xml: str) -> None:
        # A repeated request updates the stored stanza but keeps its place: the
        # request has been pending since it first arrived.
        stmt = (
            insert(self._db, _pending)
            .values(owner=user, contact=contact, stanza=stanza_xml)
            .on_conflict_do_update(
                index_elements=["owner", "contact"], set_={"stanza": stanza_xml}
            )
        )
        async with self._db.write() as conn:
            await conn.execute(stmt)

    async def remove_pending_in(self, user: str, contact: str) -> bool:
        async with self._db.write() as conn:
            result = await conn.execute(
                delete(_pending).where(_pending.c.owner == user, _pending.c.contact == contact)
            )
            return result.rowcount > 0

    async def get_pending_in(self, user: str) -> list[tuple[str, str]]:
        stmt = (
            select(_pending.c.contact, _pending.c.stanza)
            .where(_pending.c.owner == user)
            .order_by(_pending.c.id)
        )
        async with self._db.read() as conn:
            return [(r.contact, r.stanza) for r in await conn.execute(stmt)]

    async def has_pending_in(self, user: str, contact: str) -> bool:
        stmt = select(_pending.c.id).where(
            _pending.c.owner == user, _pending.c.contact == contact
        )
        async with self._db.read() as conn:
            return (await conn.execute(stmt)).first() is not None
