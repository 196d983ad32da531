"""The storage work of a login and logout (docs/performance.md, "Logins"), with the roster,
presence, offline and last features together: which store calls a session costs, and that the
caches standing in for the others (roster, pending requests, empty offline queues) stay right.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from blether.core import events
from blether.features.last import KEY, STORE
from blether.jid import JID
from blether.storage.api import RosterItem, Storage
from features.test_roster import ROSTER, World

MODULES = ("roster", "presence", "offline", "last")


class Calls:
    """Records every store method called on `storage` ("roster.load", "kv.set_many"…)."""

    def __init__(self, storage: Storage) -> None:
        self.names: list[str] = []
        self.args: list[tuple[Any, ...]] = []
        for store_name in ("accounts", "roster", "offline", "kv", "blocklist"):
            store = getattr(storage, store_name)
            for name in dir(type(store)):
                method = getattr(store, name)
                if not name.startswith("_") and inspect.iscoroutinefunction(method):
                    setattr(store, name, self._wrap(f"{store_name}.{name}", method))

    def _wrap(self, label: str, method: Callable[..., Awaitable[Any]]
              ) -> Callable[..., Awaitable[Any]]:
        async def recorded(*args: Any, **kwargs: Any) -> Any:
            self.names.append(label)
            self.args.append(args)
            return await method(*args, **kwargs)
        return recorded

    def take(self) -> list[str]:
        names, self.names, self.args = self.names, [], []
        return names


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.create(tmp_path, MODULES)
    yield w
    await w.close()


async def subscribe(world: World, user: str, contact: str, subscription: str) -> None:
    await world.s.storage.roster.put(user, RosterItem(jid=contact, subscription=subscription))


async def test_a_login_and_logout_read_the_roster_once_and_write_once(world: World) -> None:
    await subscribe(world, "alice@localhost", "bob@localhost", "both")
    await subscribe(world, "bob@localhost", "alice@localhost", "both")
    bob = await world.online("bob@localhost/b")
    calls = Calls(world.s.storage)
    alice = await world.online("alice@localhost/a")    # roster get, initial presence
    assert calls.take() == ["roster.load", "offline.list"]
    bob.sent.clear()
    await world.end(alice)
    # The unavailable broadcast still had the roster; both logout records in one write.
    [gone] = bob.take("presence", **{"from": "alice@localhost/a"})
    assert gone.attrs["type"] == "unavailable"
    assert calls.names == ["kv.set_many"]
    [(user, entries)] = calls.args
    assert user == "alice@localhost"
    assert sorted((store, key) for store, key, _value in entries) == [
        ("last", "last"), ("presence", "last-unavailable")]
    calls.take()
    assert not world.s.module("roster").cache.cached("alice@localhost")
    # Nothing was stored for alice since her queue was read empty: no offline read now.
    alice = await world.online("alice@localhost/a")
    await world.end(alice)
    assert calls.take() == ["roster.load", "kv.set_many"]


async def test_a_second_session_reads_nothing(world: World) -> None:
    first = await world.online("alice@localhost/a")
    calls = Calls(world.s.storage)
    second = await world.online("alice@localhost/b")
    assert calls.take() == []
    await world.end(second)            # the account is still online: no logout records
    assert calls.take() == []
    await world.end(first)
    assert calls.take() == ["kv.set_many"]


async def test_the_logout_records_are_readable(world: World) -> None:
    await subscribe(world, "alice@localhost", "bob@localhost", "from")
    alice = await world.online("alice@localhost/a")
    await world.end(alice)
    assert await world.s.storage.kv.get("alice@localhost", STORE, KEY) is not None
    bob = await world.online("bob@localhost/b")
    await world.send(bob, "<presence to='alice@localhost' type='probe'/>")
    [last] = bob.take("presence", **{"from": "alice@localhost/a"})
    assert last.attrs["type"] == "unavailable"
    assert last.find("delay", "urn:xmpp:delay") is not None


async def test_unavailable_before_the_stream_ends_is_kept_at_once(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    calls = Calls(world.s.storage)
    await world.send(alice, "<presence type='unavailable'><status>bye</status></presence>")
    assert calls.take() == ["kv.set"]            # kept for probes while still connected
    await world.end(alice)
    assert calls.names == ["kv.set_many"]
    [(_user, entries)] = calls.args
    assert [(store, key) for store, key, _value in entries] == [("last", "last")]
    presence = await world.s.storage.kv.get("alice@localhost", "presence", "last-unavailable")
    assert presence is not None and "bye" in presence


async def test_roster_get_with_the_current_version_reads_no_delta(world: World) -> None:
    await subscribe(world, "alice@localhost", "bob@localhost", "both")
    _items, version = await world.s.storage.roster.get_all("alice@localhost")
    alice = await world.bind("alice@localhost/a")
    calls = Calls(world.s.storage)
    reply = await world.iq(alice, f"<iq type='get' id='v'><query xmlns='{ROSTER}' "
                                  f"ver='{version}'/></iq>")
    assert reply.attrs["type"] == "result" and reply.children == []
    await asyncio.sleep(0.01)
    assert alice.take("iq", type="set") == []      # no pushes either
    assert calls.take() == ["roster.load"]
    # An older version still gets its delta from storage.
    reply = await world.iq(alice, f"<iq type='get' id='w'><query xmlns='{ROSTER}' "
                                  f"ver='{version - 1}'/></iq>")
    assert reply.children == []
    assert calls.take() == ["roster.changes_since"]


async def test_pending_requests_come_from_the_cache_and_stay_right(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    bob = await world.online("bob@localhost/b")        # bob's roster is cached now
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'>"
                            "<status>one</status></presence>")
    carol = await world.online("carol@localhost/c")
    await world.send(carol, "<presence to='bob@localhost' type='subscribe'/>")
    # A repeated request replaces the stanza and keeps its place, as in storage.
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'>"
                            "<status>two</status></presence>")
    bob.sent.clear()
    calls = Calls(world.s.storage)
    second = await world.online("bob@localhost/b2", presence=False)
    await world.send(second, "<presence/>")
    requests = second.take("presence", type="subscribe")
    assert [(r.attrs["from"], r.find_text("status")) for r in requests] == [
        ("alice@localhost", "two"), ("carol@localhost", None)]
    assert not any(name.startswith("roster.") for name in calls.take())
    cached = await world.s.module("roster").cache.pending("bob@localhost")
    assert cached == await world.s.storage.roster.get_pending_in("bob@localhost")
    # Answered (approved, declined): gone from the cache and from storage.
    await world.send(bob, "<presence to='alice@localhost' type='subscribed'/>")
    await world.send(bob, "<presence to='carol@localhost' type='unsubscribed'/>")
    third = await world.online("bob@localhost/b3", presence=False)
    await world.send(third, "<presence/>")
    assert third.take("presence", type="subscribe") == []
    assert await world.s.module("roster").cache.pending("bob@localhost") == []
    assert await world.s.storage.roster.get_pending_in("bob@localhost") == []


async def test_account_removal_empties_the_cached_roster(world: World) -> None:
    await subscribe(world, "alice@localhost", "bob@localhost", "both")
    alice = await world.online("alice@localhost/a")
    await world.s.storage.purge_user("alice@localhost")
    await world.s.hooks.notify(events.ACCOUNT_REMOVED,
                               events.AccountEvent(JID.parse("alice@localhost"), "admin"))
    reply = await world.iq(alice, f"<iq type='get' id='r'><query xmlns='{ROSTER}'/></iq>")
    query = reply.find("query", ROSTER)
    assert query is not None and query.children == []
    bob = await world.online("bob@localhost/b")
    await world.end(alice)     # the purged roster has no subscriber left to tell
    assert bob.take("presence", **{"from": "alice@localhost/a"}) == []
