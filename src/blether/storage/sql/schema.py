"""SQLAlchemy Core tables shared by the SQLite and PostgreSQL backends.

This is the schema the code expects; the Alembic migrations in ``migrations/``
create it. A contract test compares the migrated database with this metadata, so
a change here without a migration (or the reverse) fails the suite.

Choices that apply throughout:

* Per-account rows are keyed by ``owner``, the account's bare JID text. There are
  no foreign keys to ``accounts`` outside the account's own credentials: stores
  are usable independently and ``purge_user`` deletes from each table.
* Times are integers (microseconds since the Unix epoch, UTC): identical on both
  backends, exact, and trivially ordered (SQLite has no timestamp type).
* Surrogate ids use SQLite ``AUTOINCREMENT`` so an id is never reused after a
  delete (a client acknowledging an old offline message id must never hit a new one).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "account_credentials",
    "accounts",
    "blocklist",
    "kv",
    "metadata",
    "offline_counters",
    "offline_messages",
    "roster_items",
    "roster_pending_in",
    "roster_tombstones",
    "roster_versions",
]

# Explicit constraint names keep migrations reproducible across backends.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# A 64-bit id on PostgreSQL; on SQLite it must be exactly INTEGER to alias the rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")

accounts = Table(
    "accounts",
    metadata,
    Column("jid", Text, primary_key=True),
    Column("domain", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index(None, "domain"),
)

account_credentials = Table(
    "account_credentials",
    metadata,
    Column(
        "jid", Text, ForeignKey("accounts.jid", ondelete="CASCADE"), primary_key=True
    ),
    Column("mechanism", Text, primary_key=True),
    Column("salt", LargeBinary, nullable=False),
    Column("iterations", Integer, nullable=False),
    Column("stored_key", LargeBinary, nullable=False),
    Column("server_key", LargeBinary, nullable=False),
)

# The per-user roster version counter (RFC 6121 §2.6). Its row is also the lock
# that serialises all roster writes of one user on PostgreSQL. ``oldest`` is the
# lowest version from which changes can still be computed.
roster_versions = Table(
    "roster_versions",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("oldest", BigInteger, nullable=False),
)

roster_items = Table(
    "roster_items",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("contact", Text, primary_key=True),
    Column("name", Text, nullable=True),
    Column("subscription", Text, nullable=False),
    Column("ask", Boolean, nullable=False),
    Column("approved", Boolean, nullable=False),
    # JSON array of group names: order is kept and the item stays one row, so a
    # put is a single upsert.
    Column("groups", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    CheckConstraint(
        "subscription IN ('none', 'to', 'from', 'both')", name="subscription"
    ),
    Index(None, "owner", "version"),
)

roster_tombstones = Table(
    "roster_tombstones",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("contact", Text, primary_key=True),
    Column("version", BigInteger, nullable=False),
    Index(None, "owner", "version"),
)

roster_pending_in = Table(
    "roster_pending_in",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("owner", Text, nullable=False),
    Column("contact", Text, nullable=False),
    Column("stanza", Text, nullable=False),
    UniqueConstraint("owner", "contact"),
    sqlite_autoincrement=True,
)

# Number of stored offline messages per user, maintained in the same
# transactions as the messages. Its row is the lock that makes quota checks
# race-free on PostgreSQL and makes count() a primary-key lookup.
offline_counters = Table(
    "offline_counters",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("messages", Integer, nullable=False),
)

offline_messages = Table(
    "offline_messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("owner", Text, nullable=False),
    Column("stamp", BigInteger, nullable=False),
    Column("stanza", Text, nullable=False),
    Index(None, "owner", "id"),
    sqlite_autoincrement=True,
)

kv = Table(
    "kv",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("store", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

blocklist = Table(
    "blocklist",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("owner", Text, nullable=False),
    Column("jid", Text, nullable=False),
    UniqueConstraint("owner", "jid"),
    sqlite_autoincrement=True,
)
