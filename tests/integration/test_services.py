"""Standard services against the real server with real clients: service discovery (XEP-0030,
XEP-0128/0157), entity capabilities in stream features (XEP-0115), software version
(XEP-0092), entity time (XEP-0202), last activity (XEP-0012) and server-to-client pings of idle
clients (XEP-0199 §4.1)."""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import blether
from blether.core.disco import Identity
from blether.features.caps import verification_string
from blether.xml.element import Element
from integration.harness import Client, ServerProcess, ns
from integration.rawclient import RawClient

INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
CAPS = "http://jabber.org/protocol/caps"
DATA = "jabber:x:data"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
PING = "urn:xmpp:ping"


def condition(reply: ET.Element) -> str | None:
    err = reply.find(ns("error"))
    if err is None:
        return None
    for child in err:
        if child.tag.startswith(f"{{{STANZAS}}}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return None


def features(reply: ET.Element) -> set[str]:
    return {f.get("var", "") for f in reply.iter(ns("feature", INFO))}


def identities(reply: ET.Element) -> set[tuple[str, str]]:
    return {(i.get("category", ""), i.get("type", "")) for i in reply.iter(ns("identity", INFO))}


async def befriend(a: Client, b: Client) -> None:
    """`b` subscribes to `a`'s presence and `a` approves (RFC 6121 §3.1): a's roster then has b
    with subscription 'from', so b may see a's presence, last activity and account disco.

    Both send initial presence first: a subscription request reaches available resources
    (RFC 6121 §3.1.3)."""
    await a.send_xml("<presence/>")
    await b.send_xml("<presence/>")
    await b.send_xml(f"<presence to='{a.boundjid.bare}' type='subscribe'/>")
    await a.expect(f"<presence from='{b.boundjid.bare}' type='subscribe'/>")
    await a.send_xml(f"<presence to='{b.boundjid.bare}' type='subscribed'/>")
    await b.expect(f"<presence from='{a.boundjid.bare}' type='subscribed'/>")


# -- XEP-0030 at the server ----------------------------------------------------------------
async def test_server_disco_info(server: ServerProcess, connect: Any) -> None:
    [alice] = server.new_users(1)
    a = await connect(alice)
    reply = await a.query(f"<iq type='get' id='info1' to='localhost'><query xmlns='{INFO}'/>"
                          f"</iq>")
    assert reply.get("type") == "result" and reply.get("from") == "localhost"
    assert ("server", "im") in identities(reply)
    assert {INFO, ITEMS, CAPS, PING, "jabber:iq:version", "urn:xmpp:time",
            "jabber:iq:last"} <= features(reply)


async def test_server_disco_items(server: ServerProcess, connect: Any) -> None:
    [alice] = server.new_users(1)
    a = await connect(alice)
    reply = await a.query(f"<iq type='get' id='items1' to='localhost'><query xmlns='{ITEMS}'/>"
                          f"</iq>")
    assert reply.get("type") == "result"
    assert reply.find(ns("query", ITEMS)) is not None
    reply = await a.query(f"<iq type='get' id='items2' to='localhost'>"
                          f"<query xmlns='{ITEMS}' node='no-such-node'/></iq>")
    assert condition(reply) == "item-not-found"


# -- XEP-0115 in stream features -----------------------------------------------------------
def caps_of(features_el: Element | None) -> Element:
    assert features_el is not None
    c = features_el.find("c", CAPS)
    assert c is not None, f"no caps in {features_el!r}"
    return c


async def test_caps_in_stream_features_match_disco_info(server: ServerProcess) -> None:
    [alice] = server.new_users(1)
    user = alice.split("@")[0]
    raw = await RawClient.connect(server.bind, server.port, "localhost")
    try:
        await raw.open_stream()
        features_tls = await raw.starttls()          # before authentication
        assert raw.stream_header is not None
        # XEP-0115 §6.3: the server MUST put its JID in the response header's 'from'.
        assert raw.stream_header.attrs.get("from") == "localhost"
        before = caps_of(features_tls)
        assert (await raw.sasl_scram(user, "secret")).name == "success"
        after = caps_of(await raw.open_stream())      # after authentication
        assert before.attrs == after.attrs
        assert after.attrs["hash"] == "sha-1"
        await raw.bind()
        await raw.send(f"<iq type='get' id='disco1' to='localhost'><query xmlns='{INFO}'/></iq>")
        reply = await raw.stanza(lambda e: e.attrs.get("id") == "disco1")
        query = reply.find("query", INFO)
        assert query is not None
        # §5.4: the receiver rebuilds the ver from the disco#info answer.
        idents = [Identity(i.attrs["category"], i.attrs["type"], i.attrs.get("name", ""),
                           i.attrs.get("xml:lang", ""))
                  for i in query.find_all("identity", INFO)]
        feats = [f.attrs["var"] for f in query.find_all("feature", INFO)]
        assert after.attrs["ver"] == verification_string(idents, feats,
                                                         query.find_all("x", DATA))
        node = f"{after.attrs['node']}#{after.attrs['ver']}"
        await raw.send(f"<iq type='get' id='disco2' to='localhost'>"
                       f"<query xmlns='{INFO}' node='{node}'/></iq>")
        reply = await raw.stanza(lambda e: e.attrs.get("id") == "disco2")
        assert reply.attrs["type"] == "result"
        node_query = reply.find("query", INFO)
        assert node_query is not None and node_query.attrs.get("node") == node
        assert node_query.children == query.children
    finally:
        await raw.close()


# -- XEP-0030 at accounts (§8) -------------------------------------------------------------
async def test_account_disco_for_self_contact_and_stranger(server: ServerProcess,
                                                           connect: Any) -> None:
    juliet, romeo, paris = server.new_users(3)
    j = await connect(juliet, resource="balcony")
    r = await connect(romeo)
    p = await connect(paris)
    await befriend(j, r)

    # The account itself, with and without 'to'.
    for iq_id, to in (("self1", ""), ("self2", f" to='{juliet}'")):
        reply = await j.query(f"<iq type='get' id='{iq_id}'{to}><query xmlns='{INFO}'/></iq>")
        assert reply.get("type") == "result"
        assert ("account", "registered") in identities(reply)
        assert INFO in features(reply)

    # A contact allowed to see Juliet's presence: info, and her available resources.
    reply = await r.query(f"<iq type='get' id='c1' to='{juliet}'><query xmlns='{INFO}'/></iq>")
    assert reply.get("type") == "result" and reply.get("from") == juliet
    assert ("account", "registered") in identities(reply)
    reply = await r.query(f"<iq type='get' id='c2' to='{juliet}'><query xmlns='{ITEMS}'/></iq>")
    assert [i.get("jid") for i in reply.iter(ns("item", ITEMS))] == [f"{juliet}/balcony"]

    # A stranger: <service-unavailable/> for info, an empty list of items (XEP-0030 §8).
    reply = await p.query(f"<iq type='get' id='s1' to='{juliet}'><query xmlns='{INFO}'/></iq>")
    assert reply.get("type") == "error" and condition(reply) == "service-unavailable"
    reply = await p.query(f"<iq type='get' id='s2' to='{juliet}'><query xmlns='{ITEMS}'/></iq>")
    assert reply.get("type") == "result"
    assert list(reply.iter(ns("item", ITEMS))) == []

    # Juliet sees Romeo's presence but he does not see hers... the other way round is closed.
    reply = await j.query(f"<iq type='get' id='o1' to='{romeo}'><query xmlns='{INFO}'/></iq>")
    assert condition(reply) == "service-unavailable"


# -- XEP-0092, XEP-0202 --------------------------------------------------------------------
async def test_server_version(server: ServerProcess, connect: Any) -> None:
    [alice] = server.new_users(1)
    a = await connect(alice)
    reply = await a.query("<iq type='get' id='version_1' to='localhost'>"
                          "<query xmlns='jabber:iq:version'/></iq>")
    assert reply.get("type") == "result"
    query = reply.find(ns("query", "jabber:iq:version"))
    assert query is not None
    assert query.findtext(ns("name", "jabber:iq:version")) == "Blether"
    assert query.findtext(ns("version", "jabber:iq:version")) == blether.__version__
    assert query.find(ns("os", "jabber:iq:version")) is None   # show_os defaults to false


async def test_server_time(server: ServerProcess, connect: Any) -> None:
    [alice] = server.new_users(1)
    a = await connect(alice)
    reply = await a.query("<iq type='get' id='time_1' to='localhost'>"
                          "<time xmlns='urn:xmpp:time'/></iq>")
    assert reply.get("type") == "result"
    tzo = reply.findtext(f".//{ns('tzo', 'urn:xmpp:time')}")
    utc = reply.findtext(f".//{ns('utc', 'urn:xmpp:time')}")
    assert tzo is not None and re.fullmatch(r"[+-]\d\d:\d\d", tzo)
    assert utc is not None and utc.endswith("Z")
    told = datetime.fromisoformat(utc.replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - told).total_seconds()) < 5


