"""Prebuilt SQLAlchemy Core statements for the SQL stores (``stores.py``, ``roster.py``).

Why prebuilt: building ``select(...).where(c.x == value)`` on every call cost ~15 % of
the server's CPU during logins (coercions, cache-key generation, a new bound parameter
per value; docs/performance.md, login profile). A statement built once with
:func:`~sqlalchemy.bindparam` placeholders memoizes its cache key, so each execution is a
lookup in the engine's compiled cache plus the parameters, passed by name:
``conn.execute(KV_GET, {"user": ..., "store": ..., "key": ...})``.

Naming of the placeholders: ``user`` is always the owning account's bare JID; INSERTs
have no placeholders and take their columns by name from the parameter dicts (so one
statement serves single rows and executemany alike).

``INSERT ... ON CONFLICT`` is dialect-specific, so those statements live in
:class:`Upserts`, built once per dialect (:func:`upserts`). Update values there come
from ``excluded`` (the row that was proposed), the same values the INSERT carries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Integer,
    Table,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from . import schema as s

__all__ = ["Upserts", "dialect_insert", "upserts"]

_a = s.accounts.c
_cred = s.account_credentials.c
_ctr = s.offline_counters.c
_msg = s.offline_messages.c
_kv = s.kv.c
_blk = s.blocklist.c
_ver = s.roster_versions.c
_item = s.roster_items.c
_tomb = s.roster_tombstones.c
_pend = s.roster_pending_in.c

_USER: BindParameter[str] = bindparam("user")

# -- accounts (XEP-0077 / RFC 5802 credentials) --------------------------------------

ACCOUNT_EXISTS = select(_a.jid).where(_a.jid == _USER)
# Locks the account row (PostgreSQL; SQLite ignores FOR UPDATE).
ACCOUNT_LOCK = ACCOUNT_EXISTS.with_for_update()
ACCOUNT_DELETE = delete(s.accounts).where(_a.jid == _USER)
ACCOUNTS_OF_DOMAIN = select(_a.jid).where(_a.domain == bindparam("domain"))
ACCOUNTS_COUNT = select(func.count()).where(_a.domain == bindparam("domain"))
CREDENTIALS_GET = select(
    _cred.mechanism, _cred.salt, _cred.iterations, _cred.stored_key, _cred.server_key
).where(_cred.jid == _USER, _cred.mechanism == bindparam("mechanism"))
CREDENTIALS_INSERT = s.account_credentials.insert()
CREDENTIALS_DELETE = delete(s.account_credentials).where(_cred.jid == _USER)

# -- offline messages (XEP-0160) -----------------------------------------------------

OFFLINE_INSERT = s.offline_messages.insert().returning(_msg.id)
OFFLINE_LIST = select(_msg.id, _msg.stanza, _msg.stamp).where(_msg.owner == _USER).order_by(
    _msg.id
)
OFFLINE_LIST_LIMIT = OFFLINE_LIST.limit(bindparam("limit", type_=Integer))
OFFLINE_COUNTER_LOCK = select(_ctr.messages).where(_ctr.owner == _USER).with_for_update()
OFFLINE_COUNT = select(_ctr.messages).where(_ctr.owner == _USER)
# "ids" is expanding: IN (...) gets one placeholder per id at execution.
OFFLINE_DELETE = delete(s.offline_messages).where(
    _msg.owner == _USER, _msg.id.in_(bindparam("ids", expanding=True))
)
OFFLINE_COUNTER_SUBTRACT = (
    update(s.offline_counters)
    .where(_ctr.owner == _USER)
    .values(messages=_ctr.messages - bindparam("removed", type_=Integer))
)

# -- key-value documents ---------------------------------------------------------------

KV_GET = select(_kv.value).where(
    _kv.owner == _USER, _kv.store == bindparam("store"), _kv.key == bindparam("key")
)
KV_DELETE = delete(s.kv).where(
    _kv.owner == _USER, _kv.store == bindparam("store"), _kv.key == bindparam("key")
)
KV_KEYS = select(_kv.key).where(_kv.owner == _USER, _kv.store == bindparam("store"))

# -- blocklists (XEP-0191) ---------------------------------------------------------------

BLOCKLIST_GET = select(_blk.jid).where(_blk.owner == _USER).order_by(_blk.id)
BLOCKLIST_REMOVE = delete(s.blocklist).where(
    _blk.owner == _USER, _blk.jid.in_(bindparam("jids", expanding=True))
)
BLOCKLIST_CLEAR = delete(s.blocklist).where(_blk.owner == _USER)

# -- rosters (RFC 6121) ------------------------------------------------------------------

ROSTER_ITEM_COLUMNS = (
    _item.contact,
    _item.name,
    _item.subscription,
    _item.ask,
    _item.approved,
    _item.groups,
)
_CONTACT: BindParameter[str] = bindparam("contact")
_SINCE = bindparam("since", type_=BigInteger)

ROSTER_VERSION = select(_ver.version).where(_ver.owner == _USER)
ROSTER_VERSIONS = select(_ver.version, _ver.oldest).where(_ver.owner == _USER)
ROSTER_SET_OLDEST = (
    update(s.roster_versions)
    .where(_ver.owner == _USER)
    .values(oldest=bindparam("cutoff", type_=BigInteger))
)
ROSTER_ITEMS = select(*ROSTER_ITEM_COLUMNS).where(_item.owner == _USER).order_by(_item.contact)
ROSTER_ITEM = select(*ROSTER_ITEM_COLUMNS).where(_item.owner == _USER, _item.contact == _CONTACT)
ROSTER_ITEM_DELETE = delete(s.roster_items).where(_item.owner == _USER, _item.contact == _CONTACT)
ROSTER_ITEMS_SINCE = (
    select(*ROSTER_ITEM_COLUMNS)
    .where(_item.owner == _USER, _item.version > _SINCE)
    .order_by(_item.version)
)
ROSTER_COUNT = select(func.count()).where(_item.owner == _USER)
TOMBSTONE_DELETE = delete(s.roster_tombstones).where(
    _tomb.owner == _USER, _tomb.contact == _CONTACT
)
TOMBSTONE_COUNT = select(func.count()).where(_tomb.owner == _USER)
# The version of the ``skip``+1-th oldest tombstone.
TOMBSTONE_CUTOFF = (
    select(_tomb.version)
    .where(_tomb.owner == _USER)
    .order_by(_tomb.version)
    .offset(bindparam("skip", type_=Integer))
    .limit(1)
)
TOMBSTONE_PRUNE = delete(s.roster_tombstones).where(
    _tomb.owner == _USER, _tomb.version <= bindparam("cutoff", type_=BigInteger)
)
TOMBSTONES_SINCE = (
    select(_tomb.contact)
    .where(_tomb.owner == _USER, _tomb.version > _SINCE)
    .order_by(_tomb.version)
)
PENDING_IN = select(_pend.contact, _pend.stanza).where(_pend.owner == _USER).order_by(_pend.id)
PENDING_IN_HAS = select(_pend.id).where(_pend.owner == _USER, _pend.contact == _CONTACT)
PENDING_IN_DELETE = delete(s.roster_pending_in).where(
    _pend.owner == _USER, _pend.contact == _CONTACT
)


# -- dialect-specific INSERT ... ON CONFLICT -------------------------------------------------

_Insert = postgresql.Insert | sqlite.Insert


def dialect_insert(dialect: str) -> Callable[[Table], _Insert]:
    """The INSERT construct with ``ON CONFLICT`` support for ``dialect``."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


