"""Alembic environment for Blether's SQL storage.

Three ways in:

* programmatic (``open_storage``): the caller passes an open connection in
  ``config.attributes["connection"]`` and owns the transaction;
* command line: the URL comes from ``-x url=…``, ``sqlalchemy.url`` or
  ``BLETHER_STORAGE_URL``, and the same engine set-up as the server is used
  (WAL, ``BEGIN IMMEDIATE``…);
* offline (``--sql``): the SQL is printed instead of run.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection

from blether.storage.sql.engine import create_database, normalise_url
from blether.storage.sql.migrate import VERSION_TABLE
from blether.storage.sql.schema import metadata

config = context.config


def _options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": metadata,
        "version_table": VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        "render_as_batch": dialect_name == "sqlite",
        "compare_type": True,
    }


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("BLETHER_STORAGE_URL")
    )
    if not url:
        raise SystemExit("no database URL: pass -x url=… or set BLETHER_STORAGE_URL")
    return url


async def _run_standalone(url: str) -> None:
    db = create_database(url)
    try:
        async with db.write() as conn:
            await conn.run_sync(_run)
    finally:
        await db.close()


given = config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    if context.is_offline_mode():
        url = normalise_url(_url())
        context.configure(
            url=url, literal_binds=True, **_options(url.get_backend_name())
        )
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(_run_standalone(_url()))
