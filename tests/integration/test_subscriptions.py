"""RFC 6121 §3 presence subscriptions between real clients over TCP (issue 3 flows).

Each scenario follows the RFC's examples: the roster push after every state change on each
side (§3.1.2, §3.1.5, §3.1.6, §3.2, §3.3), the stanzas each party receives, the
subscription request kept for an offline contact (§3.1.3), pre-approval (§3.4).
"""

from __future__ import annotations

from typing import Any

from integration.harness import (
    ServerProcess,
    bare,
    expect_push,
    full,
    get_roster,
    go_online,
    is_roster_push,
    subscribe_to,
)


async def pair(server: ServerProcess, connect: Any) -> tuple[Any, Any]:
    a_jid, b_jid = server.new_users(2, prefix="sub")
    a, b = await connect(a_jid), await connect(b_jid)
    await go_online(a)
    await go_online(b)
    return a, b


async def test_a_add_subscribe_and_b_declines(server: ServerProcess, connect: Any) -> None:
    """(a) A adds B, subscribes, B declines with 'unsubscribed': A is back at 'none'."""
    a, b = await pair(server, connect)
    reply = await a.query(f"<iq type='set' id='add'><query xmlns='jabber:iq:roster'>"
                          f"<item jid='{bare(b)}' name='Bob'><group>Friends</group></item>"
                          "</query></iq>")
    assert reply.attrib["type"] == "result"
    item = await expect_push(a, bare(b), subscription="none", ask=None, name="Bob")
    assert [g.text for g in item] == ["Friends"]
    await a.send_xml(f"<presence to='{bare(b)}' type='subscribe'/>")
    await expect_push(a, bare(b), subscription="none", ask="subscribe", name="Bob")
    await b.expect(f"<presence from='{bare(a)}' to='{bare(b)}' type='subscribe'/>")
    await b.send_xml(f"<presence to='{bare(a)}' type='unsubscribed'/>")
    await a.expect(f"<presence from='{bare(b)}' type='unsubscribed'/>")
    await expect_push(a, bare(b), subscription="none", ask=None, name="Bob")
    # B never had an item for A: nothing to push (pending-in is not a roster item).
    await b.expect_nothing(where=is_roster_push())
    roster = await get_roster(b, "check")
    assert len(roster[0]) == 0


async def test_b_approves_then_subscribes_back_to_both(server: ServerProcess,
                                                       connect: Any) -> None:
    """(b) B approves (A 'to', B 'from'), B subscribes back, A approves: 'both' on each side."""
    a, b = await pair(server, connect)
    await a.send_xml(f"<presence to='{bare(b)}' type='subscribe'/>")
    await expect_push(a, bare(b), subscription="none", ask="subscribe")
    await b.expect(f"<presence from='{bare(a)}' type='subscribe'/>")

    await b.send_xml(f"<presence to='{bare(a)}' type='subscribed'/>")
    await expect_push(b, bare(a), subscription="from", ask=None)
    await expect_push(a, bare(b), subscription="to", ask=None)
    await a.expect(f"<presence from='{bare(b)}' type='subscribed'/>")
    # §3.1.5: B's server sends B's current presence to A right after the approval.
    await a.expect(f"<presence from='{full(b)}'/>",
                   where=lambda el: "type" not in el.attrib)

    await b.send_xml(f"<presence to='{bare(a)}' type='subscribe'/>")
    await expect_push(b, bare(a), subscription="from", ask="subscribe")
    await a.expect(f"<presence from='{bare(b)}' type='subscribe'/>")

    await a.send_xml(f"<presence to='{bare(b)}' type='subscribed'/>")
    await expect_push(a, bare(b), subscription="both", ask=None)
    await expect_push(b, bare(a), subscription="both", ask=None)
    await b.expect(f"<presence from='{bare(a)}' type='subscribed'/>")
    await b.expect(f"<presence from='{full(a)}'/>", where=lambda el: "type" not in el.attrib)

    for client, other in ((a, b), (b, a)):
        [item] = [i for i in (await get_roster(client, "final"))[0]
                  if i.attrib["jid"] == bare(other)]
        assert item.attrib.get("subscription") == "both" and "ask" not in item.attrib


