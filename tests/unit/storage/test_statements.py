"""Prebuilt store statements (src/blether/storage/sql/statements.py): built once per
dialect, values only as named parameters, locking and ON CONFLICT clauses kept.

What the statements do is covered by the storage contract suite (tests/storage) on
both backends; this checks their construction.
"""

from __future__ import annotations

import pytest
from sqlalchemy import ClauseElement
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from blether.storage.sql import statements as q

DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite.dialect(),
    "postgresql": postgresql.dialect(),  # type: ignore[no-untyped-call]
}


def _sql(stmt: ClauseElement, dialect: str) -> str:
    return str(stmt.compile(dialect=DIALECTS[dialect]))


def test_upserts_built_once_per_dialect() -> None:
    assert q.upserts("sqlite") is q.upserts("sqlite")
    assert q.upserts("postgresql") is q.upserts("postgresql")
    assert q.upserts("sqlite") is not q.upserts("postgresql")
    assert isinstance(q.upserts("sqlite").kv_set, sqlite.Insert)
    assert isinstance(q.upserts("postgresql").kv_set, postgresql.Insert)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_upserts_compile_with_on_conflict(dialect: str) -> None:
    ups = q.upserts(dialect)
    for name in vars(ups):
        sql = _sql(getattr(ups, name), dialect)
        assert "ON CONFLICT" in sql, name
    assert "RETURNING" in _sql(ups.roster_bump, dialect)
    assert "RETURNING" in _sql(ups.offline_bump, dialect)
    assert "RETURNING" in _sql(ups.account_create, dialect)
    # Updated from the proposed row, i.e. the same values the INSERT carries.
    assert "excluded.value" in _sql(ups.kv_set, dialect)


def test_lock_statements_lock_on_postgresql() -> None:
    assert "FOR UPDATE" in _sql(q.ACCOUNT_LOCK, "postgresql")
    assert "FOR UPDATE" in _sql(q.OFFLINE_COUNTER_LOCK, "postgresql")
    assert "FOR UPDATE" not in _sql(q.ACCOUNT_EXISTS, "postgresql")


@pytest.mark.parametrize(
    ("stmt", "names"),
    [
        (q.CREDENTIALS_GET, {"user", "mechanism"}),
        (q.KV_GET, {"user", "store", "key"}),
        (q.BLOCKLIST_GET, {"user"}),
        (q.ROSTER_ITEM, {"user", "contact"}),
        (q.ROSTER_ITEMS_SINCE, {"user", "since"}),
        (q.OFFLINE_LIST_LIMIT, {"user", "limit"}),
        (q.OFFLINE_DELETE, {"user", "ids"}),
        (q.OFFLINE_COUNTER_SUBTRACT, {"user", "removed"}),
    ],
)
def test_values_are_named_parameters(stmt: ClauseElement, names: set[str]) -> None:
    # PostgreSQL: SQLite would add an anonymous "OFFSET 0" parameter after a LIMIT.
    assert set(stmt.compile(dialect=DIALECTS["postgresql"]).params) == names


def test_cache_key_memoized() -> None:
    # The point of prebuilding: the cache key is computed once, not per execution.
    assert q.KV_GET._generate_cache_key() is q.KV_GET._generate_cache_key()


def test_ordering_kept() -> None:
    assert "ORDER BY blocklist.id" in _sql(q.BLOCKLIST_GET, "sqlite")
    assert "ORDER BY roster_items.contact" in _sql(q.ROSTER_ITEMS, "sqlite")
    assert "ORDER BY roster_pending_in.id" in _sql(q.PENDING_IN, "sqlite")
    assert "ORDER BY offline_messages.id" in _sql(q.OFFLINE_LIST, "sqlite")
