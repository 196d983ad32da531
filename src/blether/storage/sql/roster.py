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

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from ..api import RosterItem
from . import statements as q
from .engine import Database
from .stores import Rollback, now_micros

__all__ = ["TOMBSTONE_LIMIT", "SqlRosterStore"]

# Tombstones kept per user; beyond this the oldest are pruned and clients with a
# version from before them get the full roster (which is always correct).
TOMBSTONE_LIMIT = 1000

_SUBSCRIPTIONS = frozenset({"none", "to", "from", "both"})


_decode_json = json.JSONDecoder().decode


def _item_from_row(row: Row[*tuple[Any, ...]]) -> RosterItem:
    # Unpacked by position (statements.ROSTER_ITEM_COLUMNS) and "[]" without the JSON
    # decoder: half the cost of named access, and a login reads every item.
    contact, name, subscription, ask, approved, groups = row
    return RosterItem(
        jid=contact,
        name=name,
        subscription=subscription,
        ask=bool(ask),
        approved=bool(approved),
        groups=() if groups == "[]" else tuple(_decode_json(groups)),
    )


class SqlRosterStore:
    """Rosters, versions and pending inbound subscription requests."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._upserts = q.upserts(db.dialect)

    async def _bump(self, conn: AsyncConnection, user: str) -> int:
        """Increment (or start) the user's version counter; locks its row."""
        start = now_micros()
        row = {"owner": user, "version": start + 1, "oldest": start}
        return int((await conn.execute(self._upserts.roster_bump, row)).scalar_one())

    async def get_all(self, user: str) -> tuple[list[RosterItem], int]:
        params = {"user": user}
        async with self._db.read() as conn:
            # One snapshot: the version matches the items exactly.
            version = (await conn.execute(q.ROSTER_VERSION, params)).scalar()
            items = [_item_from_row(r) for r in await conn.execute(q.ROSTER_ITEMS, params)]
        return items, int(version or 0)

    async def load(self, user: str) -> tuple[list[RosterItem], int, list[tuple[str, str]]]:
        params = {"user": user}
        async with self._db.read() as conn:
            # One snapshot: items, version and pending requests agree with each other.
            version = (await conn.execute(q.ROSTER_VERSION, params)).scalar()
            items = [_item_from_row(r) for r in await conn.execute(q.ROSTER_ITEMS, params)]
            pending = await conn.execute(q.PENDING_IN, params)
            requests = [(contact, stanza) for contact, stanza in pending]
        return items, int(version or 0), requests

    async def get(self, user: str, contact: str) -> RosterItem | None:
        params = {"user": user, "contact": contact}
        async with self._db.read() as conn:
            row = (await conn.execute(q.ROSTER_ITEM, params)).first()
        return None if row is None else _item_from_row(row)

    async def put(self, user: str, item: RosterItem) -> int:
        if item.subscription not in _SUBSCRIPTIONS:
            raise ValueError(f"invalid subscription {item.subscription!r}")
        row: dict[str, Any] = {
            "owner": user,
            "contact": item.jid,
            "name": item.name,
            "subscription": item.subscription,
            "ask": item.ask,
            "approved": item.approved,
            "groups": json.dumps(list(item.groups), ensure_ascii=False),
        }
        async with self._db.write() as conn:
            version = await self._bump(conn, user)
            row["version"] = version
            await conn.execute(self._upserts.roster_item_put, row)
            # A re-added contact is a change, no longer a removal.
            await conn.execute(q.TOMBSTONE_DELETE, {"user": user, "contact": item.jid})
        return version

    async def remove(self, user: str, contact: str) -> int | None:
        params = {"user": user, "contact": contact}
        try:
            async with self._db.write() as conn:
                version = await self._bump(conn, user)  # lock first, like put()
                result = await conn.execute(q.ROSTER_ITEM_DELETE, params)
                if result.rowcount == 0:
                    raise Rollback  # nothing removed: undo the bump
                tombstone = {"owner": user, "contact": contact, "version": version}
                await conn.execute(self._upserts.tombstone_put, tombstone)
                await self._prune_tombstones(conn, user)
        except Rollback:
            return None
        return version

    async def _prune_tombstones(self, conn: AsyncConnection, user: str) -> None:
        total = (await conn.execute(q.TOMBSTONE_COUNT, {"user": user})).scalar_one()
        excess = int(total) - TOMBSTONE_LIMIT
        if excess <= 0:
            return
        skip = {"user": user, "skip": excess - 1}
        cutoff = (await conn.execute(q.TOMBSTONE_CUTOFF, skip)).scalar_one()
        params = {"user": user, "cutoff": cutoff}
        await conn.execute(q.TOMBSTONE_PRUNE, params)
        # Deltas from before the cutoff would miss the pruned removals.
        await conn.execute(q.ROSTER_SET_OLDEST, params)

    async def changes_since(
        self, user: str, version: int
    ) -> tuple[list[RosterItem], list[str], int] | None:
        async with self._db.read() as conn:
            row = (await conn.execute(q.ROSTER_VERSIONS, {"user": user})).first()
            if row is None:
                # Never changed: only the empty roster's version 0 is known.
                return ([], [], 0) if version == 0 else None
            current, oldest = int(row.version), int(row.oldest)
            if not oldest <= version <= current:
                return None
            if version == current:
                return [], [], current
            params = {"user": user, "since": version}
            items = await conn.execute(q.ROSTER_ITEMS_SINCE, params)
            changed = [_item_from_row(r) for r in items]
            gone = await conn.execute(q.TOMBSTONES_SINCE, params)
            removed = list(gone.scalars().all())
        return changed, removed, current

    async def count(self, user: str) -> int:
        async with self._db.read() as conn:
            return int((await conn.execute(q.ROSTER_COUNT, {"user": user})).scalar_one())

    async def add_pending_in(self, user: str, contact: str, stanza_xml: str) -> None:
        # A repeated request updates the stored stanza but keeps its place: the
        # request has been pending since it first arrived.
        row = {"owner": user, "contact": contact, "stanza": stanza_xml}
        async with self._db.write() as conn:
            await conn.execute(self._upserts.pending_in_put, row)

    async def remove_pending_in(self, user: str, contact: str) -> bool:
        params = {"user": user, "contact": contact}
        async with self._db.write() as conn:
            result = await conn.execute(q.PENDING_IN_DELETE, params)
            return result.rowcount > 0

    async def get_pending_in(self, user: str) -> list[tuple[str, str]]:
        async with self._db.read() as conn:
            pending = await conn.execute(q.PENDING_IN, {"user": user})
            return [(contact, stanza) for contact, stanza in pending]

    async def has_pending_in(self, user: str, contact: str) -> bool:
        params = {"user": user, "contact": contact}
        async with self._db.read() as conn:
            return (await conn.execute(q.PENDING_IN_HAS, params)).first() is not None
