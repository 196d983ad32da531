"""XEP-0160 offline messages with XEP-0203 delay, in memory: real router, hooks and SQLite
storage, fake sessions that record what is written to them (the presence feature is played
by the test: it sets `available`/`priority` and fires SESSION_AVAILABLE as that feature does).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from blether.core import events
from blether.features.offline import (
    decode,
    encode,
    is_standalone_chat_state,
    should_store,
    with_delay,
    xep0082_stamp,
)
from blether.storage import StorageError
from blether.xml.element import Element
from features.services_kit import FakeSession, Kit, xml

C = "jabber:client"
DELAY = "urn:xmpp:delay"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")  # XEP-0082 DateTime, UTC
x = xml


def messages(session: FakeSession) -> list[Element]:
    return [s for s in session.sent if s.name == "message"]


class World(Kit):
    async def bind(self, full: str) -> FakeSession:
        return await self.login(full)

    async def available(self, session: FakeSession, priority: int = 0) -> None:
        """What the presence feature does on initial presence."""
        session.available = True
        session.priority = priority
        await self.s.hooks.notify(events.SESSION_AVAILABLE, events.SessionEvent(session))

    async def stored(self, user: str) -> list[Element]:
        return [decode(m.stanza_xml) for m in await self.s.storage.offline.list(user)]


async def make_world(options: dict[str, Any] | None = None) -> World:
    kit = await World.create(["offline"], {"offline": options or {}})
    for user in ("alice@localhost", "bob@localhost"):
        await kit.account(user)
    return kit


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = await make_world()
    yield w
    await w.close()


# -- what is stored (XEP-0160 §3, XEP-0334) --------------------------------------------------

@pytest.mark.parametrize(("xml", "stored"), [
    ("<message to='b@x'><body>hi</body></message>", True),                     # normal
    ("<message type='normal' to='b@x'><body>hi</body></message>", True),
    ("<message type='chat' to='b@x'><body>hi</body></message>", True),
    ("<message type='x-new' to='b@x'><body>hi</body></message>", True),        # RFC 6121 §5.2.2
    ("<message type='groupchat' to='b@x'><body>hi</body></message>", False),
    ("<message type='headline' to='b@x'><body>hi</body></message>", False),
    ("<message type='error' to='b@x'><body>hi</body></message>", False),
    # only chat states (XEP-0160 §3 "chat"): not stored, with or without companions
    ("<message type='chat' to='b@x'><composing xmlns='http://jabber.org/protocol/chatstates'/>"
     "</message>", False),
    ("<message type='chat' to='b@x'><paused xmlns='http://jabber.org/protocol/chatstates'/>"
     "<no-copy xmlns='urn:xmpp:hints'/></message>", False),
    # a chat state next to a body is a real message
    ("<message type='chat' to='b@x'><body>hi</body>"
     "<active xmlns='http://jabber.org/protocol/chatstates'/></message>", True),
    # XEP-0334: no-store forbids, store forces, no-permanent-store allows temporary storage
    ("<message type='chat' to='b@x'><body>hi</body><no-store xmlns='urn:xmpp:hints'/>"
     "</message>", False),
    ("<message type='chat' to='b@x'><gone xmlns='http://jabber.org/protocol/chatstates'/>"
     "<store xmlns='urn:xmpp:hints'/></message>", True),
    ("<message type='chat' to='b@x'><body>otr</body>"
     "<no-permanent-store xmlns='urn:xmpp:hints'/></message>", True),
    # a bodyless message that is not a chat state (e.g. an encrypted payload) is kept
    ("<message type='chat' to='b@x'><encrypted xmlns='eu.siacs.conversations.axolotl'/>"
     "</message>", True),
])
def test_should_store(xml: str, stored: bool) -> None:
    assert should_store(x(xml)) is stored


def test_standalone_chat_state_needs_a_chat_state() -> None:
    assert not is_standalone_chat_state(x("<message><delay xmlns='urn:xmpp:delay'/></message>"))


def test_delay_is_added_to_a_copy() -> None:
    original = x("<message to='bob@localhost'><body>hi</body></message>")
    when = datetime(2002, 9, 10, 23, 8, 25, 120000, tzinfo=UTC)
    stamped = with_delay(original, "capulet.com", when)
    assert original.find("delay", DELAY) is None
    delay = stamped.find("delay", DELAY)
    assert delay is not None
    assert delay.attrs == {"from": "capulet.com", "stamp": "2002-09-10T23:08:25.120Z"}
    assert xep0082_stamp(when) == "2002-09-10T23:08:25.120Z"


def test_storage_encoding_round_trips_and_normalises_namespace() -> None:
    msg = x("<message to='bob@localhost' from='alice@localhost/a' id='m&amp;1'>"
            "<body>&lt;3 &amp; 'quotes' \"too\"</body><x xmlns='urn:example'><y a='1'/></x>"
            "</message>")
    assert decode(encode(msg)) == msg
    # A stanza that arrived over s2s (jabber:server) comes back in the c2s namespace.
    server = Element("message", "jabber:server", {"to": "bob@localhost"},
                     [Element("body", "jabber:server", None, ["hi"])])
    back = decode(encode(server))
    assert back.xmlns == C and back.find("body", C) is not None


# -- storing through the router ---------------------------------------------------------------

async def test_message_to_offline_user_is_stored_with_delay(world: World) -> None:
    alice = await world.bind("alice@localhost/a")
    await world.send(alice, "<message to='bob@localhost' id='m1'><body>hello</body></message>")
    [stored] = await world.stored("bob@localhost")
    assert stored.attrs["to"] == "bob@localhost"       # never rewritten
    assert stored.attrs["from"] == "alice@localhost/a"
    assert stored.find_text("body", C) == "hello"
    delay = stored.find("delay", DELAY)
    assert delay is not None and delay.attrs["from"] == "localhost"
    assert STAMP.match(delay.attrs["stamp"])
    assert alice.sent == []                              # no error for the sender


async def test_chat_to_unknown_full_jid_is_stored_keeping_its_to(world: World) -> None:
    alice = await world.bind("alice@localhost/a")
    await world.send(alice, "<message type='chat' to='bob@localhost/phone'><body>x</body>"
                            "</message>")
    [stored] = await world.stored("bob@localhost")
    assert stored.attrs["to"] == "bob@localhost/phone"


@pytest.mark.parametrize("mtype", ["headline", "error", "groupchat"])
async def test_headline_error_groupchat_are_not_stored(world: World, mtype: str) -> None:
    alice = await world.bind("alice@localhost/a")
    await world.send(alice, f"<message type='{mtype}' to='bob@localhost'><body>x</body>"
                            "</message>")
    assert await world.stored("bob@localhost") == []


async def test_unstorable_message_is_bounced_service_unavailable(world: World) -> None:
    alice = await world.bind("alice@localhost/a")
    await world.send(alice, "<message type='chat' to='bob@localhost' id='cs'>"
                            "<composing xmlns='http://jabber.org/protocol/chatstates'/>"
                            "</message>")
    assert await world.stored("bob@localhost") == []
    [err] = alice.sent
    assert err.attrs["type"] == "error" and err.attrs["id"] == "cs"
    error = err.find("error", C)
    assert error is not None and error.find("service-unavailable", STANZAS) is not None


async def test_quota_full_bounces_service_unavailable() -> None:
    w = await make_world({"quota": 2})
    try:
        alice = await w.bind("alice@localhost/a")
        for n in range(3):
            await w.send(alice, f"<message to='bob@localhost' id='q{n}'><body>{n}</body>"
                                "</message>")
        assert [m.find_text("body", C) for m in await w.stored("bob@localhost")] == ["0", "1"]
        [err] = alice.sent
        assert err.attrs["id"] == "q2" and err.attrs["type"] == "error"
        error = err.find("error", C)
        assert error is not None and error.attrs["type"] == "cancel"
        assert error.find("service-unavailable", STANZAS) is not None
        assert "full" in (error.find_text("text", STANZAS) or "")
    finally:
        await w.close()


async def test_storage_failure_bounces_internal_server_error(
        world: World, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    async def broken(*_a: object, **_k: object) -> int:
        raise StorageError("disk on fire")

    monkeypatch.setattr(world.s.storage.offline, "push", broken)
    alice = await world.bind("alice@localhost/a")
    await world.send(alice, "<message to='bob@localhost' id='f'><body>x</body></message>")
    [err] = alice.sent
    error = err.find("error", C)
    assert error is not None and error.find("internal-server-error", STANZAS) is not None
    assert "storing an offline message for bob@localhost failed" in caplog.text


async def test_disco_advertises_msgoffline(world: World) -> None:
    assert "msgoffline" in world.s.disco.host_features


# -- delivery (XEP-0160 §2 step 5) -------------------------------------------------------------

async def _store_three(world: World) -> None:
    alice = await world.bind("alice@localhost/a")
    for n in range(3):
        await world.send(alice, f"<message to='bob@localhost' id='o{n}'><body>{n}</body>"
                                "</message>")
    assert len(await world.stored("bob@localhost")) == 3


async def test_delivered_in_order_on_available_then_deleted(world: World) -> None:
    await _store_three(world)
    bob = await world.bind("bob@localhost/phone")
    assert bob.sent == []                        # bound is not enough: needs presence
    await world.available(bob, priority=1)
    got = messages(bob)
    assert [m.attrs["id"] for m in got] == ["o0", "o1", "o2"]
    assert all(m.attrs["to"] == "bob@localhost" for m in got)
    assert all(m.find("delay", DELAY) is not None for m in got)
    assert await world.s.storage.offline.count("bob@localhost") == 0
    # exactly once: another session coming online gets nothing
    laptop = await world.bind("bob@localhost/laptop")
    await world.available(laptop)
    assert messages(laptop) == []


async def test_negative_priority_does_not_trigger_delivery(world: World) -> None:
    await _store_three(world)
    bob = await world.bind("bob@localhost/bot")
    await world.available(bob, priority=-1)
    assert messages(bob) == []
    assert await world.s.storage.offline.count("bob@localhost") == 3


async def test_raising_priority_to_non_negative_delivers(world: World) -> None:
    await _store_three(world)
    bob = await world.bind("bob@localhost/bot")
    await world.available(bob, priority=-1)
    await world.send(bob, "<presence><priority>-5</priority></presence>")
    assert messages(bob) == []
    await world.send(bob, "<presence><show>away</show><priority>0</priority></presence>")
    assert [m.attrs["id"] for m in messages(bob)] == ["o0", "o1", "o2"]
    assert await world.s.storage.offline.count("bob@localhost") == 0


async def test_closed_session_keeps_the_messages(world: World) -> None:
    await _store_three(world)
    bob = await world.bind("bob@localhost/phone")
    bob.closed = True
    await world.available(bob)
    assert await world.s.storage.offline.count("bob@localhost") == 3


async def test_two_sessions_at_once_get_each_message_once(world: World) -> None:
    await _store_three(world)
    one = await world.bind("bob@localhost/one")
    two = await world.bind("bob@localhost/two")
    await asyncio.gather(world.available(one), world.available(two))
    ids = [m.attrs["id"] for m in messages(one) + messages(two)]
    assert sorted(ids) == ["o0", "o1", "o2"]


async def test_unreadable_row_is_dropped_and_others_delivered(world: World) -> None:
    await world.s.storage.offline.push("bob@localhost", "<message", datetime.now(UTC), 10)
    await world.s.storage.offline.push("bob@localhost", "<message id='ok'/>",
                                       datetime.now(UTC), 10)
    bob = await world.bind("bob@localhost/phone")
    await world.available(bob)
    assert [m.attrs.get("id") for m in messages(bob)] == ["ok"]
    assert await world.s.storage.offline.count("bob@localhost") == 0


# -- with the real presence feature -------------------------------------------------------------

async def test_initial_presence_delivers_before_the_session_takes_live_messages() -> None:
    """Stored messages are written before the presence feature makes the session available,
    so nothing sent afterwards can overtake them (RFC 6120 §10.1)."""
    w = await World.create(["offline", "presence"])
    try:
        alice = await w.login("alice@localhost/a")
        await w.account("bob@localhost")
        await w.send(alice, "<message to='bob@localhost' id='old'><body>old</body></message>")
        bob = await w.login("bob@localhost/phone")
        await w.send(bob, "<presence/>")
        assert bob.available
        await w.send(alice, "<message to='bob@localhost' id='new'><body>new</body></message>")
        kinds = [(s.name, s.attrs.get("id")) for s in bob.sent]
        assert kinds.index(("message", "old")) < kinds.index(("presence", None))
        assert [m.attrs["id"] for m in messages(bob)] == ["old", "new"]
        assert await w.s.storage.offline.count("bob@localhost") == 0
    finally:
        await w.close()


async def test_refused_presence_delivers_nothing() -> None:
    w = await World.create(["offline", "presence"])
    try:
        alice = await w.login("alice@localhost/a")
        await w.account("bob@localhost")
        await w.send(alice, "<message to='bob@localhost' id='m'><body>x</body></message>")
        bob = await w.login("bob@localhost/phone")
        await w.send(bob, "<presence><priority>500</priority></presence>")  # bad-request
        assert not bob.available and messages(bob) == []
        await w.send(bob, "<presence><priority>-3</priority></presence>")
        assert bob.available and messages(bob) == []
        assert await w.s.storage.offline.count("bob@localhost") == 1
    finally:
        await w.close()


# -- reading the queue only when something may be in it ----------------------------------------

def count_lists(world: World, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the users whose queue is read from storage from now on."""
    reads: list[str] = []
    real = world.s.storage.offline.list

    async def listing(user: str, limit: int | None = None) -> Any:
        reads.append(user)
        return await real(user, limit)

    monkeypatch.setattr(world.s.storage.offline, "list", listing)
    return reads


