"""Initial schema: accounts, roster, offline messages, key-value, blocklist.

Revision ID: 0001
Revises:
Create Date: 2025-11-21

Written by hand as a frozen copy of ``schema.py`` at this revision (migrations must
not import the live schema, which keeps changing).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("jid", sa.Text(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("jid", name="pk_accounts"),
    )
    op.create_index("ix_accounts_domain", "accounts", ["domain"])

    op.create_table(
        "account_credentials",
        sa.Column("jid", sa.Text(), nullable=False),
        sa.Column("mechanism", sa.Text(), nullable=False),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("stored_key", sa.LargeBinary(), nullable=False),
        sa.Column("server_key", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["jid"], ["accounts.jid"],
            name="fk_account_credentials_jid_accounts", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("jid", "mechanism", name="pk_account_credentials"),
    )

    op.create_table(
        "roster_versions",
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("oldest", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_roster_versions"),
    )

    op.create_table(
        "roster_items",
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("subscription", sa.Text(), nullable=False),
        sa.Column("ask", sa.Boolean(), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("groups", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "subscription IN ('none', 'to', 'from', 'both')",
            name="ck_roster_items_subscription",
        ),
        sa.PrimaryKeyConstraint("owner", "contact", name="pk_roster_items"),
    )
    op.create_index("ix_roster_items_owner_version", "roster_items", ["owner", "version"])

    op.create_table(
        "roster_tombstones",
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "contact", name="pk_roster_tombstones"),
    )
    op.create_index(
        "ix_roster_tombstones_owner_version", "roster_tombstones", ["owner", "version"]
    )

    op.create_table(
        "roster_pending_in",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("stanza", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_roster_pending_in"),
        sa.UniqueConstraint("owner", "contact", name="uq_roster_pending_in_owner_contact"),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "offline_counters",
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_offline_counters"),
    )

    op.create_table(
        "offline_messages",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("stamp", sa.BigInteger(), nullable=False),
        sa.Column("stanza", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_offline_messages"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_offline_messages_owner_id", "offline_messages", ["owner", "id"])

    op.create_table(
        "kv",
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("store", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "store", "key", name="pk_kv"),
    )

    op.create_table(
        "blocklist",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("jid", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_blocklist"),
        sa.UniqueConstraint("owner", "jid", name="uq_blocklist_owner_jid"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    for table in (
        "blocklist", "kv", "offline_messages", "offline_counters", "roster_pending_in",
        "roster_tombstones", "roster_items", "roster_versions", "account_credentials",
        "accounts",
    ):
        op.drop_table(table)
