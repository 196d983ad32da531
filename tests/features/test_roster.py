"""The roster feature against the real router, hooks and SQLite storage, with in-memory sessions.

RFC 6121 §2 (roster get/set/push, versioning) and §3 (subscriptions between local accounts
and with a remote domain, whose stanzas are captured at ROUTE_REMOTE). `World` is shared with
test_presence.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from blether.config import Config
from blether.core import events
from blether.core.modules import ModuleManager
from blether.core.router import Router
from blether.core.services import Services
from blether.core.session import Session
from blether.errors import StreamError
from blether.features import REGISTRY
from blether.jid import JID
from blether.storage import open_storage
from blether.xml.element import Element
from blether.xml.parser import POST_AUTH_C2S, ElementParsed, XMLStreamParser

ROSTER = "jabber:iq:roster"
HEADER = (b"<stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams'>")


def xml(text: str) -> Element:
    events_ = XMLStreamParser(POST_AUTH_C2S).feed(HEADER + text.encode())
    return next(e.element for e in events_ if isinstance(e, ElementParsed))


class FakeSession(Session):
    def __init__(self, jid: JID) -> None:
        super().__init__(jid)
        self.sent: list[Element] = []

    def send(self, stanza: Element) -> None:
        if not self.closed:
            self.sent.append(stanza)

    def send_bytes(self, data: bytes) -> None:
        raise AssertionError("not used")

    async def close(self, error: StreamError | None = None) -> None:
        self.closed = True

    def take(self, name: str | None = None, **attrs: str) -> list[Element]:
        """Remove and return the stanzas sent so far that match."""
        hit = [e for e in self.sent if (name is None or e.name == name)
               and all(e.attrs.get(k.rstrip("_")) == v for k, v in attrs.items())]
        self.sent = [e for e in self.sent if not any(e is h for h in hit)]
        return hit

    def pushes(self) -> list[Element]:
        """The roster pushes received (and removed from `sent`): their <item/>s."""
        out = []
        for iq in self.take("iq", type="set"):
            query = iq.find("query", ROSTER)
            assert query is not None
            assert iq.attrs["from"] == str(self.bare)  # §2.1.6: only the account pushes
            assert "ver" in query.attrs
            out.extend(query.find_all("item", ROSTER))
        return out


class World:
    """One server (router, hooks, modules, SQLite) and its in-memory clients."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self.remote: list[Element] = []

        async def capture(ev: events.ToRemote) -> bool:
            self.remote.append(ev.stanza)
            return True

        services.hooks.add(events.ROUTE_REMOTE, capture)

    @classmethod
    async def create(cls, tmp_path: Path, modules: tuple[str, ...] = ("roster", "presence"),
                     options: dict[str, dict[str, Any]] | None = None) -> World:
        storage = await open_storage("sqlite://")
        s = Services(config=Config(data_dir=tmp_path), storage=storage,
                     hosts=frozenset({"localhost"}))
        s.router = Router(s)
        s.modules = ModuleManager(s, {n: REGISTRY[n] for n in modules})
        s.modules.load(list(modules), options or {})
        await s.modules.start()
        for user in ("alice", "bob", "carol"):
            await storage.accounts.create(f"{user}@localhost", [])
        return cls(s)

    async def close(self) -> None:
        await self.s.modules.stop()
        await self.s.storage.close()

    async def bind(self, full: str) -> FakeSession:
        session = FakeSession(JID.parse(full))
        self.s.sessions.add(session)
        await self.s.hooks.notify(events.SESSION_BOUND, events.SessionEvent(session))
        return session

    async def online(self, full: str, *, roster: bool = True,
                     presence: bool = True) -> FakeSession:
        """Bind, fetch the roster, send initial presence; then forget what was received."""
        session = await self.bind(full)
        if roster:
            await self.send(session, f"<iq type='get' id='r0'><query xmlns='{ROSTER}'/></iq>")
        if presence:
            await self.send(session, "<presence/>")
        session.sent.clear()
        return session

    async def send(self, session: FakeSession, text: str) -> None:
        await self.s.router.from_session(session, xml(text))

    async def iq(self, session: FakeSession, text: str) -> Element:
        stanza = xml(text)
        await self.s.router.from_session(session, stanza)
        replies = session.take("iq", id=stanza.attrs["id"])
        assert len(replies) == 1, f"expected one reply, got {replies}"
        return replies[0]

    async def end(self, session: FakeSession, reason: str = "closed") -> None:
        session.closed = True
        self.s.sessions.remove(session)
        await self.s.hooks.notify(events.SESSION_ENDED, events.SessionEnded(session, reason))

    async def item(self, user: str, contact: str) -> Any:
        return await self.s.storage.roster.get(user, contact)

    def take_remote(self, **attrs: str) -> list[Element]:
        hit = [e for e in self.remote if all(e.attrs.get(k.rstrip("_")) == v
                                             for k, v in attrs.items())]
        self.remote = [e for e in self.remote if not any(e is h for h in hit)]
        return hit