async def test_a_queue_known_empty_is_not_read_again(world: World,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    reads = count_lists(world, monkeypatch)
    phone = await world.bind("bob@localhost/phone")
    await world.available(phone)
    laptop = await world.bind("bob@localhost/laptop")
    await world.available(laptop)
    await world.end(phone)
    phone = await world.bind("bob@localhost/phone")
    await world.available(phone)
    assert reads == ["bob@localhost"]   # read empty once; nothing stored since
    # Something stored: the next delivery reads again, and delivers it.
    alice = await world.bind("alice@localhost/a")
    await world.end(phone)
    await world.end(laptop)
    await world.send(alice, "<message to='bob@localhost' id='m'><body>x</body></message>")
    bob = await world.bind("bob@localhost/phone")
    await world.available(bob)
    assert reads == ["bob@localhost"] * 2
    assert [m.attrs["id"] for m in messages(bob)] == ["m"]
    await world.available(await world.bind("bob@localhost/tablet"))
    assert reads == ["bob@localhost"] * 2   # delivered and deleted: empty again


async def test_a_push_in_flight_during_the_read_is_not_missed(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    real = world.s.storage.offline.push

    async def slow_push(*args: Any) -> Any:
        started.set()
        await release.wait()
        return await real(*args)

    monkeypatch.setattr(world.s.storage.offline, "push", slow_push)
    alice = await world.bind("alice@localhost/a")
    sending = asyncio.create_task(
        world.send(alice, "<message to='bob@localhost' id='late'><body>x</body></message>"))
    await started.wait()
    bob = await world.bind("bob@localhost/phone")
    await world.available(bob)           # reads before the push commits
    assert messages(bob) == []
    release.set()
    await sending
    laptop = await world.bind("bob@localhost/laptop")
    await world.available(laptop)
    assert [m.attrs["id"] for m in messages(laptop)] == ["late"]


async def test_a_push_started_during_the_read_is_not_missed(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    reading, release = asyncio.Event(), asyncio.Event()
    real = world.s.storage.offline.list

    async def slow_list(user: str, limit: int | None = None) -> Any:
        result = await real(user, limit)   # the snapshot is taken before the push
        reading.set()
        await release.wait()
        return result

    monkeypatch.setattr(world.s.storage.offline, "list", slow_list)
    alice = await world.bind("alice@localhost/a")
    bob = await world.bind("bob@localhost/phone")
    # Not available yet (as in the presence feature's first pass), so the message is stored.
    delivering = asyncio.create_task(world.module("offline").deliver(bob))
    await reading.wait()
    await world.send(alice, "<message to='bob@localhost' id='late'><body>x</body></message>")
    release.set()
    await delivering
    assert messages(bob) == []
    laptop = await world.bind("bob@localhost/laptop")
    await world.available(laptop)
    assert [m.attrs["id"] for m in messages(laptop)] == ["late"]


async def test_messages_not_deleted_are_sent_again(world: World,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    await _store_three(world)

    async def broken(*_a: object) -> None:
        raise StorageError("disk on fire")

    monkeypatch.setattr(world.s.storage.offline, "delete", broken)
    bob = await world.bind("bob@localhost/phone")
    await world.available(bob)
    assert len(messages(bob)) == 3
    monkeypatch.undo()
    laptop = await world.bind("bob@localhost/laptop")
    await world.available(laptop)
    assert [m.attrs["id"] for m in messages(laptop)] == ["o0", "o1", "o2"]
