"""XEP-0199 §4.1 server-to-client pings of idle sessions, in memory (fake sessions, real router,
IQ tracker and hooks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from blether.core import events
from blether.core.modules import ModuleError
from blether.xml.element import Element
from features.services_kit import FakeSession, Kit

PING = "urn:xmpp:ping"


def pings(session: FakeSession) -> list[Element]:
    return session.take(lambda s: s.name == "iq" and s.find("ping", PING) is not None)


async def wait_for_ping(session: FakeSession, timeout: float = 3.0) -> Element:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        found = pings(session)
        if found:
            assert len(found) == 1, found
            return found[0]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no ping for {session.jid}; sent: {session.sent}")


async def wait_closed(session: FakeSession, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not session.closed and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


async def ping_settled(kit: Kit, session: FakeSession, timeout: float = 3.0) -> None:
    """Wait until no ping is pending for `session` (answered, or timed out and acted upon:
    the module marks the ping done and closes the session in one step)."""
    state = session.data.get("keepalive")
    deadline = asyncio.get_running_loop().time() + timeout
    while state is not None and state.pinging is not None:
        assert asyncio.get_running_loop().time() < deadline, "the ping never settled"
        await asyncio.sleep(0.01)


@pytest.fixture
async def kit() -> AsyncIterator[Kit]:
    k = await Kit.create(["ping", "keepalive"], {"keepalive": {"interval": 0.4, "timeout": 0.4}})
    yield k
    await k.close()


async def test_an_idle_session_is_pinged_from_the_domain(kit: Kit) -> None:
    """§4.1: <iq from='capulet.lit' to='juliet@capulet.lit/balcony' type='get'><ping/></iq>."""
    juliet = await kit.login("juliet@localhost/balcony")
    ping = await wait_for_ping(juliet)
    assert ping.attrs["type"] == "get"
    assert ping.attrs["from"] == "localhost"
    assert ping.attrs["to"] == "juliet@localhost/balcony"
    assert ping.attrs["id"]
    [payload] = ping.elements()
    assert payload.name == "ping" and payload.xmlns == PING and not payload.children


@pytest.mark.parametrize("answer", [
    "<iq type='result' id='{id}' to='localhost'/>",
    # §4.1: a client without ping support answers <service-unavailable/>: still alive.
    "<iq type='error' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/>"
    "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
    "</error></iq>",
    # Some clients answer without a 'to' (handled on their account's behalf by the server).
    "<iq type='result' id='{id}'/>",
], ids=["result", "error", "no-to"])
async def test_an_answer_keeps_the_session(kit: Kit, answer: str) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    for _round in range(2):
        ping = await wait_for_ping(juliet)
        await kit.send(juliet, answer.format(id=ping.attrs["id"]))
        await ping_settled(kit, juliet)
        assert not juliet.closed


async def test_no_answer_closes_the_stream_with_connection_timeout(kit: Kit) -> None:
    ended: list[events.SessionEnded] = []

    async def record(event: events.SessionEnded) -> None:
        ended.append(event)

    kit.s.hooks.add(events.SESSION_ENDED, record)
    juliet = await kit.login("juliet@localhost/balcony")
    await wait_for_ping(juliet)
    await wait_closed(juliet)
    assert juliet.closed
    assert juliet.close_error is not None
    assert juliet.close_error.condition == "connection-timeout"
    assert [e.session for e in ended] == [juliet]
    assert kit.s.sessions.get(juliet.jid) is None


async def test_an_answer_from_someone_else_does_not_count(kit: Kit) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    romeo = await kit.login("romeo@localhost/orchard")
    ping = await wait_for_ping(juliet)
    # Romeo keeps himself busy and tries to answer Juliet's ping; only his own activity counts.
    await kit.send(romeo, f"<iq type='result' id='{ping.attrs['id']}' to='localhost'/>")
    await ping_settled(kit, juliet)
    assert juliet.closed


async def test_other_traffic_while_the_ping_is_pending_counts(kit: Kit) -> None:
    """§6: some clients never answer unknown IQs; a client that talks is not dead."""
    juliet = await kit.login("juliet@localhost/balcony")
    await wait_for_ping(juliet)
    await kit.send(juliet, "<message to='localhost'><body>still here</body></message>")
    await ping_settled(kit, juliet)
    assert not juliet.closed


async def test_an_active_session_is_not_pinged(kit: Kit) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    for i in range(24):   # 1.2 s of traffic every 0.05 s, with a 0.4 s interval
        await kit.send(juliet, f"<iq type='get' id='p{i}' to='localhost'>"
                               f"<ping xmlns='{PING}'/></iq>")
        await asyncio.sleep(0.05)
    assert pings(juliet) == []
    assert not juliet.closed


async def test_ids_are_unguessable(kit: Kit) -> None:
    a = await kit.login("a@localhost/x")
    b = await kit.login("b@localhost/x")
    id_a = (await wait_for_ping(a)).attrs["id"]
    id_b = (await wait_for_ping(b)).attrs["id"]
    assert id_a != id_b
    assert len(id_a.rsplit("-", 1)[1]) >= 12


async def test_a_session_that_ends_stops_its_ping(kit: Kit) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    await wait_for_ping(juliet)
    await kit.end(juliet, "closed")
    await asyncio.sleep(0.6)   # longer than the timeout
    assert juliet.close_error is None
    assert not [t for t in kit.module("keepalive").ctx._tasks if "ping" in t.get_name()]


async def test_defaults_and_option_checks() -> None:
    kit = await Kit.create(["keepalive"])
    try:
        opts = kit.module("keepalive").options
        assert (opts.interval, opts.timeout) == (300.0, 30.0)
    finally:
        await kit.close()
    for bad in ({"interval": 0}, {"timeout": -1}, {"every": 5}):
        with pytest.raises(ModuleError, match="keepalive"):
            await Kit.create(["keepalive"], {"keepalive": bad})