def error_condition(stanza: Element) -> str:
    assert stanza.attrs.get("type") == "error", stanza
    err = stanza.find("error")
    assert err is not None
    return err.elements()[0].name


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.create(tmp_path)
    yield w
    await w.close()


# -- roster get / set ---------------------------------------------------------------------

async def test_empty_roster_get_marks_the_resource_interested(world: World) -> None:
    alice = await world.bind("alice@localhost/a")
    assert not alice.interested
    reply = await world.iq(alice, "<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>")
    query = reply.find("query", ROSTER)
    assert reply.attrs["type"] == "result" and query is not None
    assert query.find_all("item") == [] and query.attrs["ver"] == "0"
    assert alice.interested


async def test_set_pushes_to_interested_resources_only_then_result(world: World) -> None:
    a1 = await world.online("alice@localhost/one")
    a2 = await world.online("alice@localhost/two")
    a3 = await world.online("alice@localhost/three", roster=False)
    await world.send(a1, "<iq type='set' id='s1'><query xmlns='jabber:iq:roster'>"
                         "<item jid='Bob@LOCALHOST/res' name='Bob'><group>Friends</group>"
                         "<group>Work</group></item></query></iq>")
    # §2.3.2: push to every interested resource (the sender too), then the result.
    kinds = [(e.name, e.attrs["type"]) for e in a1.sent if e.name == "iq"]
    assert kinds == [("iq", "set"), ("iq", "result")]
    for session in (a1, a2):
        [item] = session.pushes()
        assert item.attrs == {"jid": "bob@localhost", "name": "Bob", "subscription": "none"}
        assert [g.text for g in item.find_all("group")] == ["Friends", "Work"]
    assert a3.take("iq") == []
    stored = await world.item("alice@localhost", "bob@localhost")
    assert stored.groups == ("Friends", "Work") and stored.subscription == "none"


