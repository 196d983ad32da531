"""XEP-0191 Blocking Command against the real server, following the XEP's examples."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from integration.harness import Client, ServerProcess, ns

BLOCKING = "urn:xmpp:blocking"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def items(el: ET.Element, name: str) -> list[str] | None:
    payload = el.find(ns(name, BLOCKING))
    if payload is None:
        return None
    return [i.get("jid", "") for i in payload.findall(ns("item", BLOCKING))]


def error_condition(el: ET.Element) -> str | None:
    err = el.find(ns("error"))
    if err is None:
        return None
    return next((c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{STANZAS}}}")
                 and not c.tag.endswith("}text")), None)


def is_push(name: str) -> Any:
    return lambda e: (e.tag == ns("iq") and e.get("type") == "set"
                      and e.find(ns(name, BLOCKING)) is not None)


async def get_blocklist(client: Client, iq_id: str = "bl") -> list[str]:
    reply = await client.query(f"<iq type='get' id='{iq_id}'>"
                               "<blocklist xmlns='urn:xmpp:blocking'/></iq>")
    assert reply.get("type") == "result", ET.tostring(reply, encoding="unicode")
    got = items(reply, "blocklist")
    assert got is not None
    return got


async def block(client: Client, *jids: str, iq_id: str = "block1") -> ET.Element:
    body = "".join(f"<item jid='{j}'/>" for j in jids)
    return await client.query(f"<iq type='set' id='{iq_id}'>"
                              f"<block xmlns='urn:xmpp:blocking'>{body}</block></iq>")


async def unblock(client: Client, *jids: str, iq_id: str = "unblock1") -> ET.Element:
    body = "".join(f"<item jid='{j}'/>" for j in jids)
    return await client.query(f"<iq type='set' id='{iq_id}'>"
                              f"<unblock xmlns='urn:xmpp:blocking'>{body}</unblock></iq>")


async def sync(client: Client) -> None:
    """Once the server answers a ping, it has processed everything the client sent before."""
    await client.query("<iq type='get' id='sync' to='localhost'>"
                       "<ping xmlns='urn:xmpp:ping'/></iq>")


async def test_disco_feature(server: ServerProcess, connect: Any) -> None:
    [juliet] = server.new_users(1)
    j = await connect(juliet)
    reply = await j.query("<iq type='get' id='disco1' to='localhost'>"
                          "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    info = "http://jabber.org/protocol/disco#info"
    assert BLOCKING in {f.get("var") for f in reply.iter(ns("feature", info))}


async def test_blocklist_block_unblock_and_pushes(server: ServerProcess, connect: Any) -> None:
    juliet, romeo, iago = server.new_users(3)
    chamber = await connect(juliet, resource="chamber")
    balcony = await connect(juliet, resource="balcony")
    garden = await connect(juliet, resource="garden")     # never retrieves the list
    assert await get_blocklist(chamber) == []
    assert await get_blocklist(balcony) == []
    reply = await block(chamber, romeo, iago)
    assert reply.get("type") == "result"
    for client in (chamber, balcony):
        push = await client.expect(where=is_push("block"))
        assert push.get("to") == str(client.boundjid)
        assert items(push, "block") == [romeo, iago]
    await garden.expect_nothing(where=is_push("block"))
    assert await get_blocklist(balcony, "bl2") == [romeo, iago]

    await unblock(balcony, romeo)
    for client in (chamber, balcony):
        push = await client.expect(where=is_push("unblock"))
        assert items(push, "unblock") == [romeo]
    assert await get_blocklist(chamber, "bl3") == [iago]

    await unblock(chamber, iq_id="unblock2")               # unblock all
    for client in (chamber, balcony):
        push = await client.expect(where=is_push("unblock"))
        assert items(push, "unblock") == []
    assert await get_blocklist(chamber, "bl4") == []


async def test_block_without_items_is_bad_request(server: ServerProcess, connect: Any) -> None:
    [juliet] = server.new_users(1)
    j = await connect(juliet)
    reply = await block(j)
    assert reply.get("type") == "error" and error_condition(reply) == "bad-request"
    reply = await block(j, "not a@valid@jid", iq_id="block2")
    assert reply.get("type") == "error" and error_condition(reply) == "jid-malformed"


async def test_blocked_entity_cannot_reach_the_user(server: ServerProcess, connect: Any) -> None:
    juliet, romeo = server.new_users(2)
    j = await connect(juliet, resource="balcony")
    r = await connect(romeo, resource="orchard")
    await j.send_xml("<presence/>")
    await block(j, romeo)
    await r.send_xml(f"<message to='{juliet}' id='m1'><body>Wherefore art thou?</body>"
                     "</message>")
    err = await r.expect("<message type='error' id='m1'/>")
    assert error_condition(err) == "service-unavailable"
    reply = await r.query(f"<iq type='get' id='v1' to='{j.boundjid}'>"
                          "<query xmlns='jabber:iq:version'/></iq>")
    assert reply.get("type") == "error" and error_condition(reply) == "service-unavailable"
    await r.send_xml(f"<presence to='{j.boundjid}'/>")       # directed presence: dropped
    await sync(r)
    await r.expect_nothing("<presence type='error'/>")
    await j.expect_nothing(where=lambda e: e.get("from", "").startswith(romeo))


async def test_user_cannot_send_to_blocked_entity(server: ServerProcess, connect: Any) -> None:
    juliet, romeo = server.new_users(2)
    j = await connect(juliet)
    r = await connect(romeo)
    await block(j, romeo)
    await j.send_xml(f"<message to='{romeo}' id='hear'><body>Can you hear me now?</body>"
                     "</message>")
    err = await j.expect(f"<message type='error' id='hear' from='{romeo}'>"
                         "<error type='cancel'>"
                         "<not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                         "<blocked xmlns='urn:xmpp:blocking:errors'/></error></message>")
    assert err.findtext(ns("body")) == "Can you hear me now?"
    await r.expect_nothing(where=lambda e: e.tag == ns("message"))


async def befriend(a: Client, b: Client) -> None:
    """Mutual presence subscription (RFC 6121 §3.1) between two available clients."""
    a_bare, b_bare = str(a.boundjid.bare), str(b.boundjid.bare)
    await a.send_xml(f"<presence to='{b_bare}' type='subscribe'/>")
    await b.expect(f"<presence from='{a_bare}' type='subscribe'/>")
    await b.send_xml(f"<presence to='{a_bare}' type='subscribed'/>")
    await b.send_xml(f"<presence to='{a_bare}' type='subscribe'/>")
    await a.expect(f"<presence from='{b_bare}' type='subscribe'/>")
    await a.send_xml(f"<presence to='{b_bare}' type='subscribed'/>")
    await a.expect(f"<presence from='{b.boundjid}'/>")        # b's presence, now visible
    await b.expect(f"<presence from='{a.boundjid}'/>")
    await sync(a)
    await sync(b)
    a.drain()
    b.drain()


async def test_presence_on_block_and_unblock(server: ServerProcess, connect: Any) -> None:
    juliet, romeo = server.new_users(2)
    j = await connect(juliet, resource="balcony")
    r = await connect(romeo, resource="orchard")
    await j.send_xml("<presence><show>chat</show></presence>")
    await r.send_xml("<presence/>")
    await befriend(j, r)

    await block(j, romeo)
    # §3.3: the blocked contact sees her go offline…
    await r.expect(f"<presence type='unavailable' from='{j.boundjid}'/>")
    # …and gets no more of her presence, nor she of his.
    await j.send_xml("<presence><show>away</show></presence>")
    await r.send_xml("<presence><show>xa</show></presence>")
    await sync(j)
    await sync(r)
    await r.expect_nothing(f"<presence from='{j.boundjid}'/>")
    await j.expect_nothing(f"<presence from='{r.boundjid}'/>")

    await unblock(j, romeo)
    # §3.4: current presence goes to the unblocked contact.
    back = await r.expect(f"<presence from='{j.boundjid}'/>",
                          where=lambda e: e.get("type") is None)
    assert back.findtext(ns("show")) == "away"
    await j.send_xml("<presence><show>dnd</show></presence>")
    await r.expect(f"<presence from='{j.boundjid}'><show>dnd</show></presence>")


async def test_block_persists_across_sessions_and_offline(
        server: ServerProcess, connect: Any) -> None:
    juliet, romeo, nurse = server.new_users(3)
    j = await connect(juliet)
    await block(j, romeo)
    await j.close()
    r = await connect(romeo)
    n = await connect(nurse)
    # She is offline: the blocked message is refused, not stored; others are stored.
    await r.send_xml(f"<message to='{juliet}' id='m1'><body>from romeo</body></message>")
    err = await r.expect("<message type='error' id='m1'/>")
    assert error_condition(err) == "service-unavailable"
    await n.send_xml(f"<message to='{juliet}' id='m2'><body>from the nurse</body></message>")
    await sync(n)
    again = await connect(juliet, resource="again")
    assert await get_blocklist(again) == [romeo]
    await again.send_xml("<presence/>")
    got = await again.expect(where=lambda e: e.tag == ns("message"))
    assert got.findtext(ns("body")) == "from the nurse"
    await again.expect_nothing(where=lambda e: e.tag == ns("message"))
