"""Storage: the interfaces feature code uses and :func:`open_storage` to get one.

Feature code imports the protocols and value types from here (they live in
``api.py``); the backend is chosen by URL:

* ``sqlite:////abs/path.db`` (or ``sqlite:///relative.db``, ``sqlite://`` for a
  throw-away in-memory database; ``sqlite+pysqlite://`` is accepted too),
* ``postgresql://user@host:port/db`` (``postgres://``, ``postgresql+asyncpg://``).
"""

from __future__ import annotations

from .api import (
    AccountExists,
    AccountNotFound,
    AccountStore,
    BlocklistStore,
    KeyValueStore,
    OfflineMessage,
    OfflineStore,
    RosterItem,
    RosterStore,
    ScramCredentials,
    Storage,
    StorageError,
)

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
    "open_storage",
]


async def open_storage(url: str) -> Storage:
    """Open (creating or migrating the schema as needed) the database at ``url``.

    Raises :class:`ValueError` for a URL of an unsupported kind and
    :class:`StorageError` if the database cannot be reached or migrated.
    """
    # Imported here so that importing the interfaces does not load SQLAlchemy.
    from .sql import open_sql_storage

    return await open_sql_storage(url)
