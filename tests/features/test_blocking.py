"""XEP-0191 Blocking Command in memory: real router, hooks, IQ dispatch and SQLite storage;
fake sessions record what is written to them. Scenarios follow the XEP's examples (juliet
blocks romeo)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from blether.features.blocking import blocks
from blether.jid import JID
from blether.storage import RosterItem
from blether.xml.element import Element
from features.services_kit import FakeSession, Kit, condition

C = "jabber:client"
BLOCKING = "urn:xmpp:blocking"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
JULIET, ROMEO, IAGO = "juliet@capulet.lit", "romeo@montague.lit", "iago@shakespeare.lit"


class World(Kit):
    async def bind(self, jid: str, *, available: bool = True) -> FakeSession:
        session = await self.login(jid)
        if available:  # what the presence feature records after initial presence
            session.available = True
            session.presence = Element("presence", C, {"from": jid},
                                       [Element("show", C, None, ["chat"])])
        return session

    async def iq(self, session: FakeSession, xml: str) -> Element:
        return await self.query(session, xml)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    kit = await World.create(["blocking", "ping"], hosts=("capulet.lit", "montague.lit",
                                                  "shakespeare.lit"))
    yield kit
    await kit.close()


# -- JID matching (§5, the XEP-0016 order) ----------------------------------------------------

@pytest.mark.parametrize(("item", "jid", "hit"), [
    ("romeo@montague.lit/orchard", "romeo@montague.lit/orchard", True),
    ("romeo@montague.lit/orchard", "romeo@montague.lit/garden", False),
    ("romeo@montague.lit/orchard", "romeo@montague.lit", False),
    ("romeo@montague.lit", "romeo@montague.lit", True),
    ("romeo@montague.lit", "romeo@montague.lit/orchard", True),
    ("romeo@montague.lit", "benvolio@montague.lit", False),
    ("montague.lit/gate", "montague.lit/gate", True),
    # ejabberd's reading of "only that resource matches": any JID at that domain with it
    ("montague.lit/gate", "romeo@montague.lit/gate", True),
    ("montague.lit/gate", "romeo@montague.lit/orchard", False),
    ("montague.lit/gate", "montague.lit", False),
    ("montague.lit", "montague.lit", True),
    ("montague.lit", "romeo@montague.lit", True),
    ("montague.lit", "romeo@montague.lit/orchard", True),
    ("montague.lit", "montague.lit/gate", True),
    ("montague.lit", "capulet.lit", False),
    ("montague.lit", "montague.lit.example", False),
])
def test_matching(item: str, jid: str, hit: bool) -> None:
    assert blocks({item: None}, JID.parse(jid)) is hit


# -- the protocol (§3.1-§3.5) -----------------------------------------------------------------

async def test_disco_features(world: World) -> None:
    assert BLOCKING in world.s.disco.host_features
    assert BLOCKING in world.s.disco.account_features


async def test_empty_blocklist(world: World) -> None:
    chamber = await world.bind(f"{JULIET}/chamber")
    reply = await world.iq(chamber, "<iq type='get' id='blocklist1'>"
                                    "<blocklist xmlns='urn:xmpp:blocking'/></iq>")
    assert reply.attrs["type"] == "result"
    blocklist = reply.find("blocklist", BLOCKING)
    assert blocklist is not None and blocklist.elements() == []


async def test_block_pushes_to_interested_resources_and_persists(world: World) -> None:
    chamber = await world.bind(f"{JULIET}/chamber")
    balcony = await world.bind(f"{JULIET}/balcony")
    garden = await world.bind(f"{JULIET}/garden")      # never asked for the blocklist
    for s in (chamber, balcony):
        await world.iq(s, "<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
    reply = await world.iq(chamber, "<iq type='set' id='block1'>"
                                    "<block xmlns='urn:xmpp:blocking'>"
                                    "<item jid='Romeo@Montague.lit'/>"
                                    "<item jid='iago@shakespeare.lit'/></block></iq>")
    assert reply.attrs["type"] == "result" and reply.elements() == []
    for s in (chamber, balcony):
        [push] = s.take()
        assert push.attrs["type"] == "set" and push.attrs["to"] == str(s.jid)
        block = push.find("block", BLOCKING)
        assert block is not None
        assert [i.attrs["jid"] for i in block.elements()] == [ROMEO, IAGO]  # prepared
    assert garden.take() == []
    assert await world.s.storage.blocklist.get(JULIET) == [ROMEO, IAGO]
    reply = await world.iq(balcony, "<iq type='get' id='bl2'>"
                                    "<blocklist xmlns='urn:xmpp:blocking'/></iq>")
    blocklist = reply.find("blocklist", BLOCKING)
    assert blocklist is not None
    assert [i.attrs["jid"] for i in blocklist.elements()] == [ROMEO, IAGO]


@pytest.mark.parametrize(("payload", "cond"), [
    ("<block xmlns='urn:xmpp:blocking'/>", "bad-request"),
    ("<block xmlns='urn:xmpp:blocking'><item/></block>", "bad-request"),
    ("<block xmlns='urn:xmpp:blocking'><item jid='@@bad@@'/></block>", "jid-malformed"),
    ("<unblock xmlns='urn:xmpp:blocking'><item jid='a@b/'/></unblock>", "jid-malformed"),
    ("<blocklist xmlns='urn:xmpp:blocking'/>", "bad-request"),
])
async def test_bad_requests(world: World, payload: str, cond: str) -> None:
    chamber = await world.bind(f"{JULIET}/chamber")
    reply = await world.iq(chamber, f"<iq type='set' id='b'>{payload}</iq>")
    assert reply.attrs["type"] == "error" and condition(reply) == cond
    assert await world.s.storage.blocklist.get(JULIET) == []


async def test_someone_elses_blocklist_is_not_answered(world: World) -> None:
    await world.s.storage.blocklist.add(JULIET, [IAGO])
    romeo = await world.bind(f"{ROMEO}/orchard")
    await world.send(romeo, f"<iq type='get' id='peek' to='{JULIET}'>"
                            "<blocklist xmlns='urn:xmpp:blocking'/></iq>")
    [reply] = romeo.take()
    assert reply.attrs["type"] == "error" and condition(reply) == "service-unavailable"
    assert reply.find("blocklist", BLOCKING) is not None   # original payload, no items
    assert IAGO not in repr(reply)


async def test_unblock_one_and_unblock_all(world: World) -> None:
    chamber = await world.bind(f"{JULIET}/chamber")
    await world.iq(chamber, "<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
    await world.iq(chamber, f"<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>"
                            f"<item jid='{ROMEO}'/><item jid='{IAGO}'/></block></iq>")
    chamber.take()
    await world.iq(chamber, f"<iq type='set' id='unblock1'><unblock xmlns='urn:xmpp:blocking'>"
                            f"<item jid='{ROMEO}'/></unblock></iq>")
    [push] = chamber.take()
    unblock = push.find("unblock", BLOCKING)
    assert unblock is not None and [i.attrs["jid"] for i in unblock.elements()] == [ROMEO]
    assert await world.s.storage.blocklist.get(JULIET) == [IAGO]
    reply = await world.iq(chamber, "<iq type='set' id='unblock2'>"
                                    "<unblock xmlns='urn:xmpp:blocking'/></iq>")
    assert reply.attrs["type"] == "result"
    [push] = chamber.take()
    unblock = push.find("unblock", BLOCKING)
    assert unblock is not None and unblock.elements() == []   # "unblock all" push
    assert await world.s.storage.blocklist.get(JULIET) == []


# -- enforcement (§3.3) -----------------------------------------------------------------------

async def _juliet_blocks_romeo(world: World) -> tuple[FakeSession, FakeSession]:
    juliet = await world.bind(f"{JULIET}/balcony")
    romeo = await world.bind(f"{ROMEO}/orchard")
    await world.iq(juliet, f"<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>"
                           f"<item jid='{ROMEO}'/></block></iq>")
    juliet.take()
    romeo.take()
    return juliet, romeo


async def test_inbound_message_and_iq_get_refused(world: World) -> None:
    juliet, romeo = await _juliet_blocks_romeo(world)
    await world.send(romeo, f"<message to='{JULIET}' id='m'><body>Wherefore?</body></message>")
    await world.send(romeo, f"<iq type='get' id='v' to='{JULIET}/balcony'>"
                            "<query xmlns='jabber:iq:version'/></iq>")
    assert juliet.take() == []
    replies = {r.attrs["id"]: r for r in romeo.take()}
    assert set(replies) == {"m", "v"}
    assert all(condition(r) == "service-unavailable" for r in replies.values())


async def test_inbound_presence_results_and_errors_dropped_silently(world: World) -> None:
    juliet, romeo = await _juliet_blocks_romeo(world)
    for xml in (f"<presence to='{JULIET}'/>",
                f"<presence to='{JULIET}' type='subscribe'/>",
                f"<presence to='{JULIET}' type='probe'/>",
                f"<iq type='result' id='r' to='{JULIET}/balcony'/>",
                f"<message type='error' to='{JULIET}' id='e'/>"):
        await world.send(romeo, xml)
    assert juliet.take() == []
    assert romeo.take() == []


async def test_domain_block_covers_its_users(world: World) -> None:
    juliet = await world.bind(f"{JULIET}/balcony")
    iago = await world.bind(f"{IAGO}/tower")
    await world.iq(juliet, "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>"
                           "<item jid='shakespeare.lit'/></block></iq>")
    await world.send(iago, f"<message to='{JULIET}/balcony' id='m'><body>x</body></message>")
    assert juliet.take() == []
    [err] = iago.take()
    assert condition(err) == "service-unavailable"


async def test_outbound_from_client_refused_with_blocked(world: World) -> None:
    juliet, romeo = await _juliet_blocks_romeo(world)
    await world.send(juliet, f"<message to='{ROMEO}' id='hear'><body>Can you hear me now?</body>"
                             "</message>")
    assert romeo.take() == []
    [err] = juliet.take()
    assert err.attrs["type"] == "error" and err.attrs["from"] == ROMEO
    assert err.attrs["to"] == f"{JULIET}/balcony"
    assert err.find_text("body", C) == "Can you hear me now?"
    error = err.find("error", C)
    assert error is not None and error.attrs["type"] == "cancel"
    assert error.find("not-acceptable", STANZAS) is not None
    assert error.find("blocked", "urn:xmpp:blocking:errors") is not None


async def test_outbound_generated_by_server_dropped_silently(world: World) -> None:
    juliet, romeo = await _juliet_blocks_romeo(world)
    broadcast = Element("presence", C, {"from": str(juliet.jid), "to": ROMEO})
    await world.s.router.route_from_account(broadcast, JID.parse(ROMEO), juliet.jid)
    assert romeo.take() == [] and juliet.take() == []


async def test_own_resources_never_blocked(world: World) -> None:
    balcony = await world.bind(f"{JULIET}/balcony")
    chamber = await world.bind(f"{JULIET}/chamber")
    await world.iq(balcony, "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>"
                            f"<item jid='capulet.lit'/><item jid='{JULIET}'/></block></iq>")
    await world.send(balcony, f"<message to='{JULIET}/chamber' id='m'><body>me</body></message>")
    assert [m.attrs["id"] for m in chamber.take()] == ["m"]
    # …and the server itself still answers (XEP-0199 ping to the domain).
    reply = await world.iq(balcony, "<iq type='get' id='p' to='capulet.lit'>"
                                    "<ping xmlns='urn:xmpp:ping'/></iq>")
    assert reply.attrs["type"] == "result"
    # …while the domain's other users are blocked.
    reply = await world.iq(balcony, "<iq type='get' id='p2' to='nurse@capulet.lit'>"
                                    "<ping xmlns='urn:xmpp:ping'/></iq>")
    assert condition(reply) == "not-acceptable"


async def test_unblock_lets_stanzas_through_again(world: World) -> None:
    juliet, romeo = await _juliet_blocks_romeo(world)
    await world.iq(juliet, "<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'/></iq>")
    await world.send(romeo, f"<message to='{JULIET}/balcony' id='m'><body>x</body></message>")
    assert [m.attrs["id"] for m in juliet.take() if m.name == "message"] == ["m"]


async def test_block_applies_to_offline_user_and_across_sessions(world: World) -> None:
    juliet, romeo = await _juliet_blocks_romeo(world)
    await world.end(juliet, "closed")
    assert JID.parse(JULIET) not in world.module("blocking")._cache  # only for online users
    # the server answers pings for the account (XEP-0199) — but not to a blocked entity
    reply = await world.iq(romeo, f"<iq type='get' id='p' to='{JULIET}'>"
                                  "<ping xmlns='urn:xmpp:ping'/></iq>")
    assert condition(reply) == "service-unavailable"
    iago = await world.bind(f"{IAGO}/tower")
    reply = await world.iq(iago, f"<iq type='get' id='p' to='{JULIET}'>"
                                 "<ping xmlns='urn:xmpp:ping'/></iq>")
    assert reply.attrs["type"] == "result"
    again = await world.bind(f"{JULIET}/balcony")
    await world.send(again, f"<message to='{ROMEO}' id='m'><body>x</body></message>")
    [err] = again.take()
    assert condition(err) == "not-acceptable"


# -- presence on block / unblock (§3.3, §3.4) -------------------------------------------------

async def test_block_sends_unavailable_unblock_sends_presence(world: World) -> None:
    # romeo is subscribed to juliet's presence (her roster: subscription 'from')
    await world.s.storage.roster.put(JULIET, RosterItem(ROMEO, subscription="from"))
    await world.s.storage.roster.put(JULIET, RosterItem(IAGO, subscription="to"))
    balcony = await world.bind(f"{JULIET}/balcony")
    chamber = await world.bind(f"{JULIET}/chamber")
    offline = await world.bind(f"{JULIET}/dark", available=False)
    romeo = await world.bind(f"{ROMEO}/orchard")
    iago = await world.bind(f"{IAGO}/tower")
    await world.iq(balcony, "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>"
                            f"<item jid='{ROMEO}'/><item jid='{IAGO}'/></block></iq>")
    got = romeo.take()
    assert all(p.name == "presence" and p.attrs["type"] == "unavailable" for p in got)
    assert sorted(p.attrs["from"] for p in got) == [str(balcony.jid), str(chamber.jid)]
    assert str(offline.jid) not in {p.attrs["from"] for p in got}
    assert iago.take() == []            # not allowed to see her presence: nothing sent

    await world.iq(balcony, "<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'>"
                            f"<item jid='{ROMEO}'/><item jid='{IAGO}'/></unblock></iq>")
    got = romeo.take()
    assert sorted(p.attrs["from"] for p in got) == [str(balcony.jid), str(chamber.jid)]
    assert all(p.name == "presence" and "type" not in p.attrs
               and p.find_text("show", C) == "chat" for p in got)
    assert iago.take() == []


async def test_block_sends_unavailable_to_directed_presence_recipient(world: World) -> None:
    balcony = await world.bind(f"{JULIET}/balcony")
    iago = await world.bind(f"{IAGO}/tower")
    balcony.directed.add(iago.jid)
    await world.iq(balcony, "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>"
                            "<item jid='shakespeare.lit'/></block></iq>")
    [p] = iago.take()
    assert p.attrs == {"type": "unavailable", "from": str(balcony.jid), "to": str(iago.jid)}


async def test_still_blocked_by_another_item_gets_no_presence(world: World) -> None:
    await world.s.storage.roster.put(JULIET, RosterItem(ROMEO, subscription="both"))
    balcony = await world.bind(f"{JULIET}/balcony")
    romeo = await world.bind(f"{ROMEO}/orchard")
    await world.iq(balcony, "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>"
                            f"<item jid='{ROMEO}'/><item jid='montague.lit'/></block></iq>")
    romeo.take()
    await world.iq(balcony, "<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'>"
                            f"<item jid='{ROMEO}'/></unblock></iq>")
    assert romeo.take() == []


def _refused_with_blocked(stanza: Element) -> bool:
    error = stanza.find("error", C)
    return (stanza.attrs.get("type") == "error" and error is not None
            and error.find("not-acceptable", STANZAS) is not None
            and error.find("blocked", "urn:xmpp:blocking:errors") is not None)


async def test_outbound_presence_refused_before_the_features_act_on_it(world: World) -> None:
    juliet, romeo = await _juliet_blocks_romeo(world)
    await world.send(juliet, f"<presence to='{ROMEO}/orchard' id='d'/>")
    await world.send(juliet, f"<presence to='{ROMEO}' type='subscribe' id='s'/>")
    assert romeo.take() == []
    replies = juliet.take()
    assert [r.attrs["id"] for r in replies] == ["d", "s"]
    assert all(_refused_with_blocked(r) for r in replies)
    # neither directed presence nor a pending subscription was recorded
    assert not juliet.directed
    assert await world.s.storage.roster.get(JULIET, ROMEO) is None


async def test_outbound_iq_from_client_refused_with_blocked(world: World) -> None:
    juliet, romeo = await _juliet_blocks_romeo(world)
    await world.send(juliet, f"<iq type='get' id='v' to='{ROMEO}/orchard'>"
                             "<query xmlns='jabber:iq:version'/></iq>")
    await world.send(juliet, f"<iq type='result' id='r' to='{ROMEO}/orchard'/>")
    assert romeo.take() == []
    [err] = juliet.take()   # the result is dropped: nothing answers an IQ result
    assert err.attrs["id"] == "v" and _refused_with_blocked(err)


async def test_an_empty_blocklist_lets_everything_through(world: World) -> None:
    juliet = await world.bind(f"{JULIET}/balcony")
    romeo = await world.bind(f"{ROMEO}/orchard")
    assert world.module("blocking")._cache[JID.parse(JULIET)] == {}
    await world.send(juliet, f"<message to='{ROMEO}/orchard' id='m'><body>hi</body></message>")
    await world.send(romeo, f"<message to='{JULIET}' id='n'><body>hi</body></message>")
    assert [m.attrs["id"] for m in romeo.take()] == ["m"]
    assert [m.attrs["id"] for m in juliet.take()] == ["n"]
