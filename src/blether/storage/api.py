"""Storage interfaces: the protocols and value types feature code programs against.

Feature modules import only from here (or from ``blether.storage``, which re-exports
these names); the SQL backends in ``blether.storage.sql`` implement them, and one
contract test-suite (``tests/storage/test_contract.py``) checks every backend
against the same expectations.

Conventions shared by every store:

* ``user`` is the prepared bare JID text of the account (``"alice@localhost"``);
  preparation (RFC 7622) happens before storage, which compares strings exactly.
* Every method is one short transaction: it either fully happens or not at all.
* Every database failure is raised as :class:`StorageError` (with the driver
  error as ``__cause__``); callers map it to ``internal-server-error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = [
    "AccountExists",
    "AccountNotFound",
    "AccountStore",
    "BlocklistStore",
    "KeyValueStore",
    "OfflineMessage",
    "OfflineStore",
    "RosterItem",
    "RosterStore",
    "ScramCredentials",
    "Storage",
    "StorageError",
]


class StorageError(Exception):
    """The database failed (unreachable, closed, constraint broken, …)."""


class AccountExists(StorageError):
    """``AccountStore.create`` was asked for an account that already exists."""


class AccountNotFound(StorageError):
    """The operation needs an existing account and there is none."""


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """RFC 5802 stored keys for one hash; the password itself is never stored."""

    mechanism: str  # "SCRAM-SHA-1" | "SCRAM-SHA-256"
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


class AccountStore(Protocol):
    """Accounts and their SCRAM credentials (one set per mechanism)."""

    async def create(self, user: str, credentials: Sequence[ScramCredentials]) -> None:
        """Create the account; raises :class:`AccountExists` if it exists."""

    async def exists(self, user: str) -> bool: ...

    async def get_credentials(self, user: str, mechanism: str) -> ScramCredentials | None:
        """The stored keys for ``mechanism``, ``None`` if no account or no such hash."""

    async def set_credentials(self, user: str, credentials: Sequence[ScramCredentials]) -> None:
        """Replace all credentials (a password change invalidates every old hash).

        Raises :class:`AccountNotFound` if there is no such account.
        """

    async def delete(self, user: str) -> None:
        """Delete the account row and its credentials only (see ``Storage.purge_user``)."""

    async def list(self, domain: str) -> list[str]:
        """Bare JIDs of the domain's accounts, sorted by code point."""

    async def count(self, domain: str) -> int: ...


@dataclass(frozen=True, slots=True)
class RosterItem:
    """One RFC 6121 §2.1.2 roster item."""

    jid: str  # contact bare JID
    name: str | None = None
    subscription: str = "none"  # none | to | from | both
    ask: bool = False  # pending outbound request (ask='subscribe')
    approved: bool = False  # pre-approved inbound request (RFC 6121 §3.4)
    groups: tuple[str, ...] = ()


class RosterStore(Protocol):
    """Rosters with RFC 6121 §2.6 versioning and pending inbound subscriptions.

    Each user has a version counter that every change (put or remove) increases;
    removed items leave a tombstone carrying the version of their removal, so a
    client presenting an older version can be sent only what changed.
    """

    async def get_all(self, user: str) -> tuple[list[RosterItem], int]:
        """All items (sorted by contact JID) and the current version (0 if none)."""

    async def load(self, user: str) -> tuple[list[RosterItem], int, list[tuple[str, str]]]:
        """``get_all`` and ``get_pending_in`` from one snapshot, in one transaction.

        What a login needs (roster get, presence broadcast and probes, the stored
        requests redelivered at initial presence) in a single read.
        """

    async def get(self, user: str, contact: str) -> RosterItem | None: ...

    async def put(self, user: str, item: RosterItem) -> int:
        """Insert or replace the item atomically; returns the new version."""

    async def remove(self, user: str, contact: str) -> int | None:
        """Remove the item; returns the new version, ``None`` if there was none."""

    async def changes_since(
        self, user: str, version: int
    ) -> tuple[list[RosterItem], list[str], int] | None:
        """``(changed items, removed contact JIDs, current version)`` after ``version``.

        ``None`` when ``version`` cannot be answered with a delta (never issued,
        older than the kept history, or newer than the current version): the caller
        then sends the whole roster.
        """

    async def count(self, user: str) -> int: ...

    # Pending inbound subscription requests (RFC 6121 §3.1.3) are kept until the
    # user answers them and redelivered at every initial presence; they are not
    # roster items.
    async def add_pending_in(self, user: str, contact: str, stanza_xml: str) -> None:
        """Store the request; a repeated one replaces the stanza but keeps its place."""

    async def remove_pending_in(self, user: str, contact: str) -> bool:
        """Forget the request; ``True`` if there was one."""

    async def get_pending_in(self, user: str) -> list[tuple[str, str]]:
        """``(contact, stanza_xml)`` pairs, oldest first."""

    async def has_pending_in(self, user: str, contact: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class OfflineMessage:
    """A stored message (XEP-0160); ``stamp`` is timezone-aware UTC."""

    id: int
    stanza_xml: str
    stamp: datetime


class OfflineStore(Protocol):
    """Messages kept for an account while it has no available resource (XEP-0160)."""

    async def push(self, user: str, stanza_xml: str, stamp: datetime, quota: int) -> int | None:
        """Store a message; its id, or ``None`` if the user already has ``quota``.

        The count check and the insert are one atomic step: concurrent pushes can
        never exceed the quota. ``stamp`` must be timezone-aware.
        """

    async def list(self, user: str, limit: int | None = None) -> list[OfflineMessage]:
        """Stored messages, oldest first, at most ``limit`` of them."""

    async def delete(self, user: str, ids: Sequence[int]) -> None:
        """Delete these messages of ``user`` (unknown ids are ignored)."""

    async def count(self, user: str) -> int: ...


class KeyValueStore(Protocol):
    """Per-account documents: private XML (XEP-0049), vCard (XEP-0054), last activity…"""

    async def get(self, user: str, store: str, key: str) -> str | None: ...

    async def set(self, user: str, store: str, key: str, value: str) -> None: ...

    async def set_many(self, user: str, entries: Sequence[tuple[str, str, str]]) -> None:
        """Set several ``(store, key, value)`` of one user in one transaction (a later
        entry for the same store and key wins)."""

    async def delete(self, user: str, store: str, key: str) -> None: ...

    async def keys(self, user: str, store: str) -> list[str]:
        """The keys of one store, sorted by code point."""


class BlocklistStore(Protocol):
    """Blocked JIDs of an account (XEP-0191), in any JID form, in insertion order."""

    async def get(self, user: str) -> list[str]: ...

    async def add(self, user: str, jids: Sequence[str]) -> None:
        """Append the JIDs not already blocked (idempotent)."""

    async def remove(self, user: str, jids: Sequence[str]) -> None: ...

    async def clear(self, user: str) -> None: ...


class Storage(Protocol):
    """One opened database with all the stores."""

    accounts: AccountStore
    roster: RosterStore
    offline: OfflineStore
    kv: KeyValueStore
    blocklist: BlocklistStore

    async def purge_user(self, user: str) -> None:
        """Remove every trace of the account in one transaction."""

    async def close(self) -> None:
        """Release connections; later calls raise :class:`StorageError`."""

    async def ping(self) -> None:
        """Raise :class:`StorageError` if the database is unreachable."""