# -- XEP-0012 ------------------------------------------------------------------------------
def last_seconds(reply: ET.Element) -> tuple[int, str]:
    assert reply.get("type") == "result", ET.tostring(reply, encoding="unicode")
    query = reply.find(ns("query", "jabber:iq:last"))
    assert query is not None
    return int(query.get("seconds", "-1")), (query.text or "")


async def test_last_activity(server: ServerProcess, connect: Any) -> None:
    juliet, romeo, paris = server.new_users(3)
    j = await connect(juliet)
    r = await connect(romeo)
    p = await connect(paris)
    await befriend(j, r)

    uptime, text = last_seconds(await r.query(
        "<iq type='get' id='up' to='localhost'><query xmlns='jabber:iq:last'/></iq>"))
    assert uptime >= 0 and text == ""

    # Online: seconds='0' (§3).
    assert last_seconds(await r.query(f"<iq type='get' id='on' to='{juliet}'>"
                                      f"<query xmlns='jabber:iq:last'/></iq>")) == (0, "")

    await j.send_xml("<presence type='unavailable'><status>Heading Home</status></presence>")
    await j.close()
    await asyncio.sleep(3)
    seconds, text = last_seconds(await r.query(f"<iq type='get' id='off' to='{juliet}'>"
                                               f"<query xmlns='jabber:iq:last'/></iq>"))
    assert 2 <= seconds <= 15 and text == "Heading Home"

    reply = await p.query(f"<iq type='get' id='no' to='{juliet}'>"
                          f"<query xmlns='jabber:iq:last'/></iq>")
    assert reply.get("type") == "error" and condition(reply) == "forbidden"