async def test_set_replaces_the_item_atomically_and_keeps_the_subscription(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    await world.iq(alice, "<iq type='set' id='s1'><query xmlns='jabber:iq:roster'>"
                          "<item jid='bob@localhost' name='B' subscription='both'>"
                          "<group>G</group></item></query></iq>")
    stored = await world.item("alice@localhost", "bob@localhost")
    # 'subscription' from the client is ignored (§2.1.2.5); ask stays pending.
    assert (stored.name, stored.groups, stored.subscription, stored.ask) == \
        ("B", ("G",), "none", True)
    await world.iq(alice, "<iq type='set' id='s2'><query xmlns='jabber:iq:roster'>"
                          "<item jid='bob@localhost'/></query></iq>")
    stored = await world.item("alice@localhost", "bob@localhost")
    assert (stored.name, stored.groups, stored.ask) == (None, (), True)


@pytest.mark.parametrize(("payload", "condition"), [
    ("<query xmlns='jabber:iq:roster'/>", "bad-request"),
    ("<query xmlns='jabber:iq:roster'><item jid='b@localhost'/><item jid='c@localhost'/>"
     "</query>", "bad-request"),
    ("<query xmlns='jabber:iq:roster'><item name='x'/></query>", "bad-request"),
    ("<query xmlns='jabber:iq:roster'><item jid='b@localhost'><group>G</group>"
     "<group>G</group></item></query>", "bad-request"),
    ("<query xmlns='jabber:iq:roster'><item jid='b@localhost'><group/></item></query>",
     "not-acceptable"),
    ("<query xmlns='jabber:iq:roster'><item jid='b@localhost' name='" + "n" * 1024 + "'/>"
     "</query>", "not-acceptable"),
    ("<query xmlns='jabber:iq:roster'><item jid='a@b@c'/></query>", "jid-malformed"),
    ("<query xmlns='jabber:iq:roster'><item jid='nobody@localhost' subscription='remove'/>"
     "</query>", "item-not-found"),
    ("<query xmlns='jabber:iq:roster'><item jid='alice@localhost'/></query>", "not-allowed"),
])
async def test_roster_set_errors(world: World, payload: str, condition: str) -> None:
    alice = await world.online("alice@localhost/a")
    reply = await world.iq(alice, f"<iq type='set' id='e1'>{payload}</iq>")
    assert error_condition(reply) == condition
    assert alice.sent == []  # no push
    assert await world.s.storage.roster.count("alice@localhost") == 0


async def test_another_account_may_not_read_or_change_a_roster(world: World) -> None:
    bob = await world.online("bob@localhost/b")
    for type_, payload in (("get", "<query xmlns='jabber:iq:roster'/>"),
                           ("set", "<query xmlns='jabber:iq:roster'><item jid='x@localhost'/>"
                                   "</query>")):
        reply = await world.iq(bob, f"<iq type='{type_}' id='f-{type_}' to='alice@localhost'>"
                                    f"{payload}</iq>")
        assert error_condition(reply) == "forbidden"
    assert await world.s.storage.roster.count("alice@localhost") == 0


async def test_roster_size_limit(tmp_path: Path) -> None:
    world = await World.create(tmp_path, options={"roster": {"max_items": 2}})
    try:
        alice = await world.online("alice@localhost/a")
        for n in range(2):
            reply = await world.iq(alice, f"<iq type='set' id='s{n}'><query xmlns='{ROSTER}'>"
                                          f"<item jid='c{n}@localhost'/></query></iq>")
            assert reply.attrs["type"] == "result"
        reply = await world.iq(alice, f"<iq type='set' id='s9'><query xmlns='{ROSTER}'>"
                                      "<item jid='c9@localhost'/></query></iq>")
        assert error_condition(reply) == "policy-violation"
        # Changing an existing item is still fine.
        reply = await world.iq(alice, f"<iq type='set' id='s0b'><query xmlns='{ROSTER}'>"
                                      "<item jid='c0@localhost' name='x'/></query></iq>")
        assert reply.attrs["type"] == "result"
        # A subscription request that would add an item is refused the same way.
        alice.sent.clear()
        await world.send(alice, "<presence to='c9@localhost' type='subscribe'/>")
        [err] = alice.take("presence", type="error")
        assert error_condition(err) == "policy-violation"
        assert world.remote == [] and await world.item("alice@localhost", "c9@localhost") is None
    finally:
        await world.close()


# -- versioning (§2.6) ----------------------------------------------------------------------

async def test_versioning_full_then_delta_then_nothing(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    for jid in ("b@localhost", "c@localhost", "d@localhost"):
        await world.iq(alice, f"<iq type='set' id='{jid}'><query xmlns='{ROSTER}'>"
                              f"<item jid='{jid}'/></query></iq>")
    fresh = await world.bind("alice@localhost/fresh")
    full = await world.iq(fresh, f"<iq type='get' id='v0'><query xmlns='{ROSTER}' ver=''/></iq>")
    query = full.find("query", ROSTER)
    assert query is not None and len(query.find_all("item")) == 3
    ver = query.attrs["ver"]
    # Unchanged: an empty result and no pushes.
    same = await world.iq(fresh, f"<iq type='get' id='v1'><query xmlns='{ROSTER}' "
                                 f"ver='{ver}'/></iq>")
    assert same.children == []
    await asyncio.sleep(0.01)
    assert fresh.sent == []
    # Two changes since: an empty result, then one push per item (final state only).
    await world.iq(alice, f"<iq type='set' id='m1'><query xmlns='{ROSTER}'>"
                          "<item jid='b@localhost' name='B1'/></query></iq>")
    await world.iq(alice, f"<iq type='set' id='m2'><query xmlns='{ROSTER}'>"
                          "<item jid='b@localhost' name='B2'/></query></iq>")
    await world.iq(alice, f"<iq type='set' id='m3'><query xmlns='{ROSTER}'>"
                          "<item jid='c@localhost' subscription='remove'/></query></iq>")
    other = await world.bind("alice@localhost/other")
    delta = await world.iq(other, f"<iq type='get' id='v2'><query xmlns='{ROSTER}' "
                                  f"ver='{ver}'/></iq>")
    assert delta.attrs["type"] == "result" and delta.children == []
    await asyncio.sleep(0.01)
    pushes = other.take("iq", type="set")
    items = [p.find("query", ROSTER).find("item", ROSTER).attrs for p in pushes]  # type: ignore[union-attr]
    assert items == [{"jid": "b@localhost", "name": "B2", "subscription": "none"},
                     {"jid": "c@localhost", "subscription": "remove"}]
    versions = [p.find("query", ROSTER).attrs["ver"] for p in pushes]  # type: ignore[union-attr]
    current = (await world.s.storage.roster.get_all("alice@localhost"))[1]
    assert versions[-1] == str(current) != ver
    # An unknown version gets the whole roster.
    again = await world.iq(other, f"<iq type='get' id='v3'><query xmlns='{ROSTER}' "
                                  "ver='999'/></iq>")
    assert len(again.find("query", ROSTER).find_all("item")) == 2  # type: ignore[union-attr]


async def test_stream_features_advertise_versioning_and_preapproval(world: World) -> None:
    ev = events.StreamFeatures(authenticated=True, secure=True, host="localhost")
    await world.s.hooks.notify(events.COLLECT_FEATURES, ev)
    assert {(f.name, f.xmlns) for f in ev.features} >= {
        ("ver", "urn:xmpp:features:rosterver"), ("sub", "urn:xmpp:features:pre-approval")}
    pre = events.StreamFeatures(authenticated=False, secure=True, host="localhost")
    await world.s.hooks.notify(events.COLLECT_FEATURES, pre)
    assert pre.features == []


# -- cache -----------------------------------------------------------------------------------

async def test_roster_is_cached_while_online_and_dropped_after(world: World) -> None:
    roster = world.s.module("roster")
    alice = await world.online("alice@localhost/a")
    assert roster.cache.cached("alice@localhost")
    await world.iq(alice, f"<iq type='set' id='s'><query xmlns='{ROSTER}'>"
                          "<item jid='b@localhost' name='x'/></query></iq>")
    item = await roster.get_item(JID.parse("alice@localhost"), JID.parse("b@localhost"))
    assert item.name == "x"
    await world.end(alice)
    assert not roster.cache.cached("alice@localhost")
    # Written while offline (an inbound stanza), read fresh from storage.
    await world.s.storage.roster.put("alice@localhost", item.__class__(
        jid="b@localhost", subscription="from"))
    assert await roster.is_subscribed_from(JID.parse("alice@localhost"), JID.parse("b@localhost"))
    assert not await roster.is_subscribed_to(JID.parse("alice@localhost"),
                                             JID.parse("b@localhost"))


async def test_concurrent_changes_keep_every_item(world: World) -> None:
    sessions = [await world.online(f"alice@localhost/r{n}") for n in range(5)]
    await asyncio.gather(*(world.send(s, f"<iq type='set' id='c{n}'><query xmlns='{ROSTER}'>"
                                         f"<item jid='c{n}@localhost'/></query></iq>")
                           for n, s in enumerate(sessions)))
    items = await world.s.module("roster").get_roster(JID.parse("alice@localhost"))
    assert [i.jid for i in items] == [f"c{n}@localhost" for n in range(5)]
    # Pushes arrive in version order on every resource.
    for s in sessions:
        vers = [int(p.find("query", ROSTER).attrs["ver"]) for p in s.take("iq", type="set")]  # type: ignore[union-attr]
        assert vers == sorted(vers) and len(vers) == 5


# -- subscriptions (§3) --------------------------------------------------------------------

def item_attrs(item: Element) -> dict[str, str]:
    return {k: v for k, v in item.attrs.items() if k != "jid"}


async def test_subscribe_approve_flow_between_local_accounts(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    bob = await world.online("bob@localhost/b")
    await world.send(alice, "<presence to='bob@localhost/b' type='subscribe' id='s1'>"
                            "<status>hi</status></presence>")
    [push] = alice.pushes()
    assert item_attrs(push) == {"subscription": "none", "ask": "subscribe"}
    # Stamped with alice's bare JID, to bob's bare JID, content kept (§3.1.2, RFC 6120 §8.1.2.1).
    [request] = bob.take("presence", type="subscribe")
    # xml:lang: the stream's default, added by the server (RFC 6120 §8.1.5).
    assert request.attrs == {"to": "bob@localhost", "from": "alice@localhost",
                             "type": "subscribe", "id": "s1", "xml:lang": "en"}
    assert request.find_text("status") == "hi"
    assert bob.pushes() == []  # no item for a pending-in request (§2.1.2.5)
    await world.send(bob, "<presence to='alice@localhost' type='subscribed'/>")
    [push] = bob.pushes()
    assert item_attrs(push) == {"subscription": "from"}
    [push] = alice.pushes()
    assert item_attrs(push) == {"subscription": "to"}
    [approval] = alice.take("presence", type="subscribed")
    assert approval.attrs["from"] == "bob@localhost"
    # §3.1.5: bob's server sends alice bob's current presence after the approval.
    [pres] = alice.take("presence", **{"from": "bob@localhost/b"})
    assert "type" not in pres.attrs
    assert await world.s.storage.roster.get_pending_in("bob@localhost") == []
    # Approving again changes nothing and is not routed (A.2.3).
    await world.send(bob, "<presence to='alice@localhost' type='subscribed'/>")
    assert alice.sent == [] and bob.pushes() == []


async def test_decline_returns_the_requester_to_none(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    bob = await world.online("bob@localhost/b")
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    alice.pushes()
    await world.send(bob, "<presence to='alice@localhost' type='unsubscribed'/>")
    [push] = alice.pushes()
    assert item_attrs(push) == {"subscription": "none"}
    assert len(alice.take("presence", type="unsubscribed")) == 1
    assert await world.s.storage.roster.get_pending_in("bob@localhost") == []
    assert await world.item("bob@localhost", "alice@localhost") is None


async def test_request_to_an_offline_account_is_redelivered_until_answered(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'>"
                            "<status>It's me</status><x xmlns='urn:example'/></presence>")
    for n in range(2):
        bob = await world.online(f"bob@localhost/b{n}", presence=False)
        assert bob.take("presence", type="subscribe") == []  # not before initial presence
        await world.send(bob, "<presence/>")
        [request] = bob.take("presence", type="subscribe")
        assert request.find_text("status") == "It's me"
        assert request.find("x", "urn:example") is not None
        await world.end(bob)
    bob = await world.online("bob@localhost/b3", presence=False)
    await world.send(bob, "<presence to='alice@localhost' type='subscribed'/>")
    await world.send(bob, "<presence/>")
    assert bob.take("presence", type="subscribe") == []


async def test_repeated_request_is_not_delivered_twice(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    bob = await world.online("bob@localhost/b")
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'>"
                            "<status>again</status></presence>")
    [request] = bob.take("presence", type="subscribe")  # A.3.1: no second delivery
    assert request.find("status") is None
    [(_, stored)] = await world.s.storage.roster.get_pending_in("bob@localhost")
    assert "again" in stored  # the newest text waits for the next login


async def test_subscribe_from_a_subscribed_contact_is_answered_by_the_server(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    bob = await world.online("bob@localhost/b")
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    await world.send(bob, "<presence to='alice@localhost' type='subscribed'/>")
    alice.sent.clear()
    bob.sent.clear()
    # alice's server lost her subscription (say, a restored backup) and she asks again: bob's
    # server answers for bob (§3.1.3 rule 2) and both sides are in sync again.
    item = await world.item("alice@localhost", "bob@localhost")
    await world.s.storage.roster.put("alice@localhost", item.__class__(jid="bob@localhost"))
    world.s.module("roster").cache.drop("alice@localhost")
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    assert bob.sent == []
    assert [item_attrs(p) for p in alice.pushes()] == [
        {"subscription": "none", "ask": "subscribe"}, {"subscription": "to"}]
    assert len(alice.take("presence", type="subscribed")) == 1
    assert len(alice.take("presence", **{"from": "bob@localhost/b"})) == 1
    # In sync, asking again is answered again but changes nothing at alice's server (A.3.3).
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    assert bob.sent == [] and alice.take("iq") == []
    assert alice.take("presence", type="subscribed") == []


async def test_preapproval(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    bob = await world.online("bob@localhost/b")
    await world.send(bob, "<presence to='alice@localhost' type='subscribed'/>")
    [push] = bob.pushes()
    assert item_attrs(push) == {"subscription": "none", "approved": "true"}
    assert alice.sent == []  # §3.4: not routed
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    assert bob.take("presence", type="subscribe") == []  # approved by the server
    [push] = bob.pushes()
    assert item_attrs(push) == {"subscription": "from"}
    pushes = alice.pushes()
    assert [item_attrs(p) for p in pushes] == [{"subscription": "none", "ask": "subscribe"},
                                                {"subscription": "to"}]
    assert len(alice.take("presence", type="subscribed")) == 1
    assert len(alice.take("presence", **{"from": "bob@localhost/b"})) == 1


async def test_cancelling_a_subscription_sends_unavailable(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    bob = await world.online("bob@localhost/b")
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    await world.send(bob, "<presence to='alice@localhost' type='subscribed'/>")
    alice.sent.clear()
    bob.sent.clear()
    await world.send(bob, "<presence to='alice@localhost' type='unsubscribed'/>")
    assert [item_attrs(p) for p in bob.pushes()] == [{"subscription": "none"}]
    assert [item_attrs(p) for p in alice.pushes()] == [{"subscription": "none"}]
    assert len(alice.take("presence", type="unsubscribed")) == 1
    # §3.2.2: bob's server tells alice that bob is unavailable to her now.
    [gone] = alice.take("presence", type="unavailable")
    assert gone.attrs["from"] == "bob@localhost/b"


async def test_unsubscribe_makes_the_contact_send_unavailable(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    bob = await world.online("bob@localhost/b")
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    await world.send(bob, "<presence to='alice@localhost' type='subscribed'/>")
    alice.sent.clear()
    bob.sent.clear()
    await world.send(alice, "<presence to='bob@localhost' type='unsubscribe'/>")
    assert [item_attrs(p) for p in alice.pushes()] == [{"subscription": "none"}]
    assert [item_attrs(p) for p in bob.pushes()] == [{"subscription": "none"}]
    assert len(bob.take("presence", type="unsubscribe")) == 1
    # §3.3.3: the contact's server sends unavailable from the contact's resources.
    [gone] = alice.take("presence", type="unavailable")
    assert gone.attrs["from"] == "bob@localhost/b"


async def test_removing_an_item_ends_both_subscriptions(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    bob = await world.online("bob@localhost/b")
    for a, b, to in ((alice, bob, "bob"), (bob, alice, "alice")):
        await world.send(a, f"<presence to='{to}@localhost' type='subscribe'/>")
        await world.send(b, f"<presence to='{'alice' if to == 'bob' else 'bob'}@localhost' "
                            "type='subscribed'/>")
    assert (await world.item("alice@localhost", "bob@localhost")).subscription == "both"
    alice.sent.clear()
    bob.sent.clear()
    reply = await world.iq(alice, f"<iq type='set' id='rm'><query xmlns='{ROSTER}'>"
                                  "<item jid='bob@localhost' subscription='remove'/></query></iq>")
    assert reply.attrs["type"] == "result"
    assert [p.attrs for p in alice.pushes()] == [{"jid": "bob@localhost",
                                                  "subscription": "remove"}]
    # §2.5.2: unsubscribe and unsubscribed both; bob's item ends at none.
    assert len(bob.take("presence", type="unsubscribe")) == 1
    assert len(bob.take("presence", type="unsubscribed")) == 1
    assert len(bob.take("presence", type="unavailable")) == 1
    assert (await world.item("bob@localhost", "alice@localhost")).subscription == "none"
    assert await world.item("alice@localhost", "bob@localhost") is None


async def test_removing_declines_a_pending_request(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    bob = await world.online("bob@localhost/b")
    await world.iq(bob, f"<iq type='set' id='add'><query xmlns='{ROSTER}'>"
                        "<item jid='alice@localhost'/></query></iq>")
    await world.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    alice.sent.clear()
    await world.iq(bob, f"<iq type='set' id='rm'><query xmlns='{ROSTER}'>"
                        "<item jid='alice@localhost' subscription='remove'/></query></iq>")
    assert len(alice.take("presence", type="unsubscribed")) == 1
    assert [item_attrs(p) for p in alice.pushes()] == [{"subscription": "none"}]
    assert await world.s.storage.roster.get_pending_in("bob@localhost") == []


async def test_remote_contact_goes_through_route_remote(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    await world.send(alice, "<presence to='romeo@example.net/x' type='subscribe'/>")
    [out] = world.take_remote(type="subscribe")
    assert (out.attrs["from"], out.attrs["to"]) == ("alice@localhost", "romeo@example.net")
    alice.pushes()
    # The remote server approves (its stanzas arrive through router.route).
    await world.s.router.route(xml("<presence from='romeo@example.net/x' to='alice@localhost' "
                                   "type='subscribed'/>"))
    [push] = alice.pushes()
    assert item_attrs(push) == {"subscription": "to"}
    [got] = alice.take("presence", type="subscribed")
    assert got.attrs["from"] == "romeo@example.net"
    # A subscription request from the remote user, then alice approves: her presence goes out.
    await world.s.router.route(xml("<presence from='romeo@example.net' to='alice@localhost/a' "
                                   "type='subscribe'/>"))
    assert len(alice.take("presence", type="subscribe")) == 1
    await world.send(alice, "<presence to='romeo@example.net' type='subscribed'/>")
    assert len(world.take_remote(type="subscribed")) == 1
    [pres] = world.take_remote(**{"from": "alice@localhost/a", "to": "romeo@example.net"})
    assert "type" not in pres.attrs
    assert (await world.item("alice@localhost", "romeo@example.net")).subscription == "both"


async def test_unsolicited_subscribed_is_ignored(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    await world.s.router.route(xml("<presence from='mallory@example.net' to='alice@localhost' "
                                   "type='subscribed'/>"))
    assert alice.sent == []
    assert await world.item("alice@localhost", "mallory@example.net") is None


async def test_subscription_to_oneself_or_to_no_one_is_ignored(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    await world.send(alice, "<presence to='alice@localhost' type='subscribe'/>")
    await world.send(alice, "<presence type='subscribe'/>")
    assert alice.sent == [] and world.remote == []
    assert await world.s.storage.roster.count("alice@localhost") == 0


async def test_a_gateway_domain_is_a_contact_like_any_other(world: World) -> None:
    alice = await world.online("alice@localhost/a")
    await world.send(alice, "<presence to='icq.example.net' type='subscribe'/>")
    [out] = world.take_remote(type="subscribe")
    assert (out.attrs["from"], out.attrs["to"]) == ("alice@localhost", "icq.example.net")
    [push] = alice.pushes()
    assert push.attrs["jid"] == "icq.example.net" and push.attrs["ask"] == "subscribe"
