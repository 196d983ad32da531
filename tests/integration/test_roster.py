"""RFC 6121 §2 roster management and §2.6 versioning, with real clients over TCP."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from integration.harness import (
    ROSTER_NS,
    ServerProcess,
    bare,
    expect_push,
    get_roster,
    is_roster_push,
    ns,
    roster_items,
)


def condition(el: ET.Element) -> str | None:
    err = el.find(ns("error"))
    if el.attrib.get("type") != "error" or err is None:
        return None
    return next(c.tag.split("}")[1] for c in err
                if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}"))


def roster_set(item_xml: str, iq_id: str = "set") -> str:
    return f"<iq type='set' id='{iq_id}'><query xmlns='{ROSTER_NS}'>{item_xml}</query></iq>"


async def test_get_set_push_and_interested_resources(server: ServerProcess,
                                                     connect: Any) -> None:
    [user] = server.new_users(1, prefix="ros")
    one = await connect(user, resource="one")
    two = await connect(user, resource="two")
    quiet = await connect(user, resource="quiet")  # never asks for the roster
    assert "rosterver" in one.features  # <ver xmlns='urn:xmpp:features:rosterver'/>
    empty = await get_roster(one, "g1")
    assert roster_items(empty) == [] and empty[0].attrib["ver"]
    await get_roster(two, "g2")

    reply = await one.query(roster_set("<item jid='Nurse@Example.com' name='Nurse'>"
                                       "<group>Servants</group></item>"))
    assert reply.attrib["type"] == "result"
    for client in (one, two):  # §2.3.2: every interested resource, the sender included
        item = await expect_push(client, "nurse@example.com", subscription="none",
                                 name="Nurse", ask=None)
        assert [g.text for g in item] == ["Servants"]
    await quiet.expect_nothing(where=is_roster_push())

    result = await get_roster(two, "g3")
    [item] = roster_items(result)
    assert item.attrib == {"jid": "nurse@example.com", "name": "Nurse", "subscription": "none"}


async def test_update_is_atomic_and_remove(server: ServerProcess, connect: Any) -> None:
    [user] = server.new_users(1, prefix="ros")
    c = await connect(user)
    await get_roster(c)
    await c.query(roster_set("<item jid='romeo@example.net' name='Romeo'>"
                             "<group>A</group><group>B</group></item>", "s1"))
    await expect_push(c, "romeo@example.net", name="Romeo")
    # The item is replaced as given: no name, one group; a client's 'subscription' is ignored.
    await c.query(roster_set("<item jid='romeo@example.net' subscription='both'>"
                             "<group>C</group></item>", "s2"))
    item = await expect_push(c, "romeo@example.net", name=None, subscription="none")
    assert [g.text for g in item] == ["C"]
    reply = await c.query(roster_set("<item jid='romeo@example.net' subscription='remove'/>",
                                     "rm"))
    assert reply.attrib["type"] == "result"
    await expect_push(c, "romeo@example.net", subscription="remove")
    assert roster_items(await get_roster(c, "after")) == []


@pytest.mark.parametrize(("payload", "expected"), [
    ("<item jid='a@example.com'/><item jid='b@example.com'/>", "bad-request"),
    ("<item jid='a@example.com'><group>G</group><group>G</group></item>", "bad-request"),
    ("<item jid='a@example.com'><group></group></item>", "not-acceptable"),
    ("<item jid='a@example.com' name='" + "x" * 2000 + "'/>", "not-acceptable"),
    ("<item jid='a@@example.com'/>", "jid-malformed"),
    ("<item name='no jid'/>", "bad-request"),
    ("<item jid='unknown@example.com' subscription='remove'/>", "item-not-found"),
])
async def test_roster_set_errors(server: ServerProcess, connect: Any, payload: str,
                                 expected: str) -> None:
    """RFC 6121 §2.3.3 error cases: the error, and no change (no push)."""
    [user] = server.new_users(1, prefix="err")
    c = await connect(user)
    await get_roster(c)
    reply = await c.query(roster_set(payload, "bad"))
    assert condition(reply) == expected, ET.tostring(reply, encoding="unicode")
    await c.expect_nothing(where=is_roster_push())
    assert roster_items(await get_roster(c, "after")) == []


async def test_another_account_is_forbidden(server: ServerProcess, connect: Any) -> None:
    owner, other = server.new_users(2, prefix="frb")
    c = await connect(other)
    for iq_type, payload in (("get", ""), ("set", "<item jid='x@example.com'/>")):
        reply = await c.query(f"<iq type='{iq_type}' id='{iq_type}' to='{owner}'>"
                              f"<query xmlns='{ROSTER_NS}'>{payload}</query></iq>")
        assert condition(reply) == "forbidden"


async def test_versioning(server: ServerProcess, connect: Any) -> None:
    """§2.6: bootstrap with ver='', then nothing when unchanged, empty result + one push
    per changed item when changed."""
    [user] = server.new_users(1, prefix="ver")
    editor = await connect(user, resource="editor")
    await get_roster(editor)
    for n, jid in enumerate(("a@example.com", "b@example.com", "c@example.com")):
        await editor.query(roster_set(f"<item jid='{jid}'/>", f"add{n}"))

    c = await connect(user, resource="cached")
    full_roster = await get_roster(c, "boot", ver="")
    ver = full_roster[0].attrib["ver"]
    assert len(roster_items(full_roster)) == 3 and ver
    same = await get_roster(c, "same", ver=ver)
    assert len(same) == 0  # an empty result: nothing changed
    await c.expect_nothing(where=is_roster_push())
    await c.close()

    await editor.query(roster_set("<item jid='a@example.com' name='first'/>", "m1"))
    await editor.query(roster_set("<item jid='a@example.com' name='second'/>", "m2"))
    await editor.query(roster_set("<item jid='b@example.com' subscription='remove'/>", "m3"))
    c = await connect(user, resource="cached2")
    delta = await get_roster(c, "delta", ver=ver)
    assert len(delta) == 0
    changed = await expect_push(c, "a@example.com", name="second", subscription="none")
    assert changed is not None
    await expect_push(c, "b@example.com", subscription="remove")
    await c.expect_nothing(where=is_roster_push("c@example.com"))
    latest = (await get_roster(c, "latest"))[0].attrib["ver"]
    assert latest != ver
    assert len(await get_roster(c, "again", ver=latest)) == 0


async def test_roster_survives_reconnection(server: ServerProcess, connect: Any) -> None:
    [user] = server.new_users(1, prefix="keep")
    c = await connect(user)
    await get_roster(c)
    await c.query(roster_set("<item jid='kept@example.com' name='K'><group>G</group></item>"))
    await c.close()
    c = await connect(user, resource="again")
    [item] = roster_items(await get_roster(c))
    assert item.attrib["name"] == "K" and [g.text for g in item] == ["G"]
    assert bare(c) == user