class Upserts:
    """The statements using ``ON CONFLICT`` for one dialect; columns by name at execution."""

    def __init__(self, dialect: str) -> None:
        ins = dialect_insert(dialect)

        # Parameters: jid, domain, created_at. No row back: the account existed.
        self.account_create = (
            ins(s.accounts).on_conflict_do_nothing(index_elements=["jid"]).returning(_a.jid)
        )

        # Parameters: owner, messages=1. Returns the new count; locks the counter row.
        counters = ins(s.offline_counters)
        self.offline_bump = counters.on_conflict_do_update(
            index_elements=["owner"], set_={"messages": _ctr.messages + 1}
        ).returning(_ctr.messages)

        # Parameters: owner, store, key, value (one dict or a list: executemany).
        kv = ins(s.kv)
        self.kv_set = kv.on_conflict_do_update(
            index_elements=["owner", "store", "key"], set_={"value": kv.excluded.value}
        )

        # Parameters: owner, jid (a list, one execution per row keeps ids in order).
        self.blocklist_add = ins(s.blocklist).on_conflict_do_nothing(
            index_elements=["owner", "jid"]
        )

        # Parameters: owner, version (start + 1), oldest (start). Returns the new
        # version; locks the user's roster (see roster.py).
        self.roster_bump = (
            ins(s.roster_versions)
            .on_conflict_do_update(index_elements=["owner"], set_={"version": _ver.version + 1})
            .returning(_ver.version)
        )

        # Parameters: every roster_items column.
        items = ins(s.roster_items)
        self.roster_item_put = items.on_conflict_do_update(
            index_elements=["owner", "contact"],
            set_={
                name: items.excluded[name]
                for name in ("name", "subscription", "ask", "approved", "groups", "version")
            },
        )

        # Parameters: owner, contact, version.
        tombstones = ins(s.roster_tombstones)
        self.tombstone_put = tombstones.on_conflict_do_update(
            index_elements=["owner", "contact"], set_={"version": tombstones.excluded.version}
        )

        # Parameters: owner, contact, stanza. A repeat keeps the row (and its id).
        pending = ins(s.roster_pending_in)
        self.pending_in_put = pending.on_conflict_do_update(
            index_elements=["owner", "contact"], set_={"stanza": pending.excluded.stanza}
        )


@functools.cache
def upserts(dialect: str) -> Upserts:
    """The :class:`Upserts` of ``dialect`` ("sqlite" or "postgresql"), built once."""
    return Upserts(dialect)
