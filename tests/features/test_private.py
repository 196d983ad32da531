"""XEP-0049 Private XML Storage, in memory (real router and storage)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from features.services_kit import Kit, condition

P = "jabber:iq:private"


@pytest.fixture
async def kit() -> AsyncIterator[Kit]:
    k = await Kit.create(["private"], {"private": {"max_item_bytes": 512, "max_items": 3}})
    yield k
    await k.close()


EXODUS = "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>"


async def test_store_then_retrieve(kit: Kit) -> None:
    # §2.3 "Client Stores Private Data" / "Client Retrieves Private Data".
    hamlet = await kit.login("hamlet@localhost/denmark")
    reply = await kit.query(hamlet, f"<iq type='set' id='1001'><query xmlns='{P}'>{EXODUS}"
                                    "</query></iq>")
    assert reply.attrs["type"] == "result" and reply.children == []
    reply = await kit.query(hamlet, f"<iq type='get' id='1002'><query xmlns='{P}'>"
                                    "<exodus xmlns='exodus:prefs'/></query></iq>")
    assert reply.attrs["type"] == "result"
    query = reply.find("query", P)
    assert query is not None
    exodus = query.find("exodus", "exodus:prefs")
    assert exodus is not None and exodus.find_text("defaultnick", "exodus:prefs") == "Hamlet"


async def test_missing_fragment_returns_the_empty_element(kit: Kit) -> None:
    hamlet = await kit.login("hamlet@localhost/denmark")
    reply = await kit.query(hamlet, f"<iq type='get' id='g'><query xmlns='{P}'>"
                                    "<storage xmlns='storage:bookmarks'/></query></iq>")
    query = reply.find("query", P)
    assert query is not None
    storage = query.find("storage", "storage:bookmarks")
    assert storage is not None and storage.children == []


async def test_fragments_are_keyed_by_name_and_namespace(kit: Kit) -> None:
    hamlet = await kit.login("hamlet@localhost/denmark")
    await kit.query(hamlet, f"<iq type='set' id='a'><query xmlns='{P}'>"
                            "<a xmlns='urn:example'>1</a><b xmlns='urn:example'>2</b></query></iq>")
    for name, text in (("a", "1"), ("b", "2")):
        reply = await kit.query(hamlet, f"<iq type='get' id='g{name}'><query xmlns='{P}'>"
                                        f"<{name} xmlns='urn:example'/></query></iq>")
        assert reply.find("query", P).find(name, "urn:example").text == text  # type: ignore


async def test_other_users_get_forbidden(kit: Kit) -> None:
    # §2.3 "User Attempts to Get or Set Data for Another User".
    hamlet = await kit.login("hamlet@localhost/denmark")
    macbeth = await kit.login("macbeth@localhost/castle")
    await kit.query(hamlet, f"<iq type='set' id='1'><query xmlns='{P}'>{EXODUS}</query></iq>")
    for iq_type, payload in (("set", EXODUS), ("get", "<exodus xmlns='exodus:prefs'/>")):
        reply = await kit.query(macbeth, f"<iq type='{iq_type}' to='hamlet@localhost' id='1003'>"
                                         f"<query xmlns='{P}'>{payload}</query></iq>")
        assert condition(reply) == "forbidden"
    stored = await kit.s.storage.kv.get("hamlet@localhost", "private", "{exodus:prefs}exodus")
    assert stored is not None and "Hamlet" in stored


async def test_query_without_child_is_not_acceptable(kit: Kit) -> None:
    hamlet = await kit.login("hamlet@localhost/denmark")
    for iq_type in ("get", "set"):
        reply = await kit.query(hamlet, f"<iq type='{iq_type}' id='1004'><query xmlns='{P}'/>"
                                        "</iq>")
        assert condition(reply) == "not-acceptable"


async def test_get_of_two_elements_is_bad_request(kit: Kit) -> None:
    hamlet = await kit.login("hamlet@localhost/denmark")
    reply = await kit.query(hamlet, f"<iq type='get' id='x'><query xmlns='{P}'>"
                                    "<a xmlns='urn:a'/><b xmlns='urn:b'/></query></iq>")
    assert condition(reply) == "bad-request"


@pytest.mark.parametrize("namespace", ["vcard-temp", "jabber:iq:roster",
                                       "http://jabber.org/protocol/disco#info"])
async def test_reserved_namespaces_are_not_acceptable(kit: Kit, namespace: str) -> None:
    # §2.3 "User Attempts to Get or Set Data in a Reserved Namespace".
    hamlet = await kit.login("hamlet@localhost/denmark")
    reply = await kit.query(hamlet, f"<iq type='set' id='1005'><query xmlns='{P}'>"
                                    f"<vCard xmlns='{namespace}'><FN>Hamlet</FN></vCard>"
                                    "</query></iq>")
    assert condition(reply) == "not-acceptable"
    assert await kit.s.storage.kv.keys("hamlet@localhost", "private") == []


async def test_empty_element_clears_the_fragment(kit: Kit) -> None:
    hamlet = await kit.login("hamlet@localhost/denmark")
    await kit.query(hamlet, f"<iq type='set' id='1'><query xmlns='{P}'>{EXODUS}</query></iq>")
    await kit.query(hamlet, f"<iq type='set' id='2'><query xmlns='{P}'>"
                            "<exodus xmlns='exodus:prefs'/></query></iq>")
    assert await kit.s.storage.kv.keys("hamlet@localhost", "private") == []


async def test_size_limits(kit: Kit) -> None:
    hamlet = await kit.login("hamlet@localhost/denmark")
    big = "x" * 600
    reply = await kit.query(hamlet, f"<iq type='set' id='1'><query xmlns='{P}'>"
                                    f"<big xmlns='urn:big'>{big}</big></query></iq>")
    assert condition(reply) == "not-acceptable"
    # max_items = 3: a fourth namespace is refused, replacing an existing one is not.
    for n in range(3):
        reply = await kit.query(hamlet, f"<iq type='set' id='n{n}'><query xmlns='{P}'>"
                                        f"<e xmlns='urn:n{n}'>v</e></query></iq>")
        assert reply.attrs["type"] == "result"
    reply = await kit.query(hamlet, f"<iq type='set' id='n3'><query xmlns='{P}'>"
                                    "<e xmlns='urn:n3'>v</e></query></iq>")
    assert condition(reply) == "resource-constraint"
    reply = await kit.query(hamlet, f"<iq type='set' id='n0b'><query xmlns='{P}'>"
                                    "<e xmlns='urn:n0'>w</e></query></iq>")
    assert reply.attrs["type"] == "result"


async def test_set_with_one_bad_fragment_stores_nothing(kit: Kit) -> None:
    hamlet = await kit.login("hamlet@localhost/denmark")
    reply = await kit.query(hamlet, f"<iq type='set' id='1'><query xmlns='{P}'>{EXODUS}"
                                    "<vCard xmlns='vcard-temp'/></query></iq>")
    assert condition(reply) == "not-acceptable"
    assert await kit.s.storage.kv.keys("hamlet@localhost", "private") == []


async def test_reserved_check_can_be_switched_off() -> None:
    kit = await Kit.create(["private"], {"private": {"reject_reserved_namespaces": False}})
    try:
        hamlet = await kit.login("hamlet@localhost/denmark")
        reply = await kit.query(hamlet, f"<iq type='set' id='1'><query xmlns='{P}'>"
                                        "<x xmlns='jabber:x:custom'>1</x></query></iq>")
        assert reply.attrs["type"] == "result"
    finally:
        await kit.close()
