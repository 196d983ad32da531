"""Storage contract, part 3: offline messages (XEP-0160) and their quota."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from blether.storage import Storage, open_storage

A = "alice@localhost"
T0 = datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC)


async def _push(storage: Storage, stanza: str, user: str = A) -> int:
    msg_id = await storage.offline.push(user, stanza, T0, 1000)
    assert msg_id is not None
    return msg_id


async def test_push_list_oldest_first(storage: Storage) -> None:
    pushed = [
        await storage.offline.push(A, f"<message id='{n}'/>", T0 + timedelta(seconds=n), 100)
        for n in range(5)
    ]
    ids = [i for i in pushed if isinstance(i, int)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    messages = await storage.offline.list(A)
    assert [m.id for m in messages] == ids
    assert [m.stanza_xml for m in messages] == [f"<message id='{n}'/>" for n in range(5)]
    assert await storage.offline.count(A) == 5
    assert [m.id for m in await storage.offline.list(A, limit=2)] == ids[:2]
    assert await storage.offline.list(A, limit=0) == []
    assert await storage.offline.list("bob@localhost") == []


async def test_stamp_round_trip_is_exact_and_utc(storage: Storage) -> None:
    plus_two = timezone(timedelta(hours=2))
    stamps = [
        T0,
        datetime(2024, 3, 1, 1, 0, 0, 1, tzinfo=plus_two),  # not UTC: same instant back in UTC
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before the epoch
    ]
    for stamp in stamps:
        await storage.offline.push(A, "<message/>", stamp, 100)
    back = [m.stamp for m in await storage.offline.list(A)]
    assert back == stamps
    assert all(s.utcoffset() == timedelta(0) for s in back)
    assert back[1].hour == 23 and back[1].microsecond == 1


async def test_naive_stamp_rejected(storage: Storage) -> None:
    with pytest.raises(ValueError):
        await storage.offline.push(A, "<message/>", datetime(2024, 1, 1), 100)
    assert await storage.offline.count(A) == 0


async def test_unicode_and_large_stanza(storage: Storage) -> None:
    body = "<message><body>" + "héllo 🌍 " * 20_000 + "</body></message>"
    await storage.offline.push(A, body, T0, 100)
    assert (await storage.offline.list(A))[0].stanza_xml == body


async def test_delete_only_given_ids_of_that_user(storage: Storage) -> None:
    ids = [await _push(storage, f"<m n='{n}'/>") for n in range(4)]
    bob_id = await _push(storage, "<m/>", "bob@localhost")
    await storage.offline.delete(A, [ids[0], ids[2], 999_999, bob_id])
    assert [m.id for m in await storage.offline.list(A)] == [ids[1], ids[3]]
    assert await storage.offline.count(A) == 2
    assert await storage.offline.count("bob@localhost") == 1  # not alice's to delete
    await storage.offline.delete(A, [])
    await storage.offline.delete(A, [ids[0]])  # already gone
    await storage.offline.delete("carol@localhost", [ids[1]])  # wrong owner, no counter
    assert await storage.offline.count(A) == 2


async def test_ids_are_never_reused(storage: Storage) -> None:
    first = await storage.offline.push(A, "<m/>", T0, 10)
    assert first is not None
    await storage.offline.delete(A, [first])
    second = await storage.offline.push(A, "<m/>", T0, 10)
    assert second is not None and second > first


async def test_quota(storage: Storage) -> None:
    for _ in range(3):
        assert await storage.offline.push(A, "<m/>", T0, 3) is not None
    assert await storage.offline.push(A, "<m/>", T0, 3) is None
    assert await storage.offline.count(A) == 3
    assert await storage.offline.push(A, "<m/>", T0, 4) is not None  # quota is per call
    first = (await storage.offline.list(A))[0].id
    await storage.offline.delete(A, [first])
    assert await storage.offline.push(A, "<m/>", T0, 4) is not None  # room again
    assert await storage.offline.push("bob@localhost", "<m/>", T0, 0) is None
    assert await storage.offline.count("bob@localhost") == 0


async def test_concurrent_pushes_at_quota_minus_one(storage: Storage) -> None:
    for _ in range(4):
        await storage.offline.push(A, "<m/>", T0, 5)
    results = await asyncio.gather(*(storage.offline.push(A, "<race/>", T0, 5) for _ in range(2)))
    assert sum(r is not None for r in results) == 1
    assert await storage.offline.count(A) == 5
    assert len(await storage.offline.list(A)) == 5


async def test_many_concurrent_pushes_from_empty(storage: Storage) -> None:
    results = await asyncio.gather(*(storage.offline.push(A, "<m/>", T0, 7) for _ in range(30)))
    assert sum(r is not None for r in results) == 7
    assert len(await storage.offline.list(A)) == 7 == await storage.offline.count(A)


async def test_quota_race_between_two_storage_instances(storage_url: str, storage: Storage) -> None:
    """Two processes (or cluster nodes) on one database: the quota still holds."""
    other = await open_storage(storage_url)
    try:
        pushes = [
            st.offline.push(A, "<m/>", T0, 10) for _ in range(12) for st in (storage, other)
        ]
        results = await asyncio.gather(*pushes)
        assert sum(r is not None for r in results) == 10
        assert await storage.offline.count(A) == 10 == len(await other.offline.list(A))
    finally:
        await other.close()


async def test_concurrent_push_and_delete_keep_count_exact(storage: Storage) -> None:
    ids = [await _push(storage, "<m/>") for _ in range(20)]
    ops: list[Awaitable[object]] = [storage.offline.delete(A, [i]) for i in ids[:10]]
    ops += [storage.offline.push(A, "<m/>", T0, 1000) for _ in range(10)]
    ops += [storage.offline.delete(A, ids[5:15]) for _ in range(2)]
    await asyncio.gather(*ops)
    assert await storage.offline.count(A) == len(await storage.offline.list(A)) == 15
