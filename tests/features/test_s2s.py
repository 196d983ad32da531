"""The s2s feature in process: two real `Server`s on loopback sockets in one event loop, with
fake client sessions that record what the server writes to them. Faster and more precise than
the subprocess tests in tests/integration/test_s2s.py: ordering, queueing, idle close, IQ round
trips, options and relaying rules.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from blether.app import Server
from blether.config import Config
from blether.core import events
from blether.core.modules import ModuleError
from blether.jid import JID
from features.services_kit import FakeSession, condition, xml


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def config(root: Path, host: str, bind: str, port: int, overrides: dict[str, str],
           **s2s: Any) -> Config:
    return Config.model_validate({
        "hosts": [host], "data_dir": str(root / host), "modules": ["s2s", "ping"],
        "c2s": {"bind": [bind], "port": 0, "tls_port": None},
        "module_options": {"s2s": {"bind": [bind], "port": port, "overrides": overrides,
                                   "connect_timeout": 5, **s2s}}})


class Pair:
    def __init__(self, a: Server, b: Server) -> None:
        self.a, self.b = a, b

    def login(self, server: Server, full: str) -> FakeSession:
        assert server.services is not None
        session = FakeSession(None, JID.parse(full))  # type: ignore[arg-type]
        server.services.sessions.add(session)
        return session

    def s2s(self, server: Server) -> Any:
        assert server.services is not None
        return server.services.module("s2s").manager


async def start_pair(root: Path, **s2s: Any) -> Pair:
    pa, pb = free_port("127.0.0.1"), free_port("127.0.0.2")
    a = Server(config(root, "a.test", "127.0.0.1", pa, {"b.test": f"127.0.0.2:{pb}"}, **s2s))
    b = Server(config(root, "b.test", "127.0.0.2", pb, {"a.test": f"127.0.0.1:{pa}"}, **s2s))
    await a.start()
    await b.start()
    return Pair(a, b)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    p = await start_pair(tmp_path)
    yield p
    await p.a.stop()
    await p.b.stop()


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def route(server: Server, stanza: str) -> None:
    assert server.services is not None
    await server.services.router.route(xml(stanza))


async def test_stanzas_queued_while_connecting_arrive_in_order(pair: Pair) -> None:
    bob = pair.login(pair.b, "bob@b.test/phone")
    for i in range(30):
        await route(pair.a, f"<message from='alice@a.test/pc' to='bob@b.test/phone' id='m{i}'>"
                            f"<body>{i}</body></message>")
    await wait_for(lambda: len(bob.sent) == 30)
    assert [m.attrs["id"] for m in bob.sent] == [f"m{i}" for i in range(30)]
    assert all(m.xmlns == "jabber:client" and m.find_text("body", "jabber:client")
               for m in bob.sent)
    # One outgoing stream per domain pair (RFC 6120 §10.1 ordering).
    assert list(pair.s2s(pair.a).outgoing) == [("a.test", "b.test")]


async def test_iq_round_trip_across_servers(pair: Pair) -> None:
    alice = pair.login(pair.a, "alice@a.test/pc")
    await route(pair.a, "<iq type='get' id='p1' from='alice@a.test/pc' to='b.test'>"
                        "<ping xmlns='urn:xmpp:ping'/></iq>")
    await wait_for(lambda: alice.sent)
    assert alice.sent[0].attrs == {"type": "result", "id": "p1", "to": "alice@a.test/pc",
                                   "from": "b.test"}


async def test_error_from_the_remote_server_comes_back(pair: Pair) -> None:
    alice = pair.login(pair.a, "alice@a.test/pc")
    await route(pair.a, "<iq type='get' id='q1' from='alice@a.test/pc' to='b.test'>"
                        "<query xmlns='urn:example:unknown'/></iq>")
    await wait_for(lambda: alice.sent)
    assert alice.sent[0].attrs["type"] == "error"
    assert condition(alice.sent[0]) == "service-unavailable"


async def test_idle_streams_are_closed_and_reopened_on_demand(tmp_path: Path) -> None:
    p = await start_pair(tmp_path, idle_timeout=1.0)
    try:
        bob = p.login(p.b, "bob@b.test/phone")
        await route(p.a, "<message from='alice@a.test/pc' to='bob@b.test/phone' id='1'/>")
        await wait_for(lambda: len(bob.sent) == 1)
        assert p.s2s(p.a).outgoing
        await wait_for(lambda: not p.s2s(p.a).outgoing and not p.s2s(p.b).incoming, 5)
        await route(p.a, "<message from='alice@a.test/pc' to='bob@b.test/phone' id='2'/>")
        await wait_for(lambda: len(bob.sent) == 2)
    finally:
        await p.a.stop()
        await p.b.stop()


async def test_unreachable_peer_bounces_every_queued_stanza(tmp_path: Path) -> None:
    closed = free_port("127.0.0.1")
    a = Server(config(tmp_path, "a.test", "127.0.0.1", free_port("127.0.0.1"),
                      {"gone.test": f"127.0.0.1:{closed}"}))
    await a.start()
    try:
        alice = Pair(a, a).login(a, "alice@a.test/pc")
        for i in range(3):
            await route(a, f"<message from='alice@a.test/pc' to='x@gone.test' id='g{i}'/>")
        await route(a, "<message from='alice@a.test/pc' to='x@gone.test' type='error' id='e'/>")
        await wait_for(lambda: len(alice.sent) >= 3)
        await asyncio.sleep(0.2)
        assert sorted(m.attrs["id"] for m in alice.sent) == ["g0", "g1", "g2"]  # no error
        assert {condition(m) for m in alice.sent} == {"remote-server-not-found"}
        assert all(m.attrs["from"] == "x@gone.test" for m in alice.sent)
    finally:
        await a.stop()


async def test_remote_to_remote_stanzas_are_not_relayed(pair: Pair) -> None:
    assert pair.a.services is not None
    stanza = xml("<message from='eve@c.test' to='bob@b.test'/>")
    handled = await pair.a.services.hooks.fire(
        events.ROUTE_REMOTE, events.ToRemote(stanza, JID.parse("bob@b.test"),
                                             JID.parse("eve@c.test")))
    assert handled and not pair.s2s(pair.a).outgoing


async def test_disabled_module_leaves_remote_routing_to_the_core(tmp_path: Path) -> None:
    a = Server(config(tmp_path, "a.test", "127.0.0.1", free_port("127.0.0.1"), {},
                      enabled=False))
    await a.start()
    try:
        alice = Pair(a, a).login(a, "alice@a.test/pc")
        await route(a, "<message from='alice@a.test/pc' to='x@b.test' id='n'/>")
        assert condition(alice.sent[0]) == "remote-server-not-found"
        assert a.services is not None and a.services.module("s2s").manager is None
    finally:
        await a.stop()


@pytest.mark.parametrize(("options", "message"), [
    ({"overrides": {"b.test": "host:port"}}, "bad port"),
    ({"overrides": {"b..test": "h:1"}}, "overrides"),
    ({"insecure_domains": ["not a domain"]}, "insecure_domains"),
    ({"idle_timeout": 0}, "idle_timeout"),
    ({"portt": 1}, "portt"),
])
def test_bad_options_are_refused(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    from blether.core.modules import validate_options
    from blether.features import REGISTRY

    with pytest.raises(ModuleError) as err:
        validate_options(REGISTRY["s2s"], options)
    assert message in str(err.value)


def test_options_are_prepared() -> None:
    from blether.core.modules import validate_options
    from blether.features import REGISTRY

    opts = validate_options(REGISTRY["s2s"], {"trusted_domains": ["Bank.Example"],
                                              "overrides": {"B.Test": "127.0.0.2:1"}})
    assert opts.trusted_domains == ["bank.example"]
    assert opts.overrides == {"b.test": "127.0.0.2:1"}
    assert opts.port == 5269 and opts.idle_timeout == 600 and opts.require_encryption


async def test_each_hosted_domain_presents_its_own_certificate(tmp_path: Path) -> None:
    # Virtual hosts: SNI picks the certificate of the domain asked for; ALPN says
    # xmpp-server (XEP-0368 §4).
    import ssl

    from blether.s2s.certs import S2STLS, identities, matches_domain
    from blether.transport.tls import make_self_signed

    paths = {}
    for domain in ("one.test", "two.test"):
        paths[domain] = (tmp_path / f"{domain}.crt", tmp_path / f"{domain}.key")
        make_self_signed(domain, *paths[domain])
    tls = S2STLS(paths, ca_file=None, verify=True)
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0,
                                        ssl=tls.server_context(None, False))
    port = server.sockets[0].getsockname()[1]
    try:
        for domain in ("one.test", "two.test"):
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            ctx.set_alpn_protocols(["xmpp-server"])
            _r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                  server_hostname=domain)
            der = w.get_extra_info("ssl_object").getpeercert(binary_form=True)
            assert w.get_extra_info("ssl_object").selected_alpn_protocol() == "xmpp-server"
            assert matches_domain(identities(der), domain)
            w.close()
    finally:
        server.close()


async def test_srv_records_from_a_dns_server(tmp_path: Path) -> None:
    # The real lookup path (dnspython's async resolver) against a DNS server on loopback.
    import dns.message
    import dns.rcode
    import dns.rrset

    from blether.s2s.resolver import Resolver, Target

    answers = {
        "_xmpps-server._tcp.example.test.": [],
        "_xmpp-server._tcp.example.test.": ["10 5 5269 xmpp1.example.test.",
                                            "20 5 15269 xmpp2.example.test."],
        "_xmpp-server._tcp.nothere.test.": ["0 0 0 ."],
    }

    class DNS(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            name = query.question[0].name.to_text()
            if name not in answers:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            elif answers[name]:
                reply.answer.append(dns.rrset.from_text(name, 60, "IN", "SRV", *answers[name]))
            self.transport.sendto(reply.to_wire(), addr)

    loop = asyncio.get_running_loop()
    port = free_port("127.0.0.1")
    transport, _ = await loop.create_datagram_endpoint(DNS, local_addr=("127.0.0.1", port))
    try:
        resolver = Resolver({}, [f"127.0.0.1:{port}"], timeout=3)
        assert await resolver.resolve("example.test") == [
            Target("xmpp1.example.test", 5269), Target("xmpp2.example.test", 15269)]
        assert await resolver.resolve("nothere.test") == []
        assert await resolver.resolve("plain.test") == [Target("plain.test", 5269)]
    finally:
        transport.close()