async def test_unsubscribe_after_both(server: ServerProcess, connect: Any) -> None:
    """(c) A unsubscribes from B: A 'from', B 'to'; B's server tells A that B is unavailable
    (§3.3.3), while B keeps seeing A."""
    a, b = await pair(server, connect)
    await subscribe_to(a, b)
    await subscribe_to(b, a)
    await expect_push(a, bare(b), subscription="both")
    await expect_push(b, bare(a), subscription="both")

    await a.send_xml(f"<presence to='{bare(b)}' type='unsubscribe'/>")
    await expect_push(a, bare(b), subscription="from", ask=None)
    await expect_push(b, bare(a), subscription="to", ask=None)
    await b.expect(f"<presence from='{bare(a)}' type='unsubscribe'/>")
    await a.expect(f"<presence from='{full(b)}' type='unavailable'/>")
    await b.expect_nothing(f"<presence from='{full(a)}' type='unavailable'/>")
    # B still receives A's presence, A no longer receives B's.
    await a.send_xml("<presence><show>away</show></presence>")
    await b.expect(f"<presence from='{full(a)}'><show>away</show></presence>")
    await b.send_xml("<presence><show>dnd</show></presence>")
    await a.expect_nothing(f"<presence from='{full(b)}'><show>dnd</show></presence>")


async def test_request_for_offline_contact_waits_with_its_reason(server: ServerProcess,
                                                                 connect: Any) -> None:
    """(d) A's request, with a reason, reaches B when B logs in and sends initial presence —
    and again at the next login while B has not answered it (§3.1.3)."""
    a_jid, b_jid = server.new_users(2, prefix="off")
    a = await connect(a_jid)
    await go_online(a)
    await a.send_xml(f"<presence to='{b_jid}' type='subscribe'>"
                     "<status>I'd like to keep my eye on you!</status></presence>")
    await expect_push(a, b_jid, subscription="none", ask="subscribe")

    for login in range(2):
        b = await connect(b_jid, resource=f"r{login}")
        await get_roster(b, f"r{login}")
        await b.expect_nothing("<presence type='subscribe'/>")  # not before initial presence
        await b.send_xml("<presence/>")
        await b.expect(f"<presence from='{a_jid}' type='subscribe'>"
                       "<status>I'd like to keep my eye on you!</status></presence>")
        await b.close()

    b = await connect(b_jid, resource="answer")
    await go_online(b)
    await b.expect(f"<presence from='{a_jid}' type='subscribe'/>")
    await b.send_xml(f"<presence to='{a_jid}' type='subscribed'/>")
    await expect_push(a, b_jid, subscription="to", ask=None)
    await b.close()
    b = await connect(b_jid, resource="after")
    await go_online(b)
    await b.expect_nothing("<presence type='subscribe'/>")  # answered: not delivered again


async def test_preapproval(server: ServerProcess, connect: Any) -> None:
    """§3.4: B pre-approves A; A's later request is approved by B's server at once."""
    a, b = await pair(server, connect)
    assert "preapproval" in b.features  # <sub xmlns='urn:xmpp:features:pre-approval'/>
    await b.send_xml(f"<presence to='{bare(a)}' type='subscribed'/>")
    await expect_push(b, bare(a), subscription="none", approved="true")
    await a.expect_nothing(f"<presence from='{bare(b)}'/>")  # not routed

    await a.send_xml(f"<presence to='{bare(b)}' type='subscribe'/>")
    await expect_push(a, bare(b), subscription="to", ask=None)
    await a.expect(f"<presence from='{bare(b)}' type='subscribed'/>")
    await expect_push(b, bare(a), subscription="from", approved=None)
    await b.expect_nothing(f"<presence from='{bare(a)}' type='subscribe'/>")


async def test_cancel_subscription_sends_unavailable(server: ServerProcess,
                                                     connect: Any) -> None:
    """§3.2: B cancels A's subscription; A gets 'unsubscribed' and B's unavailable."""
    a, b = await pair(server, connect)
    await subscribe_to(a, b)
    await b.send_xml(f"<presence to='{bare(a)}' type='unsubscribed'/>")
    await expect_push(b, bare(a), subscription="none")
    await expect_push(a, bare(b), subscription="none")
    await a.expect(f"<presence from='{bare(b)}' type='unsubscribed'/>")
    await a.expect(f"<presence from='{full(b)}' type='unavailable'/>")


async def test_remove_item_unsubscribes_both_ways(server: ServerProcess, connect: Any) -> None:
    """§2.5.2: removing a 'both' contact sends unsubscribe and unsubscribed."""
    a, b = await pair(server, connect)
    await subscribe_to(a, b)
    await subscribe_to(b, a)
    await expect_push(b, bare(a), subscription="both")
    reply = await a.query(f"<iq type='set' id='rm'><query xmlns='jabber:iq:roster'>"
                          f"<item jid='{bare(b)}' subscription='remove'/></query></iq>")
    assert reply.attrib["type"] == "result"
    await expect_push(a, bare(b), subscription="remove")
    await b.expect(f"<presence from='{bare(a)}' type='unsubscribe'/>")
    await b.expect(f"<presence from='{bare(a)}' type='unsubscribed'/>")
    await expect_push(b, bare(a), subscription="none")
