"""The presence feature (RFC 6121 §4) against the real router, hooks and SQLite storage.

`World` (in-memory sessions, remote stanzas captured at ROUTE_REMOTE) comes from
test_roster.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from blether.core import events
from blether.storage.api import RosterItem
from features.test_roster import World, error_condition, xml


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.create(tmp_path)
    yield w
    await w.close()


async def subscribe(world: World, user: str, contact: str, subscription: str) -> None:
    """Give `user` a roster item for `contact` with this subscription (set up directly)."""
    await world.s.storage.roster.put(user, RosterItem(jid=contact, subscription=subscription))


async def test_initial_presence_broadcast_probes_and_own_resources(world: World) -> None:
    await subscribe(world, "alice@localhost", "bob@localhost", "both")
    await subscribe(world, "bob@localhost", "alice@localhost", "both")
    await subscribe(world, "alice@localhost", "carol@localhost", "to")
    await subscribe(world, "carol@localhost", "alice@localhost", "from")
    await subscribe(world, "alice@localhost", "romeo@example.net", "from")
    await subscribe(world, "alice@localhost", "juliet@example.net", "to")
    await subscribe(world, "alice@localhost", "nobody@localhost", "none")
    bob = await world.online("bob@localhost/b")
    carol = await world.online("carol@localhost/c")
    other = await world.online("alice@localhost/other")
    available: list[str] = []

    async def seen(ev: events.SessionEvent) -> bool:
        available.append(str(ev.session.jid))
        return False

    world.s.hooks.add(events.SESSION_AVAILABLE, seen)
    world.remote.clear()
    alice = await world.bind("alice@localhost/a")
    await world.send(alice, "<presence><show>away</show><priority>5</priority></presence>")
    assert alice.available and alice.priority == 5
    assert alice.presence is not None and alice.presence.attrs["from"] == "alice@localhost/a"
    # Broadcast to 'from'/'both' contacts (bare JIDs), never to 'to'/'none' ones.
    [to_bob] = bob.take("presence", **{"from": "alice@localhost/a"})
    assert to_bob.attrs["to"] == "bob@localhost" and to_bob.find_text("show") == "away"
    assert carol.take("presence", **{"from": "alice@localhost/a"}) == []
    [to_romeo] = world.take_remote(to="romeo@example.net")
    assert "type" not in to_romeo.attrs
    # Probes from the bare JID to 'to'/'both' contacts (§4.3.1), answered by their servers.
    [probe] = world.take_remote(to="juliet@example.net")
    assert probe.attrs == {"type": "probe", "from": "alice@localhost", "to": "juliet@example.net"}
    assert world.remote == []
    assert len(alice.take("presence", **{"from": "bob@localhost/b"})) == 1
    assert len(alice.take("presence", **{"from": "carol@localhost/c"})) == 1
    # The account's resources see each other, the sender gets its own presence too.
    assert len(other.take("presence", **{"from": "alice@localhost/a"})) == 1
    assert len(alice.take("presence", **{"from": "alice@localhost/a"})) == 1
    assert len(alice.take("presence", **{"from": "alice@localhost/other"})) == 1
    assert available == ["alice@localhost/a"]
    # Subsequent presence: broadcast again, no probes, no SESSION_AVAILABLE.
    await world.send(alice, "<presence><show>dnd</show></presence>")
    assert len(bob.take("presence", **{"from": "alice@localhost/a"})) == 1
    assert [e.attrs.get("type") for e in world.remote] == [None]
    assert available == ["alice@localhost/a"] and alice.priority == 0


@pytest.mark.parametrize("priority", ["128", "-129", "high", "1.5", ""])
async def test_invalid_priority_is_refused(world: World, priority: str) -> None:
    alice = await world.bind("alice@localhost/a")
    await world.send(alice, f"<presence><priority>{priority}</priority></presence>")
    [err] = alice.take("presence")
    assert error_condition(err) == "bad-request"
    assert not alice.available and alice.presence is None


async def test_negative_priority_gets_presence_not_bare_messages(world: World) -> None:
    await subscribe(world, "bob@localhost", "alice@localhost", "both")
    await subscribe(world, "alice@localhost", "bob@localhost", "both")
    alice = await world.online("alice@localhost/a", presence=False)
    await world.send(alice, "<presence><priority>-1</priority></presence>")
    bob = await world.online("bob@localhost/b")
    assert len(alice.take("presence", **{"from": "bob@localhost/b"})) == 1
    await world.send(bob, "<message to='alice@localhost' type='chat'><body>x</body></message>")
    assert alice.take("message") == []


async def test_unavailable_goes_to_subscribers_resources_and_directed(world: World) -> None:
    await subscribe(world, "alice@localhost", "bob@localhost", "from")
    bob = await world.online("bob@localhost/b")
    carol = await world.online("carol@localhost/c")
    alice = await world.online("alice@localhost/a")
    other = await world.online("alice@localhost/other")
    bob.sent.clear()
    # Directed presence to a non-subscriber is remembered; to a subscriber it is not.
    await world.send(alice, "<presence to='carol@localhost/c'><status>psst</status></presence>")
    await world.send(alice, "<presence to='bob@localhost'/>")
    await world.send(alice, "<presence to='nobody@example.net'/>")
    assert len(carol.take("presence", **{"from": "alice@localhost/a"})) == 1
    assert {str(j) for j in alice.directed} == {"carol@localhost/c", "nobody@example.net"}
    await world.send(alice, "<presence to='nobody@example.net' type='unavailable'/>")
    assert {str(j) for j in alice.directed} == {"carol@localhost/c"}
    bob.sent.clear()
    world.remote.clear()
    other.sent.clear()
    await world.send(alice, "<presence type='unavailable'><status>bye</status></presence>")
    assert not alice.available and alice.directed == set()
    for session in (bob, carol, other):
        [gone] = session.take("presence", **{"from": "alice@localhost/a"})
        assert gone.attrs["type"] == "unavailable" and gone.find_text("status") == "bye"
    assert world.remote == []  # the directed unavailable already went


async def test_stream_end_broadcasts_unavailable(world: World) -> None:
    await subscribe(world, "alice@localhost", "bob@localhost", "both")
    await subscribe(world, "bob@localhost", "alice@localhost", "both")
    bob = await world.online("bob@localhost/b")
    carol = await world.online("carol@localhost/c")
    alice = await world.online("alice@localhost/a")
    other = await world.online("alice@localhost/other")
    await world.send(alice, "<presence to='carol@localhost'/>")
    for s in (bob, carol, other):
        s.sent.clear()
    unavailable: list[str] = []

    async def seen(ev: events.SessionEvent) -> bool:
        unavailable.append(str(ev.session.jid))
        return False

    world.s.hooks.add(events.SESSION_UNAVAILABLE, seen)
    await world.end(alice, "dropped")
    for session in (bob, carol, other):
        [gone] = session.take("presence", **{"from": "alice@localhost/a"})
        assert gone.attrs["type"] == "unavailable"
    assert unavailable == ["alice@localhost/a"]


async def test_directed_presence_before_initial_presence_gets_unavailable(world: World) -> None:
    carol = await world.online("carol@localhost/c")
    alice = await world.bind("alice@localhost/a")
    await world.send(alice, "<presence to='carol@localhost'/>")
    carol.sent.clear()
    await world.end(alice)
    [gone] = carol.take("presence", **{"from": "alice@localhost/a"})
    assert gone.attrs["type"] == "unavailable"


async def test_probe_answers(world: World) -> None:
    await subscribe(world, "alice@localhost", "bob@localhost", "from")
    alice = await world.online("alice@localhost/a", presence=False)
    await world.send(alice, "<presence><status>working</status></presence>")
    second = await world.online("alice@localhost/b", presence=False)
    await world.send(second, "<presence><show>xa</show></presence>")
    bob = await world.online("bob@localhost/b")
    carol = await world.online("carol@localhost/c")
    bob.sent.clear()
    # A subscriber's probe: the last presence of each available resource (§4.3.2).
    await world.send(bob, "<presence to='alice@localhost' type='probe'/>")
    answers = bob.take("presence")
    assert sorted(a.attrs["from"] for a in answers) == ["alice@localhost/a", "alice@localhost/b"]
    assert {a.attrs["to"] for a in answers} == {"bob@localhost/b"}
    assert sorted(a.find_text("status") or a.find_text("show") or "" for a in answers) == \
        ["working", "xa"]
    # A non-subscriber learns nothing: its server gets 'unsubscribed' (§4.3.2), which it
    # ignores (A.3.4: no state change, not delivered). Same for an account that does not exist.
    for to in ("alice@localhost", "ghost@localhost"):
        await world.send(carol, f"<presence to='{to}' type='probe'/>")
        assert carol.take("presence") == []
        await world.s.router.route(xml(f"<presence from='romeo@example.net/x' to='{to}' "
                                       "type='probe'/>"))
        [answer] = world.take_remote()
        assert answer.attrs == {"type": "unsubscribed", "from": to, "to": "romeo@example.net"}
    # Offline: the last unavailable presence, with the time it was sent (XEP-0203).
    await world.send(alice, "<presence type='unavailable'><status>lunch</status></presence>")
    await world.end(second)
    await world.end(alice)
    bob.sent.clear()
    await world.s.router.route(xml("<presence from='bob@localhost' to='alice@localhost' "
                                   "type='probe'/>"))
    [last] = bob.take("presence")
    assert last.attrs["type"] == "unavailable" and last.attrs["from"] == "alice@localhost/b"
    assert last.find("delay", "urn:xmpp:delay") is not None


async def test_probe_of_a_never_seen_account_answers_unavailable(world: World) -> None:
    await subscribe(world, "alice@localhost", "romeo@example.net", "both")
    await world.s.router.route(xml("<presence from='romeo@example.net/x' to='alice@localhost' "
                                   "type='probe'/>"))
    [answer] = world.take_remote()
    assert answer.attrs == {"type": "unavailable", "from": "alice@localhost",
                            "to": "romeo@example.net/x"}


async def test_presence_from_anyone_is_delivered_to_available_resources(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    hidden = await world.online("alice@localhost/h", presence=False)
    await world.s.router.route(xml("<presence from='stranger@example.net/x' "
                                   "to='alice@localhost'/>"))
    assert len(alice.take("presence", **{"from": "stranger@example.net/x"})) == 1
    assert hidden.sent == []


async def test_presence_and_roster_handlers_are_not_run_for_a_message() -> None:
    """The stanza hooks' presence-only handlers are registered for presence only: a chat
    message from a client wakes no STANZA_FROM_SESSION handler at all (the router then does
    not even build the event)."""
    from blether.features import DEFAULT_MODULES
    from features.services_kit import Kit

    kit = await Kit.create(DEFAULT_MODULES)
    try:
        hooks = kit.s.hooks
        assert not hooks.wants(events.STANZA_FROM_SESSION, "message")
        assert hooks.wants(events.STANZA_FROM_SESSION, "presence")
    finally:
        await kit.close()
