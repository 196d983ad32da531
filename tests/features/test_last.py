"""XEP-0012 Last Activity: server uptime (§5), accounts (§3) and full JIDs (§4), in memory.

The presence feature is not loaded: the tests send the unavailable presence themselves (which
the last module watches on its way in) and end sessions the way the transport does.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest

from blether.features.last import KEY, STORE
from blether.storage import RosterItem
from blether.xml.element import Element
from features.services_kit import Kit, condition

LAST = "jabber:iq:last"


def last_get(to: str | None, iq_id: str = "last1") -> str:
    to_attr = f" to='{to}'" if to else ""
    return f"<iq type='get' id='{iq_id}'{to_attr}><query xmlns='{LAST}'/></iq>"


def seconds_and_text(reply: Element) -> tuple[int, str]:
    assert reply.attrs["type"] == "result", reply
    query = reply.find("query", LAST)
    assert query is not None
    return int(query.attrs["seconds"]), query.text


@pytest.fixture
async def kit() -> AsyncIterator[Kit]:
    k = await Kit.create(["last"], hosts=("capulet.com",))
    yield k
    await k.close()


async def logout(kit: Kit, full: str, status: str | None = None) -> None:
    """Log in and out again, with an unavailable presence carrying `status` if given."""
    session = await kit.login(full)
    await kit.send(session, "<presence/>")
    if status is not None:
        await kit.send(session, f"<presence type='unavailable'><status>{status}</status>"
                                f"</presence>")
    await kit.end(session, "closed")


async def backdate(kit: Kit, user: str, seconds: float) -> None:
    raw = await kit.s.storage.kv.get(user, STORE, KEY)
    assert raw is not None
    record = json.loads(raw)
    record["time"] -= seconds
    await kit.s.storage.kv.set(user, STORE, KEY, json.dumps(record))


async def allow(kit: Kit, user: str, contact: str, subscription: str = "both") -> None:
    await kit.account(user)
    await kit.s.storage.roster.put(user, RosterItem(contact, subscription=subscription))


# -- §5 the server -------------------------------------------------------------------------
async def test_server_uptime(kit: Kit) -> None:
    romeo = await kit.login("romeo@capulet.com/orchard")
    kit.module("last")._started = time.monotonic() - 123_456
    seconds, text = seconds_and_text(await kit.query(romeo, last_get("capulet.com")))
    assert 123_456 <= seconds <= 123_458
    assert text == ""   # §5: SHOULD NOT contain character data


# -- §3 accounts ---------------------------------------------------------------------------
@pytest.mark.parametrize("subscription", ["from", "both"])
async def test_contact_logged_out_with_a_status(kit: Kit, subscription: str) -> None:
    """§3 example: the user logged out 903 seconds ago saying 'Heading Home'."""
    await allow(kit, "juliet@capulet.com", "romeo@capulet.com", subscription)
    await logout(kit, "juliet@capulet.com/balcony", "Heading Home")
    await backdate(kit, "juliet@capulet.com", 903)
    romeo = await kit.login("romeo@capulet.com/orchard")
    reply = await kit.query(romeo, last_get("juliet@capulet.com"))
    assert reply.attrs["from"] == "juliet@capulet.com"
    seconds, text = seconds_and_text(reply)
    assert 903 <= seconds <= 905
    assert text == "Heading Home"


async def test_logout_without_status(kit: Kit) -> None:
    await allow(kit, "juliet@capulet.com", "romeo@capulet.com")
    session = await kit.login("juliet@capulet.com/balcony")
    await kit.end(session, "dropped")   # no unavailable presence at all
    romeo = await kit.login("romeo@capulet.com/orchard")
    seconds, text = seconds_and_text(await kit.query(romeo, last_get("juliet@capulet.com")))
    assert seconds <= 2 and text == ""


async def test_an_old_status_does_not_outlive_a_new_available_presence(kit: Kit) -> None:
    await allow(kit, "juliet@capulet.com", "romeo@capulet.com")
    session = await kit.login("juliet@capulet.com/balcony")
    await kit.send(session, "<presence type='unavailable'><status>brb</status></presence>")
    await kit.send(session, "<presence/>")
    await kit.end(session, "dropped")
    romeo = await kit.login("romeo@capulet.com/orchard")
    assert seconds_and_text(await kit.query(romeo, last_get("juliet@capulet.com")))[1] == ""


async def test_online_account_is_zero_seconds(kit: Kit) -> None:
    """§3: with a connected or available resource, an empty query with seconds='0'."""
    await allow(kit, "juliet@capulet.com", "romeo@capulet.com")
    await logout(kit, "juliet@capulet.com/balcony", "Heading Home")
    await backdate(kit, "juliet@capulet.com", 600)
    await kit.login("juliet@capulet.com/chamber")   # connected, no presence yet
    romeo = await kit.login("romeo@capulet.com/orchard")
    assert seconds_and_text(await kit.query(romeo, last_get("juliet@capulet.com"))) == (0, "")


async def test_logout_counts_when_the_last_resource_goes(kit: Kit) -> None:
    await allow(kit, "juliet@capulet.com", "romeo@capulet.com")
    balcony = await kit.login("juliet@capulet.com/balcony")
    chamber = await kit.login("juliet@capulet.com/chamber")
    await kit.end(balcony, "closed")
    assert await kit.s.storage.kv.get("juliet@capulet.com", STORE, KEY) is None
    await kit.send(chamber, "<presence type='unavailable'><status>Bye</status></presence>")
    await kit.end(chamber, "closed")
    romeo = await kit.login("romeo@capulet.com/orchard")
    seconds, text = seconds_and_text(await kit.query(romeo, last_get("juliet@capulet.com")))
    assert seconds <= 2 and text == "Bye"


async def test_a_replaced_session_is_not_a_logout(kit: Kit) -> None:
    old = await kit.login("juliet@capulet.com/balcony")
    await kit.end(old, "replaced")   # the transport ends it so that a new bind can take over
    assert await kit.s.storage.kv.get("juliet@capulet.com", STORE, KEY) is None


async def test_the_account_itself(kit: Kit) -> None:
    await logout(kit, "juliet@capulet.com/balcony", "zzz")
    juliet = await kit.login("juliet@capulet.com/chamber")
    # Online now, so 0 — both with no 'to' and to her own bare JID.
    for stanza in (last_get(None, "a"), last_get("juliet@capulet.com", "b")):
        assert seconds_and_text(await kit.query(juliet, stanza)) == (0, "")


@pytest.mark.parametrize("subscription", [None, "none", "to"])
async def test_others_are_forbidden(kit: Kit, subscription: str | None) -> None:
    """§3: a requester not allowed to see the user's presence gets <forbidden/>."""
    await kit.account("juliet@capulet.com")
    if subscription is not None:
        await allow(kit, "juliet@capulet.com", "romeo@capulet.com", subscription)
    await logout(kit, "juliet@capulet.com/balcony", "Heading Home")
    romeo = await kit.login("romeo@capulet.com/orchard")
    reply = await kit.query(romeo, last_get("juliet@capulet.com"))
    assert reply.attrs["type"] == "error" and condition(reply) == "forbidden"
    error = reply.find("error")
    assert error is not None and error.attrs["type"] == "auth"


