"""Storage contract, part 2: rosters, RFC 6121 §2.6 versions, pending subscriptions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from blether.storage import RosterItem, Storage
from blether.storage.sql import roster as sql_roster

A = "alice@localhost"


async def test_empty_roster(storage: Storage) -> None:
    assert await storage.roster.get_all(A) == ([], 0)
    assert await storage.roster.get(A, "bob@localhost") is None
    assert await storage.roster.count(A) == 0
    assert await storage.roster.changes_since(A, 0) == ([], [], 0)
    assert await storage.roster.changes_since(A, 5) is None


async def test_put_get_round_trip_all_fields(storage: Storage) -> None:
    item = RosterItem(
        jid="bob@localhost",
        name="Böb \"the\" <builder>",
        subscription="both",
        ask=True,
        approved=True,
        groups=("Zeta", "Alpha", "Ωmega", ""),  # order is kept, not sorted
    )
    version = await storage.roster.put(A, item)
    assert version > 0
    assert await storage.roster.get(A, "bob@localhost") == item
    assert await storage.roster.get_all(A) == ([item], version)
    assert await storage.roster.count(A) == 1
    assert await storage.roster.get("bob@localhost", A) is None  # rosters are per owner


async def test_put_replaces_the_whole_item(storage: Storage) -> None:
    await storage.roster.put(A, RosterItem("bob@localhost", "Bob", "to", True, False, ("a", "b")))
    new = RosterItem("bob@localhost", None, "from", False, True, ("c",))
    await storage.roster.put(A, new)
    assert await storage.roster.get(A, "bob@localhost") == new
    await storage.roster.put(A, RosterItem("bob@localhost"))
    assert await storage.roster.get(A, "bob@localhost") == RosterItem("bob@localhost")
    assert await storage.roster.count(A) == 1


async def test_get_all_sorted_by_contact(storage: Storage) -> None:
    for contact in ("zed@x", "amy@x", "mia@x"):
        await storage.roster.put(A, RosterItem(contact))
    items, _ = await storage.roster.get_all(A)
    assert [i.jid for i in items] == ["amy@x", "mia@x", "zed@x"]


async def test_invalid_subscription_rejected(storage: Storage) -> None:
    with pytest.raises(ValueError):
        await storage.roster.put(A, RosterItem("bob@localhost", subscription="maybe"))
    assert await storage.roster.get_all(A) == ([], 0)


async def test_versions_strictly_increase(storage: Storage) -> None:
    versions = [
        await storage.roster.put(A, RosterItem("b@x")),
        await storage.roster.put(A, RosterItem("c@x")),
        await storage.roster.put(A, RosterItem("b@x", "B")),
        await storage.roster.remove(A, "c@x"),
        await storage.roster.put(A, RosterItem("c@x")),
    ]
    assert all(isinstance(v, int) for v in versions)
    assert versions == sorted({v for v in versions if v is not None})
    assert (await storage.roster.get_all(A))[1] == versions[-1]


async def test_remove_leaves_tombstone(storage: Storage) -> None:
    v1 = await storage.roster.put(A, RosterItem("bob@localhost"))
    v2 = await storage.roster.remove(A, "bob@localhost")
    assert v2 is not None and v2 > v1
    assert await storage.roster.get(A, "bob@localhost") is None
    assert await storage.roster.count(A) == 0
    assert await storage.roster.changes_since(A, v1) == ([], ["bob@localhost"], v2)
    # Removing what is not there changes nothing, not even the version.
    assert await storage.roster.remove(A, "bob@localhost") is None
    assert await storage.roster.remove(A, "nobody@localhost") is None
    assert await storage.roster.get_all(A) == ([], v2)


async def test_changes_since_current_version(storage: Storage) -> None:
    v = await storage.roster.put(A, RosterItem("bob@localhost"))
    assert await storage.roster.changes_since(A, v) == ([], [], v)


async def test_changes_since_older_version(storage: Storage) -> None:
    r = storage.roster
    await r.put(A, RosterItem("old@x"))
    await r.put(A, RosterItem("readded@x"))
    base = await r.put(A, RosterItem("gone@x"))
    await r.put(A, RosterItem("new@x", groups=("g",)))
    await r.remove(A, "gone@x")
    await r.remove(A, "readded@x")
    await r.put(A, RosterItem("readded@x", "back"))
    current = await r.put(A, RosterItem("new@x", "renamed", groups=("g",)))

    changed, removed, version = await r.changes_since(A, base) or pytest.fail("no delta")
    assert version == current
    assert changed == [
        RosterItem("readded@x", "back"),
        RosterItem("new@x", "renamed", groups=("g",)),
    ]
    assert removed == ["gone@x"]  # a re-added contact is a change, not a removal
    # Applying the delta to the roster as of `base` gives the current roster.
    at_base = {"old@x", "readded@x", "gone@x"}
    result = (at_base | {i.jid for i in changed}) - set(removed)
    assert result == {i.jid for i in (await r.get_all(A))[0]}


async def test_changes_since_unknown_versions(storage: Storage) -> None:
    v = await storage.roster.put(A, RosterItem("bob@localhost"))
    assert await storage.roster.changes_since(A, v + 1) is None  # from the future
    assert await storage.roster.changes_since(A, -1) is None
    # 0 is the empty roster's version; the counter started after it.
    assert await storage.roster.changes_since(A, 0) is None
    assert await storage.roster.changes_since(A, v - 1) is not None


async def test_changes_since_too_old_after_pruning(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_roster, "TOMBSTONE_LIMIT", 3)
    r = storage.roster
    start = await r.put(A, RosterItem("keep@x"))
    versions: list[int] = []
    for n in range(6):
        await r.put(A, RosterItem(f"c{n}@x"))
        removed = await r.remove(A, f"c{n}@x")
        assert removed is not None
        versions.append(removed)
    current = versions[-1]
    # Only the last three removals are remembered: older versions need a full roster.
    assert await r.changes_since(A, start) is None
    assert await r.changes_since(A, versions[1]) is None
    delta = await r.changes_since(A, versions[2])
    assert delta == ([], ["c3@x", "c4@x", "c5@x"], current)
    assert await r.changes_since(A, current) == ([], [], current)


async def test_concurrent_puts_get_distinct_versions(storage: Storage) -> None:
    versions = await asyncio.gather(
        *(storage.roster.put(A, RosterItem(f"c{n}@x", groups=(str(n),))) for n in range(20))
    )
    assert len(set(versions)) == 20
    items, current = await storage.roster.get_all(A)
    assert current == max(versions) and len(items) == 20
    assert await storage.roster.count(A) == 20


async def test_concurrent_put_and_remove_same_contact(storage: Storage) -> None:
    await storage.roster.put(A, RosterItem("bob@localhost"))
    ops: list[Awaitable[int | None]]
    ops = [storage.roster.put(A, RosterItem("bob@localhost", str(n))) for n in range(5)]
    ops += [storage.roster.remove(A, "bob@localhost") for _ in range(5)]
    results = await asyncio.gather(*ops)
    done = [v for v in results if v is not None]
    assert len(set(done)) == len(done)
    _, current = await storage.roster.get_all(A)
    assert current == max(done)


async def test_pending_in_add_replace_remove_order(storage: Storage) -> None:
    r = storage.roster
    b1 = "<presence from='b@x' type='subscribe'/>"
    b2 = "<presence from='b@x' type='subscribe'><status>again</status></presence>"
    c1 = "<presence from='c@x' type='subscribe'><status>hi ☺</status></presence>"
    a1 = "<presence from='a@x' type='subscribe'/>"
    assert await r.get_pending_in(A) == []
    assert not await r.has_pending_in(A, "b@x")
    await r.add_pending_in(A, "b@x", b1)
    await r.add_pending_in(A, "c@x", c1)
    await r.add_pending_in(A, "a@x", a1)
    # A repeated request replaces the stanza and keeps the original place in line.
    await r.add_pending_in(A, "b@x", b2)
    assert await r.get_pending_in(A) == [("b@x", b2), ("c@x", c1), ("a@x", a1)]
    assert await r.has_pending_in(A, "c@x")
    assert await r.remove_pending_in(A, "c@x") is True
    assert await r.remove_pending_in(A, "c@x") is False
    assert not await r.has_pending_in(A, "c@x")
    assert [c for c, _ in await r.get_pending_in(A)] == ["b@x", "a@x"]
    # Pending requests are not roster items and are per user.
    assert await r.count(A) == 0
    assert await r.get_pending_in("bob@localhost") == []
    assert not await r.has_pending_in("bob@localhost", "b@x")
