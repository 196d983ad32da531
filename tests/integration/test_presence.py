"""RFC 6121 §4 presence with real clients over TCP: broadcast, probes, directed presence,
several resources, and the unavailable presence the server sends when a stream ends."""

from __future__ import annotations

from typing import Any

from integration.harness import ServerProcess, bare, full, go_online, subscribe_to


async def friends(server: ServerProcess, connect: Any, prefix: str = "pre"
                  ) -> tuple[Any, Any, str, str]:
    """Two available clients with a mutual ('both') subscription."""
    a_jid, b_jid = server.new_users(2, prefix=prefix)
    a, b = await connect(a_jid), await connect(b_jid)
    await go_online(a)
    await go_online(b)
    await subscribe_to(a, b)
    await subscribe_to(b, a)
    return a, b, a_jid, b_jid


async def test_initial_presence_is_broadcast_and_probes_are_answered(
        server: ServerProcess, connect: Any) -> None:
    a, b, a_jid, _b_jid = await friends(server, connect)
    await a.close()
    await b.expect(f"<presence from='{full(a)}' type='unavailable'/>")
    # B was online before A logs in: A learns B's presence from the probe answer (§4.3),
    # B gets A's initial presence from the broadcast (§4.2).
    a = await connect(a_jid, resource="back")
    await go_online(a)
    await a.expect(f"<presence from='{full(b)}'/>", where=lambda el: "type" not in el.attrib)
    await b.expect(f"<presence from='{full(a)}'/>", where=lambda el: "type" not in el.attrib)
    # Subsequent presence goes out again, with its content.
    await a.send_xml("<presence><show>away</show><status>Out to lunch</status></presence>")
    await b.expect(f"<presence from='{full(a)}'><show>away</show>"
                   "<status>Out to lunch</status></presence>")


async def test_presence_is_not_revealed_to_non_subscribers(server: ServerProcess,
                                                           connect: Any) -> None:
    a_jid, c_jid = server.new_users(2, prefix="hid")
    a, c = await connect(a_jid), await connect(c_jid)
    await go_online(a)
    await go_online(c)
    await a.send_xml("<presence><show>chat</show></presence>")
    await c.expect_nothing(f"<presence from='{full(a)}'/>")
    # A probe from a stranger gets no presence (§4.3.2).
    await c.send_xml(f"<presence to='{a_jid}' type='probe'/>")
    await c.expect_nothing(f"<presence from='{full(a)}'/>")


async def test_directed_presence_then_disconnect(server: ServerProcess, connect: Any) -> None:
    """§4.6: the recipient of directed presence gets unavailable when the sender leaves."""
    a_jid, c_jid = server.new_users(2, prefix="dir")
    a, c = await connect(a_jid), await connect(c_jid)
    await go_online(a)
    await go_online(c)
    await a.send_xml(f"<presence to='{full(c)}'><status>just for you</status></presence>")
    await c.expect(f"<presence from='{full(a)}'><status>just for you</status></presence>")
    gone = full(a)
    await a.close()
    await c.expect(f"<presence from='{gone}' type='unavailable'/>")


async def test_abrupt_disconnect_sends_unavailable(server: ServerProcess, connect: Any) -> None:
    """(f) The TCP connection drops without </stream>: contacts still get unavailable."""
    a, b, _a_jid, _b_jid = await friends(server, connect, "abr")
    gone = full(a)
    a.abort()
    await b.expect(f"<presence from='{gone}' type='unavailable'/>", timeout=10)


async def test_two_resources_see_each_other(server: ServerProcess, connect: Any) -> None:
    [user] = server.new_users(1, prefix="two")
    one = await connect(user, resource="one")
    await go_online(one)
    two = await connect(user, resource="two")
    await go_online(two)
    await one.expect(f"<presence from='{user}/two'/>")
    await two.expect(f"<presence from='{user}/one'/>")  # §4.2: the others' presence too
    await two.send_xml("<presence type='unavailable'/>")
    await one.expect(f"<presence from='{user}/two' type='unavailable'/>")


async def test_unavailable_with_status_answers_probes_later(server: ServerProcess,
                                                            connect: Any) -> None:
    """§4.3.2: while A is offline, a subscriber's probe gets A's last unavailable presence."""
    a, b, _a_jid, _b_jid = await friends(server, connect, "last")
    await a.send_xml("<presence type='unavailable'><status>Gone fishing</status></presence>")
    await b.expect(f"<presence from='{full(a)}' type='unavailable'>"
                   "<status>Gone fishing</status></presence>")
    await a.close()
    await b.send_xml(f"<presence to='{bare(a)}' type='probe'/>")
    answer = await b.expect(f"<presence from='{full(a)}' type='unavailable'>"
                            "<status>Gone fishing</status></presence>")
    assert answer.find("{urn:xmpp:delay}delay") is not None


async def test_negative_priority_gets_presence_but_no_bare_messages(
        server: ServerProcess, connect: Any) -> None:
    a, b, a_jid, _b_jid = await friends(server, connect, "neg")
    await a.send_xml("<presence><priority>-5</priority></presence>")
    await b.expect(f"<presence from='{full(a)}'><priority>-5</priority></presence>")
    await b.send_xml("<presence><show>xa</show></presence>")
    await a.expect(f"<presence from='{full(b)}'><show>xa</show></presence>")
    await b.send_xml(f"<message to='{a_jid}' type='chat'><body>hello?</body></message>")
    await a.expect_nothing("<message/>")