async def test_never_logged_out(kit: Kit) -> None:
    await allow(kit, "juliet@capulet.com", "romeo@capulet.com")
    romeo = await kit.login("romeo@capulet.com/orchard")
    reply = await kit.query(romeo, last_get("juliet@capulet.com"))
    assert condition(reply) == "service-unavailable"


async def test_the_record_outlives_the_module(kit: Kit) -> None:
    """Kept in storage, not in memory: a restart does not forget it."""
    await allow(kit, "juliet@capulet.com", "romeo@capulet.com")
    await logout(kit, "juliet@capulet.com/balcony", "Heading Home")
    raw = await kit.s.storage.kv.get("juliet@capulet.com", STORE, KEY)
    assert raw is not None and json.loads(raw)["status"] == "Heading Home"


# -- §4 full JIDs --------------------------------------------------------------------------
async def test_full_jid_query_reaches_the_client_only_for_contacts(kit: Kit) -> None:
    await allow(kit, "juliet@capulet.com", "romeo@capulet.com")
    juliet = await kit.login("juliet@capulet.com/balcony")
    juliet.available = True
    romeo = await kit.login("romeo@capulet.com/orchard")
    await kit.send(romeo, "<iq type='get' id='idle1' to='juliet@capulet.com/balcony'>"
                          f"<query xmlns='{LAST}'/></iq>")
    [delivered] = juliet.take()
    assert delivered.attrs["from"] == "romeo@capulet.com/orchard"
    assert romeo.take() == []

    paris = await kit.login("paris@capulet.com/street")
    reply = await kit.query(paris, "<iq type='get' id='idle2' to='juliet@capulet.com/balcony'>"
                                   f"<query xmlns='{LAST}'/></iq>")
    assert condition(reply) == "forbidden"
    assert reply.attrs["from"] == "juliet@capulet.com/balcony"
    assert juliet.take() == []


async def test_other_iqs_to_full_jids_are_not_guarded(kit: Kit) -> None:
    juliet = await kit.login("juliet@capulet.com/balcony")
    paris = await kit.login("paris@capulet.com/street")
    await kit.send(paris, "<iq type='get' id='v1' to='juliet@capulet.com/balcony'>"
                          "<query xmlns='jabber:iq:version'/></iq>")
    assert [s.attrs["id"] for s in juliet.take()] == ["v1"]
    # Results and errors are never refused: they answer something the client asked.
    await kit.send(paris, "<iq type='result' id='r1' to='juliet@capulet.com/balcony'>"
                          f"<query xmlns='{LAST}' seconds='5'/></iq>")
    assert [s.attrs["id"] for s in juliet.take()] == ["r1"]
