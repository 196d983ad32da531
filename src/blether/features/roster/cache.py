"""Rosters of online users kept in memory (DESIGN.md §5), in front of the RosterStore.

Presence broadcasts read the whole roster on every presence change, so the roster of an
account with a bound session lives in memory; offline accounts are read from storage each
time. One read (`RosterStore.load`) brings the items, the version and the pending inbound
subscription requests: everything a login needs (roster get, broadcast, probes, requests
redelivered at initial presence). The cache is write-through: every write goes to storage
first and then to the cached copy, so it is never ahead of the database: rosters change only
through this cache while the server runs, except when an account is removed (the roster module
invalidates the copy on ACCOUNT_REMOVED; the CLI's `user del` next to a running server is not
seen, as before). The roster module drops the cached copy at the end of the last session's
SESSION_ENDED, after presence's unavailable broadcast has used it.

Every read-modify-write of one roster runs inside `edit(user)`, which holds that user's lock:
two resources (or a resource and an inbound subscription stanza) changing the same item
cannot interleave, and roster pushes sent while the lock is held go out in modification order
(RFC 6121 §2.1.6). Loading into the cache happens under the same lock, so a load can never
overwrite a newer write with an older read. Nothing may route a stanza while holding a lock:
a local contact's server-side processing takes the contact's lock, and two users doing that
to each other would deadlock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from blether.storage.api import RosterItem, RosterStore


@dataclass(slots=True)
class _Roster:
    items: dict[str, RosterItem]
    version: int
    # Pending inbound requests (RFC 6121 §3.1.3): contact -> stored stanza, oldest first (a
    # repeated request replaces the stanza and keeps its place, as the store does).
    pending: dict[str, str]


@dataclass(slots=True)
class _Lock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class RosterView:
    """One user's roster while its lock is held (handed out by `RosterCache.edit`)."""

    def __init__(self, cache: RosterCache, user: str) -> None:
        self._cache = cache
        self.user = user

    async def _roster(self) -> _Roster | None:
        return await self._cache._loaded(self.user)

    async def get(self, contact: str) -> RosterItem | None:
        roster = await self._roster()
        if roster is not None:
            return roster.items.get(contact)
        return await self._cache.store.get(self.user, contact)

    async def items(self) -> tuple[list[RosterItem], int]:
        """All items, sorted by contact JID, and the roster version."""
        roster = await self._roster()
        if roster is not None:
            return sorted(roster.items.values(), key=lambda i: i.jid), roster.version
        return await self._cache.store.get_all(self.user)

    async def count(self) -> int:
        roster = await self._roster()
        if roster is not None:
            return len(roster.items)
        return await self._cache.store.count(self.user)

    async def version(self) -> int | None:
        """The roster version, None when the roster is not cached (the user is offline)."""
        roster = await self._roster()
        return None if roster is None else roster.version

    async def has_pending(self, contact: str) -> bool:
        roster = await self._roster()
        if roster is not None:
            return contact in roster.pending
        return await self._cache.store.has_pending_in(self.user, contact)

    async def pending(self) -> list[tuple[str, str]]:
        """`(contact, stanza_xml)` of the pending inbound requests, oldest first."""
        roster = await self._roster()
        if roster is not None:
            return list(roster.pending.items())
        return await self._cache.store.get_pending_in(self.user)

    async def add_pending(self, contact: str, stanza_xml: str) -> None:
        await self._cache.store.add_pending_in(self.user, contact, stanza_xml)
        roster = self._cache._rosters.get(self.user)
        if roster is not None:
            roster.pending[contact] = stanza_xml  # an existing key keeps its place

    async def remove_pending(self, contact: str) -> bool:
        """Forget the request; True if there was one."""
        removed = await self._cache.store.remove_pending_in(self.user, contact)
        roster = self._cache._rosters.get(self.user)
        if roster is not None:
            roster.pending.pop(contact, None)
        return removed

    async def put(self, item: RosterItem) -> int:
        """Store the item; returns the new roster version."""
        version = await self._cache.store.put(self.user, item)
        roster = self._cache._rosters.get(self.user)
        if roster is not None:
            roster.items[item.jid] = item
            roster.version = version
        return version

    async def remove(self, contact: str) -> int | None:
        """Remove the item; the new version, or None if there was no such item."""
        version = await self._cache.store.remove(self.user, contact)
        roster = self._cache._rosters.get(self.user)
        if roster is not None and version is not None:
            roster.items.pop(contact, None)
            roster.version = version
        return version


class RosterCache:
    def __init__(self, store: RosterStore, keep: Callable[[str], bool]) -> None:
        """`keep(user)` says whether the user's roster should stay in memory (is online)."""
        self.store = store
        self._keep = keep
        self._rosters: dict[str, _Roster] = {}
        self._locks: dict[str, _Lock] = {}

    @asynccontextmanager
    async def edit(self, user: str) -> AsyncIterator[RosterView]:
        """Hold the user's roster lock for a read-modify-write."""
        entry = self._locks.get(user)
        if entry is None:
            entry = self._locks[user] = _Lock()
        entry.users += 1
        try:
            async with entry.lock:
                yield RosterView(self, user)
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[user]

    async def _loaded(self, user: str) -> _Roster | None:
        """The cached roster (loading it if the user is online); called with the lock held."""
        roster = self._rosters.get(user)
        if roster is None and self._keep(user):
            items, version, pending = await self.store.load(user)
            roster = _Roster({i.jid: i for i in items}, version, dict(pending))
            if self._keep(user):  # still online after the read
                self._rosters[user] = roster
        return roster

    async def get(self, user: str, contact: str) -> RosterItem | None:
        roster = self._rosters.get(user)
        if roster is not None:  # the fast path: no lock, no await
            return roster.items.get(contact)
        async with self.edit(user) as view:
            return await view.get(contact)

    async def items(self, user: str) -> list[RosterItem]:
        roster = self._rosters.get(user)
        if roster is not None:
            return sorted(roster.items.values(), key=lambda i: i.jid)
        async with self.edit(user) as view:
            return (await view.items())[0]

    async def pending(self, user: str) -> list[tuple[str, str]]:
        """The user's pending inbound requests, oldest first."""
        roster = self._rosters.get(user)
        if roster is not None:
            return list(roster.pending.items())
        async with self.edit(user) as view:
            return await view.pending()

    def drop(self, user: str) -> None:
        """Forget the user's roster (the last session ended)."""
        self._rosters.pop(user, None)

    async def invalidate(self, user: str) -> None:
        """Drop the cached copy under the user's lock, so that no load in progress can put
        back what it read before (storage changed behind the cache: account removal)."""
        async with self.edit(user):
            self.drop(user)

    def cached(self, user: str) -> bool:
        return user in self._rosters
