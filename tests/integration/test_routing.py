"""Routing between real clients (RFC 6120 §8.1.2, §8.2.3, §8.4, §10; RFC 6121 §8.5;
XEP-0199 ping), written like the RFC examples.

slixmpp clients log in over direct TLS here: STARTTLS has its own tests (test_login.py and
the deterministic race test in tests/adversarial/test_starttls_race.py), and routing tests
should not fail for a negotiation problem.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from blether.xml.parser import ElementParsed, ParserLimits, StreamHeader, XMLStreamParser
from integration.harness import ServerProcess, ns
from integration.rawclient import NO_FEDERATION, RawClients, condition, running_server

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def error_condition(el: Any) -> str | None:
    err = el.find(ns("error"))
    if err is None:
        return None
    for child in err:
        if child.tag.startswith(f"{{{STANZAS}}}") and child.tag != f"{{{STANZAS}}}text":
            return str(child.tag.split("}", 1)[1])
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(Path(tmp_path_factory.mktemp("srv")), NO_FEDERATION) as proc:
        yield proc


@pytest.fixture
async def raw(server: ServerProcess) -> AsyncIterator[RawClients]:
    clients = RawClients(server)
    yield clients
    await clients.close()


async def test_chat_between_two_accounts(server: ServerProcess, connect: Any) -> None:
    alice_jid, bob_jid = server.new_users(2)
    alice = await connect(alice_jid, resource="pc", direct_tls=True)
    bob = await connect(bob_jid, resource="phone", direct_tls=True)
    await alice.send_xml(f"<message to='{bob_jid}/phone' type='chat' id='c1'>"
                         "<body>Art thou not Romeo?</body></message>")
    got = await bob.expect(f"<message from='{alice_jid}/pc' to='{bob_jid}/phone' type='chat' "
                           "id='c1'><body>Art thou not Romeo?</body></message>")
    assert got is not None
    await bob.send_xml(f"<message to='{alice_jid}/pc' type='chat' id='c2'>"
                       "<body>Neither, fair saint.</body></message>")
    await alice.expect(f"<message from='{bob_jid}/phone' type='chat' id='c2'>"
                       "<body>Neither, fair saint.</body></message>")


async def test_unknown_extensions_are_routed_unmodified(server: ServerProcess,
                                                        connect: Any) -> None:
    # RFC 6120 §8.4
    alice_jid, bob_jid = server.new_users(2)
    alice = await connect(alice_jid, resource="pc", direct_tls=True)
    bob = await connect(bob_jid, resource="phone", direct_tls=True)
    await alice.send_xml(f"<message to='{bob_jid}/phone' id='x1'><body>hi</body>"
                         "<thing xmlns='urn:example:thing' a='1'><deep>v</deep></thing>"
                         "</message>")
    got = await bob.expect("<message id='x1'/>")
    thing = got.find("{urn:example:thing}thing")
    assert thing is not None and thing.attrib == {"a": "1"}
    assert thing.findtext("{urn:example:thing}deep") == "v"


async def test_ping_the_server(server: ServerProcess, connect: Any) -> None:
    # XEP-0199 §4.2
    [jid] = server.new_users(1)
    c = await connect(jid, direct_tls=True)
    reply = await c.query("<iq to='localhost' id='s2c1' type='get'>"
                          "<ping xmlns='urn:xmpp:ping'/></iq>")
    assert reply.attrib["type"] == "result" and reply.attrib["from"] == "localhost"


async def test_ping_an_account(server: ServerProcess, connect: Any) -> None:
    # XEP-0199 §4.3: the server answers for the bare JID.
    alice_jid, bob_jid = server.new_users(2)
    alice = await connect(alice_jid, direct_tls=True)
    reply = await alice.query(f"<iq to='{bob_jid}' id='c2s1' type='get'>"
                              "<ping xmlns='urn:xmpp:ping'/></iq>")
    assert reply.attrib["type"] == "result" and reply.attrib["from"] == bob_jid


async def test_iq_to_another_clients_full_jid_is_delivered(server: ServerProcess,
                                                          connect: Any) -> None:
    alice_jid, bob_jid = server.new_users(2)
    alice = await connect(alice_jid, resource="pc", direct_tls=True)
    bob = await connect(bob_jid, resource="phone", direct_tls=True)
    await alice.send_xml(f"<iq to='{bob_jid}/phone' id='e2e1' type='get'>"
                         "<ping xmlns='urn:xmpp:ping'/></iq>")
    await bob.expect(f"<iq from='{alice_jid}/pc' id='e2e1' type='get'>"
                     "<ping xmlns='urn:xmpp:ping'/></iq>")


async def test_iq_to_unknown_full_jid(server: ServerProcess, connect: Any) -> None:
    # RFC 6121 §8.5.3.2.1: no such resource → service-unavailable
    alice_jid, bob_jid = server.new_users(2)
    alice = await connect(alice_jid, direct_tls=True)
    reply = await alice.query(f"<iq to='{bob_jid}/nowhere' id='u1' type='get'>"
                              "<ping xmlns='urn:xmpp:ping'/></iq>")
    assert reply.attrib["type"] == "error"
    assert error_condition(reply) == "service-unavailable"


async def test_iq_with_unknown_payload_to_server(server: ServerProcess, connect: Any) -> None:
    [jid] = server.new_users(1)
    c = await connect(jid, direct_tls=True)
    reply = await c.query("<iq to='localhost' id='u2' type='get'>"
                          "<query xmlns='urn:example:nothing'/></iq>")
    assert error_condition(reply) == "service-unavailable"


async def test_message_to_another_domain(server: ServerProcess, connect: Any) -> None:
    [jid] = server.new_users(1)
    c = await connect(jid, direct_tls=True)
    await c.send_xml("<message to='romeo@example.net' id='r1' type='chat'>"
                     "<body>hi</body></message>")
    reply = await c.expect("<message id='r1' type='error' from='romeo@example.net'/>")
    assert error_condition(reply) == "remote-server-not-found"


async def test_message_to_unknown_local_account(server: ServerProcess, connect: Any) -> None:
    [jid] = server.new_users(1)
    c = await connect(jid, direct_tls=True)
    await c.send_xml("<message to='nobody-here@localhost' id='n1' type='chat'>"
                     "<body>hi</body></message>")
    reply = await c.expect("<message id='n1' type='error'/>")
    assert error_condition(reply) == "service-unavailable"


async def test_spoofed_from_is_rewritten(server: ServerProcess, connect: Any) -> None:
    # RFC 6120 §8.1.2.1: the server stamps the sender's full JID.
    alice_jid, bob_jid, carol_jid = server.new_users(3)
    alice = await connect(alice_jid, resource="pc", direct_tls=True)
    bob = await connect(bob_jid, resource="phone", direct_tls=True)
    await alice.send_xml(f"<message from='{carol_jid}/evil' to='{bob_jid}/phone' id='f1'>"
                         "<body>it was carol</body></message>")
    got = await bob.expect("<message id='f1'/>")
    assert got.attrib["from"] == f"{alice_jid}/pc"


async def test_message_to_bad_jid(server: ServerProcess, raw: RawClients) -> None:
    [jid] = server.new_users(1)
    c = await raw.login(jid)
    await c.send("<message to='a@b@c' id='bad1'><body>x</body></message>")
    reply = await c.element()
    assert reply.attrs["id"] == "bad1" and condition(reply) == "jid-malformed"


async def test_error_replies_are_not_answered(server: ServerProcess, raw: RawClients) -> None:
    [jid] = server.new_users(1)
    c = await raw.login(jid)
    await c.send("<message to='romeo@example.net' type='error' id='e1'/>"
                 "<iq to='localhost' type='result' id='e2'/>"
                 "<iq to='localhost' type='error' id='e3'/>")
    await c.silence(0.5)


async def test_recipient_reparses_exactly_what_was_sent(server: ServerProcess,
                                                        raw: RawClients) -> None:
    # Escaped markup in a body stays text (no stanza smuggling, RFC 6120 §11.3).
    alice_jid, bob_jid = server.new_users(2)
    alice = await raw.login(alice_jid, resource="pc")
    bob = await raw.login(bob_jid, resource="phone")
    before = len(bob.received)
    body = "</body></message><message to='x@localhost'><body>smuggled"
    await alice.send(f"<message to='{bob_jid}/phone' id='s1'><body>"
                     "&lt;/body&gt;&lt;/message&gt;&lt;message to=&apos;x@localhost&apos;&gt;"
                     "&lt;body&gt;smuggled</body></message>")
    got = await bob.element()
    assert got.find_text("body") == body
    # Re-parse the raw bytes Bob received: one stanza, equal to what Alice sent.
    p = XMLStreamParser(ParserLimits(1 << 20, 100, 100, 10_000, 4096))
    [h] = p.feed(b"<stream:stream xmlns='jabber:client' "
                 b"xmlns:stream='http://etherx.jabber.org/streams'>")
    assert isinstance(h, StreamHeader)
    events = p.feed(bytes(bob.received[before:]))
    assert len(events) == 1 and isinstance(events[0], ElementParsed)
    assert events[0].element.find_text("body") == body


async def test_stream_language_is_added_to_stanzas_without_one(server: ServerProcess,
                                                               raw: RawClients) -> None:
    alice_jid, bob_jid = server.new_users(2)
    alice = await raw.login(alice_jid, resource="pc", lang="de")
    bob = await raw.login(bob_jid, resource="phone", lang="en")
    await alice.send(f"<message to='{bob_jid}/phone' id='l1'><body>Hallo</body></message>")
    got = await bob.element()
    assert got.attrs.get("xml:lang") == "de"


async def test_existing_language_is_kept(server: ServerProcess, raw: RawClients) -> None:
    # RFC 6120 §8.1.5: the server MUST NOT modify an xml:lang the stanza carries.
    alice_jid, bob_jid = server.new_users(2)
    alice = await raw.login(alice_jid, resource="pc", lang="de")
    bob = await raw.login(bob_jid, resource="phone")
    await alice.send(f"<message to='{bob_jid}/phone' id='l2' xml:lang='fr'>"
                     "<body>Bonjour</body></message>")
    got = await bob.element()
    assert got.attrs.get("xml:lang") == "fr"
