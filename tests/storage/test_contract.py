"""Storage contract, part 1: accounts, key-value, blocklist, purge and lifecycle.

Every test runs against each backend (see ``conftest.py``); roster and offline
contracts live in ``test_contract_roster.py`` and ``test_contract_offline.py``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from blether.storage import (
    AccountExists,
    AccountNotFound,
    RosterItem,
    ScramCredentials,
    Storage,
    StorageError,
    open_storage,
)
from blether.storage.sql import SqlStorage
from blether.storage.sql.migrate import VERSION_TABLE, alembic_config
from blether.storage.sql.schema import metadata

SHA1 = ScramCredentials("SCRAM-SHA-1", b"\x00salt\xff", 4096, b"\x01" * 20, b"\x02" * 20)
SHA256 = ScramCredentials("SCRAM-SHA-256", b"salt2\x00", 8192, b"\x03" * 32, b"\x04" * 32)


# --- accounts -------------------------------------------------------------------


async def test_create_and_exists(storage: Storage) -> None:
    assert not await storage.accounts.exists("alice@localhost")
    await storage.accounts.create("alice@localhost", [SHA1, SHA256])
    assert await storage.accounts.exists("alice@localhost")
    assert not await storage.accounts.exists("Alice@localhost")  # exact match only


async def test_create_duplicate_raises_and_keeps_original(storage: Storage) -> None:
    await storage.accounts.create("alice@localhost", [SHA1])
    with pytest.raises(AccountExists):
        await storage.accounts.create("alice@localhost", [SHA256])
    assert issubclass(AccountExists, StorageError)
    assert await storage.accounts.get_credentials("alice@localhost", "SCRAM-SHA-1") == SHA1
    assert await storage.accounts.get_credentials("alice@localhost", "SCRAM-SHA-256") is None


async def test_concurrent_creates_exactly_one_wins(storage: Storage) -> None:
    results = await asyncio.gather(
        *(storage.accounts.create("race@localhost", [SHA1]) for _ in range(8)),
        return_exceptions=True,
    )
    assert results.count(None) == 1
    assert all(isinstance(r, AccountExists) for r in results if r is not None)


async def test_credentials_per_mechanism(storage: Storage) -> None:
    await storage.accounts.create("alice@localhost", [SHA1, SHA256])
    assert await storage.accounts.get_credentials("alice@localhost", "SCRAM-SHA-1") == SHA1
    assert await storage.accounts.get_credentials("alice@localhost", "SCRAM-SHA-256") == SHA256
    assert await storage.accounts.get_credentials("alice@localhost", "SCRAM-SHA-512") is None
    assert await storage.accounts.get_credentials("nobody@localhost", "SCRAM-SHA-1") is None


async def test_create_without_credentials(storage: Storage) -> None:
    await storage.accounts.create("alice@localhost", [])
    assert await storage.accounts.exists("alice@localhost")
    assert await storage.accounts.get_credentials("alice@localhost", "SCRAM-SHA-1") is None


async def test_set_credentials_replaces_every_hash(storage: Storage) -> None:
    await storage.accounts.create("alice@localhost", [SHA1, SHA256])
    new256 = ScramCredentials("SCRAM-SHA-256", b"new", 10000, b"\x05" * 32, b"\x06" * 32)
    await storage.accounts.set_credentials("alice@localhost", [new256])
    assert await storage.accounts.get_credentials("alice@localhost", "SCRAM-SHA-256") == new256
    # The old password's SHA-1 keys must not keep working after a change.
    assert await storage.accounts.get_credentials("alice@localhost", "SCRAM-SHA-1") is None


async def test_set_credentials_unknown_account(storage: Storage) -> None:
    with pytest.raises(AccountNotFound):
        await storage.accounts.set_credentials("nobody@localhost", [SHA1])
    assert not await storage.accounts.exists("nobody@localhost")


async def test_duplicate_mechanism_rejected(storage: Storage) -> None:
    with pytest.raises(ValueError):
        await storage.accounts.create("alice@localhost", [SHA1, SHA1])
    assert not await storage.accounts.exists("alice@localhost")


async def test_delete_account_only_removes_the_account(storage: Storage) -> None:
    await storage.accounts.create("alice@localhost", [SHA1])
    await storage.accounts.create("bob@localhost", [SHA1])
    await storage.kv.set("alice@localhost", "vcard", "", "<vCard/>")
    await storage.accounts.delete("alice@localhost")
    assert not await storage.accounts.exists("alice@localhost")
    assert await storage.accounts.get_credentials("alice@localhost", "SCRAM-SHA-1") is None
    assert await storage.accounts.exists("bob@localhost")
    assert await storage.kv.get("alice@localhost", "vcard", "") == "<vCard/>"
    await storage.accounts.delete("alice@localhost")  # deleting again is harmless
    # A re-created account does not inherit the old credentials.
    await storage.accounts.create("alice@localhost", [SHA256])
    assert await storage.accounts.get_credentials("alice@localhost", "SCRAM-SHA-1") is None


async def test_list_and_count_per_domain(storage: Storage) -> None:
    for user in ("zoe@localhost", "alice@localhost", "Bob@localhost", "émile@localhost",
                 "carol@example.org", "dave@localhost.example"):
        await storage.accounts.create(user, [SHA1])
    assert await storage.accounts.list("localhost") == sorted(
        ["zoe@localhost", "alice@localhost", "Bob@localhost", "émile@localhost"]
    )
    assert await storage.accounts.count("localhost") == 4
    assert await storage.accounts.list("example.org") == ["carol@example.org"]
    assert await storage.accounts.count("localhost.example") == 1
    assert await storage.accounts.list("nowhere") == []
    assert await storage.accounts.count("nowhere") == 0


# --- key-value ------------------------------------------------------------------


async def test_kv_set_get_overwrite_delete(storage: Storage) -> None:
    kv = storage.kv
    assert await kv.get("alice@localhost", "private", "a:b") is None
    await kv.set("alice@localhost", "private", "a:b", "<x xmlns='a:b'/>")
    assert await kv.get("alice@localhost", "private", "a:b") == "<x xmlns='a:b'/>"
    await kv.set("alice@localhost", "private", "a:b", "<y xmlns='a:b'>ü</y>")
    assert await kv.get("alice@localhost", "private", "a:b") == "<y xmlns='a:b'>ü</y>"
    await kv.delete("alice@localhost", "private", "a:b")
    assert await kv.get("alice@localhost", "private", "a:b") is None
    await kv.delete("alice@localhost", "private", "a:b")  # missing key: no error


async def test_kv_keys_are_per_user_and_store(storage: Storage) -> None:
    kv = storage.kv
    for key in ("zeta", "alpha", "mid"):
        await kv.set("alice@localhost", "private", key, key)
    await kv.set("alice@localhost", "vcard", "", "<vCard/>")
    await kv.set("bob@localhost", "private", "other", "x")
    assert await kv.keys("alice@localhost", "private") == ["alpha", "mid", "zeta"]
    assert await kv.keys("alice@localhost", "vcard") == [""]
    assert await kv.keys("bob@localhost", "private") == ["other"]
    assert await kv.keys("carol@localhost", "private") == []
    assert await kv.get("bob@localhost", "private", "alpha") is None


async def test_kv_large_value(storage: Storage) -> None:
    big = "<vCard>" + "x" * 300_000 + "</vCard>"
    await storage.kv.set("alice@localhost", "vcard", "", big)
    assert await storage.kv.get("alice@localhost", "vcard", "") == big


# --- blocklist ------------------------------------------------------------------


async def test_blocklist_order_and_idempotent_add(storage: Storage) -> None:
    bl = storage.blocklist
    assert await bl.get("alice@localhost") == []
    await bl.add("alice@localhost", ["spam.example", "eve@localhost", "mallory@x/res"])
    await bl.add("alice@localhost", ["eve@localhost", "new@localhost", "new@localhost"])
    assert await bl.get("alice@localhost") == [
        "spam.example", "eve@localhost", "mallory@x/res", "new@localhost",
    ]
    await bl.add("alice@localhost", [])
    assert len(await bl.get("alice@localhost")) == 4


async def test_blocklist_remove_and_clear(storage: Storage) -> None:
    bl = storage.blocklist
    await bl.add("alice@localhost", ["a@x", "b@x", "c@x"])
    await bl.add("bob@localhost", ["a@x"])
    await bl.remove("alice@localhost", ["b@x", "not-there@x"])
    assert await bl.get("alice@localhost") == ["a@x", "c@x"]
    await bl.add("alice@localhost", ["b@x"])  # re-added goes to the end
    assert await bl.get("alice@localhost") == ["a@x", "c@x", "b@x"]
    await bl.clear("alice@localhost")
    assert await bl.get("alice@localhost") == []
    assert await bl.get("bob@localhost") == ["a@x"]


# --- purge, lifecycle, migrations -----------------------------------------------


async def _populate(storage: Storage, user: str) -> None:
    await storage.accounts.create(user, [SHA1, SHA256])
    await storage.roster.put(user, RosterItem("friend@localhost", groups=("G",)))
    await storage.roster.put(user, RosterItem("gone@localhost"))
    await storage.roster.remove(user, "gone@localhost")  # leaves a tombstone
    await storage.roster.add_pending_in(user, "asker@localhost", "<presence type='subscribe'/>")
    await storage.offline.push(user, "<message/>", datetime.now(UTC), 10)
    await storage.kv.set(user, "private", "k", "v")
    await storage.blocklist.add(user, ["spam.example"])


async def test_purge_user_removes_everything_of_that_user_only(storage: Storage) -> None:
    await _populate(storage, "alice@localhost")
    await _populate(storage, "bob@localhost")
    _, alice_version = await storage.roster.get_all("alice@localhost")
    bob_before = await storage.roster.get_all("bob@localhost")

    await storage.purge_user("alice@localhost")

    a = "alice@localhost"
    assert not await storage.accounts.exists(a)
    assert await storage.accounts.get_credentials(a, "SCRAM-SHA-1") is None
    assert await storage.roster.get_all(a) == ([], 0)
    assert await storage.roster.changes_since(a, alice_version) is None
    assert await storage.roster.get_pending_in(a) == []
    assert await storage.offline.list(a) == []
    assert await storage.offline.count(a) == 0
    assert await storage.kv.keys(a, "private") == []
    assert await storage.blocklist.get(a) == []

    b = "bob@localhost"
    assert await storage.accounts.get_credentials(b, "SCRAM-SHA-256") == SHA256
    assert await storage.roster.get_all(b) == bob_before
    assert await storage.roster.has_pending_in(b, "asker@localhost")
    assert await storage.offline.count(b) == 1
    assert await storage.kv.get(b, "private", "k") == "v"
    assert await storage.blocklist.get(b) == ["spam.example"]

    # A re-created account starts clean and never reuses an old roster version.
    await storage.accounts.create(a, [SHA1])
    assert await storage.roster.put(a, RosterItem("x@localhost")) > alice_version
    await storage.purge_user("nobody@localhost")  # purging nothing is fine


async def test_ping_and_closed_storage(storage_url: str) -> None:
    st = await open_storage(storage_url)
    await st.ping()
    await st.close()
    with pytest.raises(StorageError):
        await st.ping()
    with pytest.raises(StorageError):
        await st.kv.get("alice@localhost", "private", "k")


async def test_reopen_keeps_data(fresh_url: str) -> None:
    st = await open_storage(fresh_url)
    await st.accounts.create("alice@localhost", [SHA1])
    version = await st.roster.put("alice@localhost", RosterItem("bob@localhost", "Bob"))
    await st.offline.push("alice@localhost", "<message/>", datetime.now(UTC), 10)
    await st.close()

    st = await open_storage(fresh_url)
    try:
        assert await st.accounts.get_credentials("alice@localhost", "SCRAM-SHA-1") == SHA1
        assert await st.roster.get_all("alice@localhost") == (
            [RosterItem("bob@localhost", "Bob")], version,
        )
        assert [m.stanza_xml for m in await st.offline.list("alice@localhost")] == ["<message/>"]
    finally:
        await st.close()


def _schema_diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
    )
    return list(compare_metadata(context, metadata))


async def test_migrations_idempotent_and_match_schema(fresh_url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    # Several nodes starting at once on an empty database must not collide.
    opened = await asyncio.gather(*(open_storage(fresh_url) for _ in range(3)))
    for st in opened:
        await st.close()
    st = await open_storage(fresh_url)  # and once more on a database already at head
    try:
        assert isinstance(st, SqlStorage)
        async with st.db.read() as conn:
            versions = (await conn.execute(text(f"SELECT * FROM {VERSION_TABLE}"))).all()
            assert [tuple(v) for v in versions] == [(head,)]
            # schema.py and the migrations describe the same tables.
            assert await conn.run_sync(_schema_diff) == []
    finally:
        await st.close()


# --- one-transaction reads and writes of a login (docs/performance.md) ----------


async def test_kv_set_many(storage: Storage) -> None:
    kv = storage.kv
    await kv.set("alice@localhost", "last", "last", "old")
    await kv.set_many("alice@localhost", [
        ("last", "last", "new"),                  # overwrites
        ("presence", "last-unavailable", "<presence/>"),
        ("presence", "x", "first"),
        ("presence", "x", "second"),              # a later entry for the same key wins
    ])
    assert await kv.get("alice@localhost", "last", "last") == "new"
    assert await kv.get("alice@localhost", "presence", "last-unavailable") == "<presence/>"
    assert await kv.get("alice@localhost", "presence", "x") == "second"
    assert await kv.keys("bob@localhost", "presence") == []
    await kv.set_many("alice@localhost", [])      # nothing to do
    assert await kv.keys("alice@localhost", "presence") == ["last-unavailable", "x"]


async def test_kv_set_many_is_all_or_nothing(storage: Storage) -> None:
    with pytest.raises(StorageError):
        await storage.kv.set_many("alice@localhost", [
            ("last", "last", "kept?"),
            ("presence", "bad", None),  # type: ignore[list-item]  # NOT NULL
        ])
    assert await storage.kv.get("alice@localhost", "last", "last") is None


async def test_roster_load_is_get_all_and_pending_in(storage: Storage) -> None:
    r = storage.roster
    assert await r.load("alice@localhost") == ([], 0, [])
    await r.put("alice@localhost", RosterItem("zed@x", subscription="both"))
    await r.put("alice@localhost", RosterItem("bob@x", "Bob", groups=("g",)))
    await r.add_pending_in("alice@localhost", "carol@x", "<presence type='subscribe'/>")
    await r.add_pending_in("alice@localhost", "ann@x", "<presence/>")
    await r.put("bob@localhost", RosterItem("other@x"))
    items, version = await r.get_all("alice@localhost")
    assert await r.load("alice@localhost") == (
        items, version, await r.get_pending_in("alice@localhost"))
    assert [i.jid for i in items] == ["bob@x", "zed@x"]
    assert (await r.load("alice@localhost"))[2] == [
        ("carol@x", "<presence type='subscribe'/>"), ("ann@x", "<presence/>")]