# -- XEP-0199 §4.1: the server pings idle clients ------------------------------------------
KEEPALIVE_CONFIG = """
[module_options.keepalive]
interval = 1.0
timeout = 1.0

[module_options.s2s]
enabled = false   # not needed here, and its listener would take the well-known port 5269
"""


@pytest.fixture(scope="module")
def pinging_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(Path(tmp_path_factory.mktemp("blether-keepalive")),
                         config_text=KEEPALIVE_CONFIG)
    proc.start()
    yield proc
    code = proc.stop()
    log = proc.log()
    assert "Traceback" not in log, f"the server logged a traceback:\n{log[-5000:]}"
    assert code == 0, f"server exited with {code}:\n{log[-3000:]}"


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        await c.close()


async def answering_client(server: ServerProcess, jid: str, made: list[Client]) -> Client:
    """A normal client: slixmpp with its XEP-0199 plugin, which answers pings."""
    c = Client(jid)
    c.register_plugin("xep_0199")
    made.append(c)
    assert await c.login(server)
    return c


async def answering_pings_until(raw: RawClient, want: Callable[[Element], bool],
                                timeout: float = 5.0) -> Element:
    """Read stanzas until one satisfies `want`, answering the server's pings on the way."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        el = await raw.element(max(0.01, deadline - asyncio.get_running_loop().time()))
        if want(el):
            return el
        if el.name == "iq" and el.attrs.get("type") == "get" and el.find("ping", PING):
            await raw.send(f"<iq type='result' id='{el.attrs['id']}' to='localhost'/>")


async def test_a_client_that_answers_stays_connected(pinging_server: ServerProcess,
                                                    clients: list[Client]) -> None:
    [alice] = pinging_server.new_users(1)
    a = await answering_client(pinging_server, alice, clients)
    # It is pinged (from the domain, to its full JID) while idle, answers, and stays.
    await a.expect(f"<iq type='get' from='localhost' to='{a.boundjid.full}'>"
                   f"<ping xmlns='{PING}'/></iq>", timeout=5)
    await asyncio.sleep(4)
    assert a.is_connected()
    assert a.stream_errors == []
    pong = await a.query("<iq type='get' id='still' to='localhost'><ping xmlns='urn:xmpp:ping'/>"
                         "</iq>")
    assert pong.get("type") == "result"


async def test_a_silent_client_is_disconnected_and_its_contacts_told(
        pinging_server: ServerProcess, clients: list[Client]) -> None:
    silent_jid, watcher_jid = pinging_server.new_users(2)
    watcher = await answering_client(pinging_server, watcher_jid, clients)
    raw = await RawClient.login(pinging_server.bind, pinging_server.port, silent_jid,
                                resource="frozen")
    try:
        # The watcher subscribes to the raw client's presence, which approves; meanwhile the
        # raw client still answers the server's pings.
        await raw.send("<presence/>")
        await watcher.send_xml("<presence/>")
        await watcher.send_xml(f"<presence to='{silent_jid}' type='subscribe'/>")
        await answering_pings_until(
            raw, lambda e: e.name == "presence" and e.attrs.get("type") == "subscribe")
        await raw.send(f"<presence to='{watcher_jid}' type='subscribed'/>")
        await watcher.expect(f"<presence from='{silent_jid}/frozen'/>",
                             where=lambda e: e.get("type") is None, timeout=5)
        # From now on the raw client reads nothing and answers nothing: after the 1 s interval
        # it is pinged, and 1 s later its stream ends with <connection-timeout/>.
        await asyncio.sleep(3.5)
        assert await raw.stream_error(timeout=5) == "connection-timeout"
        await watcher.expect(f"<presence from='{silent_jid}/frozen' type='unavailable'/>",
                             timeout=5)
        assert b"<ping xmlns='urn:xmpp:ping'/>" in bytes(raw.received), "it was never pinged"
    finally:
        await raw.close()
    assert watcher.is_connected()
