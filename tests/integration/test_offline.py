"""XEP-0160 offline messages against the real server: stored while the account has no
available resource, delivered with a XEP-0203 <delay/> when it sends non-negative initial
presence (RFC 6121 §4.2), in order, exactly once."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.harness import Client, ServerProcess, ns

DELAY = "urn:xmpp:delay"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")   # XEP-0082, UTC


def is_message(el: ET.Element) -> bool:
    return el.tag == ns("message") and el.find(ns("body")) is not None


async def bodies(client: Client, count: int, timeout: float = 5.0) -> list[ET.Element]:
    return [await client.expect(where=is_message, timeout=timeout) for _ in range(count)]


async def send_messages(sender: Client, to: str, texts: list[str], mtype: str = "") -> None:
    type_attr = f" type='{mtype}'" if mtype else ""
    for i, text in enumerate(texts):
        await sender.send_xml(f"<message to='{to}' id='m{i}-{text}'{type_attr}>"
                              f"<body>{text}</body></message>")
    # Ping the server: once it answers, it has processed (stored) everything sent before.
    await sender.query("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/>"
                       "</iq>")


async def test_disco_advertises_msgoffline(server: ServerProcess, connect: Any) -> None:
    [alice] = server.new_users(1)
    a = await connect(alice)
    reply = await a.query("<iq type='get' id='d1' to='localhost'>"
                          "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    features = {f.get("var") for f in reply.iter(ns("feature",
                                                     "http://jabber.org/protocol/disco#info"))}
    assert "msgoffline" in features


async def test_stored_then_delivered_after_initial_presence_in_order_once(
        server: ServerProcess, connect: Any) -> None:
    alice, bob = server.new_users(2)
    a = await connect(alice)
    await send_messages(a, bob, ["first", "second", "third"])
    b = await connect(bob)
    # Bound but not yet available: nothing is delivered before initial presence.
    await b.expect_nothing(where=is_message, wait=1.0)
    await b.send_xml("<presence/>")
    got = await bodies(b, 3)
    assert [m.findtext(ns("body")) for m in got] == ["first", "second", "third"]
    for m in got:
        assert m.get("to") == bob                     # RFC 6121 §8.5.2.1.1: not rewritten
        assert m.get("from") == str(a.boundjid)
        delay = m.find(ns("delay", DELAY))
        assert delay is not None, ET.tostring(m, encoding="unicode")
        assert delay.get("from") == "localhost"
        assert STAMP.match(delay.get("stamp", "")), delay.get("stamp")
    await b.expect_nothing(where=is_message)
    await b.close()
    # Exactly once: the next login gets nothing.
    again = await connect(bob, resource="again")
    await again.send_xml("<presence/>")
    await again.expect_nothing(where=is_message, wait=1.5)


async def test_negative_priority_does_not_trigger_delivery(
        server: ServerProcess, connect: Any) -> None:
    alice, bob = server.new_users(2)
    a = await connect(alice)
    await send_messages(a, bob, ["kept"])
    b = await connect(bob)
    await b.send_xml("<presence><priority>-1</priority></presence>")
    await b.expect(f"<presence from='{b.boundjid}'/>")     # the broadcast echo: processed
    await b.expect_nothing(where=is_message, wait=1.0)
    # Raising the priority is the "non-negative available presence" of XEP-0160 §2.
    await b.send_xml("<presence><priority>2</priority></presence>")
    [m] = await bodies(b, 1)
    assert m.findtext(ns("body")) == "kept" and m.find(ns("delay", DELAY)) is not None


async def test_headline_groupchat_error_are_not_stored(
        server: ServerProcess, connect: Any) -> None:
    alice, bob = server.new_users(2)
    a = await connect(alice)
    for mtype in ("headline", "groupchat", "error"):
        await a.send_xml(f"<message to='{bob}' type='{mtype}' id='{mtype}'>"
                         f"<body>{mtype}</body></message>")
    await send_messages(a, bob, ["normal"])
    await send_messages(a, bob, ["chat"], mtype="chat")
    # groupchat to a bare JID is refused (RFC 6121 §8.5.2.2.1); the others get no error.
    err = await a.expect("<message type='error' id='groupchat'/>")
    assert err.find(f"{ns('error')}/{{{STANZAS}}}service-unavailable") is not None
    await a.expect_nothing("<message type='error'/>")
    b = await connect(bob)
    await b.send_xml("<presence/>")
    got = await bodies(b, 2)
    assert [m.findtext(ns("body")) for m in got] == ["normal", "chat"]
    await b.expect_nothing(where=is_message)


async def test_chat_state_only_message_is_not_stored(
        server: ServerProcess, connect: Any) -> None:
    alice, bob = server.new_users(2)
    a = await connect(alice)
    await a.send_xml(f"<message to='{bob}' type='chat' id='cs'>"
                     "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
    await send_messages(a, bob, ["real"], mtype="chat")
    b = await connect(bob)
    await b.send_xml("<presence/>")
    got = await b.expect(where=lambda e: e.tag == ns("message"))
    assert got.findtext(ns("body")) == "real"
    await b.expect_nothing(where=lambda e: e.tag == ns("message"))


# -- quota: a server of its own, configured through its TOML file ------------------------------

@pytest.fixture(scope="module")
def quota_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(Path(tmp_path_factory.mktemp("blether-quota")),
                         config_text="[module_options.offline]\nquota = 3\n")
    proc.start()
    yield proc
    code = proc.stop()
    assert "Traceback" not in proc.log(), proc.log()[-5000:]
    assert code == 0


@pytest.fixture
async def quota_connect(quota_server: ServerProcess) -> AsyncIterator[Any]:
    clients: list[Client] = []

    async def _connect(jid: str) -> Client:
        client = Client(jid, "secret")
        clients.append(client)
        assert await client.login(quota_server), f"{jid} could not log in"
        return client

    yield _connect
    for c in clients:
        await c.close()


async def test_quota_full_gets_service_unavailable(
        quota_server: ServerProcess, quota_connect: Any) -> None:
    alice, bob = quota_server.new_users(2)
    a = await quota_connect(alice)
    await send_messages(a, bob, ["1", "2", "3", "4"])
    err = await a.expect("<message type='error' id='m3-4'/>")
    error = err.find(ns("error"))
    assert error is not None and error.get("type") == "cancel"
    assert error.find(f"{{{STANZAS}}}service-unavailable") is not None
    await a.expect_nothing("<message type='error'/>")
    b = await quota_connect(bob)
    await b.send_xml("<presence/>")
    got = await bodies(b, 3)
    assert [m.findtext(ns("body")) for m in got] == ["1", "2", "3"]
    await b.expect_nothing(where=is_message)
    # Delivered messages free the queue again.
    await send_messages(a, f"{bob}/nowhere", ["5"], mtype="chat")
    await b.expect("<message type='chat'><body>5</body></message>")
