"""Run the shipped Alembic migrations programmatically (no alembic.ini needed).

``open_storage`` calls :func:`upgrade_to_head` on every start: upgrading a database
that is already at head is a no-op, so opening the same database twice is fine.
The upgrade runs in one write transaction; on PostgreSQL it first takes a
transaction-scoped advisory lock so several nodes starting together migrate one at
a time, and on SQLite the ``BEGIN IMMEDIATE`` write lock does the same.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from .engine import Database

__all__ = ["MIGRATIONS_DIR", "VERSION_TABLE", "alembic_config", "upgrade_to_head"]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Our own name, so a PostgreSQL database shared with another Alembic-managed
# application cannot confuse the two histories.
VERSION_TABLE = "blether_alembic_version"
# Arbitrary constant key for pg_advisory_xact_lock ("blether" in ASCII, truncated).
_MIGRATION_LOCK_KEY = 0x626C6574686572


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged scripts, optionally bound."""
    cfg = Config()
    # Config values go through configparser interpolation: escape '%'.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def upgrade_to_head(db: Database) -> None:
    """Bring the schema to the newest revision (raises StorageError on failure)."""
    async with db.write() as conn:
        if db.dialect == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        await conn.run_sync(_upgrade)
