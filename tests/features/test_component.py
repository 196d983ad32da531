"""The component feature in process: a real `Server` with the component listener on a loopback
port, raw XEP-0114 components over TCP, and fake client sessions that record what the server
writes to them. The subprocess tests with slixmpp components are in
tests/integration/test_components.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from blether.app import Server
from blether.config import Config
from blether.core import events
from blether.core.modules import ModuleError, validate_options
from blether.features import REGISTRY
from blether.jid import JID
from blether.xml.element import Element
from features.services_kit import FakeSession, condition, xml
from integration.harness import RawComponent

DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
SECRET = "s3cret"


def config(root: Path, modules: tuple[str, ...] = ("component", "disco", "ping"),
           limits: dict[str, Any] | None = None, **options: Any) -> Config:
    module_options: dict[str, Any] = {"component": {
        "port": 0, "components": {"echo.localhost": SECRET, "gw.example": "other"}, **options}}
    if "s2s" in modules:
        # A free port, never the real 5269; no peer is ever contacted in these tests.
        module_options["s2s"] = {"bind": ["127.0.0.1"], "port": 0}
    return Config.model_validate({
        "hosts": ["localhost"], "data_dir": str(root), "modules": list(modules),
        "c2s": {"bind": ["127.0.0.1"], "port": 0, "tls_port": None},
        "limits": limits or {}, "module_options": module_options})


class Env:
    def __init__(self, server: Server) -> None:
        self.server = server
        assert server.services is not None
        self.s = server.services
        self.module: Any = self.s.module("component")
        self.components: list[RawComponent] = []

    @property
    def port(self) -> int:
        return int(self.module.listener.addresses[0][1])

    async def component(self, domain: str = "echo.localhost", secret: str = SECRET
                        ) -> RawComponent:
        """A connected, authenticated component."""
        c = await self.connect()
        await c.login(domain, secret)
        return c

    async def connect(self) -> RawComponent:
        c = await RawComponent.connect(self.port)
        self.components.append(c)
        return c

    def login(self, full: str) -> FakeSession:
        session = FakeSession(None, JID.parse(full))  # type: ignore[arg-type]
        session.available = True
        self.s.sessions.add(session)
        return session

    async def send(self, session: FakeSession, stanza: str) -> None:
        await self.s.router.from_session(session, xml(stanza))


async def start(root: Path, **kw: Any) -> Env:
    server = Server(config(root, **kw))
    await server.start()
    return Env(server)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    e = await start(tmp_path)
    yield e
    for c in e.components:
        await c.close()
    await e.server.stop()


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def is_message(el: Any) -> bool:
    return getattr(el, "name", None) == "message"


# -- the handshake (XEP-0114 §3) ---------------------------------------------------------------

async def test_handshake_success(env: Env) -> None:
    c = await env.connect()
    head = await c.open("echo.localhost")
    assert head.content_ns == "jabber:component:accept"
    assert head.attrs["from"] == "echo.localhost" and head.attrs["id"]
    await c.handshake(SECRET)
    reply = await c.next()
    assert isinstance(reply, Element) and reply.name == "handshake" and not reply.children
    assert reply.xmlns == "jabber:component:accept"
    # No stream features came between the header and the handshake (XEP-0114 has none).
    assert b"features" not in c.received
    assert set(env.module.connected) == {"echo.localhost"}


async def test_wrong_secret_is_not_authorized(env: Env) -> None:
    c = await env.connect()
    await c.open("echo.localhost")
    await c.handshake("wrong")
    assert await c.stream_error() == "not-authorized"
    assert env.module.connected == {}


async def test_the_secret_of_another_component_does_not_open_this_one(env: Env) -> None:
    c = await env.connect()
    await c.open("echo.localhost")
    await c.handshake("other")                     # gw.example's secret
    assert await c.stream_error() == "not-authorized"


async def test_an_unknown_component_is_host_unknown(env: Env) -> None:
    c = await env.connect()
    await c.send("<stream:stream xmlns='jabber:component:accept' "
                 "xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>")
    assert await c.stream_error() == "host-unknown"


async def test_a_stanza_before_the_handshake_is_not_authorized(env: Env) -> None:
    c = await env.connect()
    await c.open("echo.localhost")
    await c.send("<message from='echo.localhost' to='alice@localhost'><body>x</body></message>")
    assert await c.stream_error() == "not-authorized"


async def test_no_handshake_in_time_is_connection_timeout(tmp_path: Path) -> None:
    e = await start(tmp_path, limits={"negotiation_timeout": 0.5})
    try:
        c = await e.connect()
        await c.open("echo.localhost")
        assert await c.stream_error(timeout=5) == "connection-timeout"
    finally:
        await e.server.stop()


async def test_a_second_connection_is_refused_with_conflict(env: Env) -> None:
    first = await env.component()
    second = await env.connect()
    await second.open("echo.localhost")
    await second.handshake(SECRET)
    assert await second.stream_error() == "conflict"
    # Prosody's default (kick_new): the first connection keeps the domain.
    alice = env.login("alice@localhost/pc")
    await env.send(alice, "<message to='echo.localhost' id='m1'><body>hi</body></message>")
    msg = await first.stanza(is_message)
    assert msg.attrs["id"] == "m1"


async def test_another_component_may_connect_alongside(env: Env) -> None:
    await env.component()
    await env.component("gw.example", "other")
    assert set(env.module.connected) == {"echo.localhost", "gw.example"}


# -- routing to the component ------------------------------------------------------------------

@pytest.mark.parametrize("to", ["echo.localhost", "user%example.org@echo.localhost",
                                "someone@echo.localhost/res"])
async def test_stanzas_for_the_domain_and_jids_at_it_reach_the_component(env: Env,
                                                                         to: str) -> None:
    c = await env.component()
    alice = env.login("alice@localhost/pc")
    await env.send(alice, f"<message to='{to}' type='chat' id='m1'><body>hi</body></message>")
    msg = await c.stanza(is_message)
    expected = {"to": to, "type": "chat", "id": "m1", "from": "alice@localhost/pc"}
    assert expected.items() <= msg.attrs.items()
    # Written unqualified: on the wire it is in the stream's jabber:component:accept.
    assert msg.xmlns == "jabber:component:accept"
    assert msg.find_text("body", "jabber:component:accept") == "hi"
    assert b"jabber:client" not in c.received


async def test_a_subdomain_of_a_component_is_not_routed_to_it(env: Env) -> None:
    c = await env.component()
    alice = env.login("alice@localhost/pc")
    await env.send(alice, "<message to='sub.echo.localhost' id='m1'><body>hi</body></message>")
    assert condition(alice.sent[0]) == "remote-server-not-found"
    await env.send(alice, "<message to='echo.localhost' id='m2'/>")
    assert (await c.stanza(is_message)).attrs["id"] == "m2"   # m1 never came


async def test_a_component_that_is_not_connected_is_answered_try_later(env: Env) -> None:
    alice = env.login("alice@localhost/pc")
    await env.send(alice, "<message to='user@echo.localhost' id='m1'><body>hi</body></message>")
    (err,) = alice.sent
    assert err.attrs["type"] == "error" and err.attrs["from"] == "user@echo.localhost"
    assert condition(err) == "remote-server-timeout"
    assert err.find("error").attrs["type"] == "wait"
    # Never an error for an error, never an answer to a result (RFC 6120 §8.3.1).
    await env.send(alice, "<message to='echo.localhost' type='error' id='e1'/>")
    await env.send(alice, "<iq to='echo.localhost' type='result' id='r1'/>")
    assert len(alice.sent) == 1


async def test_the_component_wins_over_federation(tmp_path: Path) -> None:
    e = await start(tmp_path, modules=("component", "s2s"))
    try:
        s2s_manager = e.s.module("s2s").manager
        assert s2s_manager is not None and s2s_manager.addresses[0][1] != 5269
        s2s_hooks = [h for h in e.s.hooks._handlers[events.ROUTE_REMOTE]
                     if h.owner is e.s.module("s2s")]
        assert s2s_hooks, "the s2s module claims ROUTE_REMOTE too"
        c = await e.component()
        alice = e.login("alice@localhost/pc")
        await e.send(alice, "<message to='echo.localhost' id='m1'/>")
        assert (await c.stanza(is_message)).attrs["id"] == "m1"
        assert not s2s_manager.outgoing
        # Not a component domain: left to federation.
        handled = await e.module.to_component(events.ToRemote(
            xml("<message to='x@remote.example'/>"), JID.parse("x@remote.example"),
            JID.parse("alice@localhost/pc")))
        assert handled is False
    finally:
        await e.server.stop()


# -- stanzas from the component ------------------------------------------------------------------

async def test_a_message_from_the_component_reaches_the_user(env: Env) -> None:
    c = await env.component()
    alice = env.login("alice@localhost/pc")
    await c.send("<message from='carol%example.org@echo.localhost' to='alice@localhost/pc' "
                 "type='chat' id='c1'><body>hello</body></message>")
    await wait_for(lambda: alice.sent)
    (msg,) = alice.sent
    assert msg.xmlns == "jabber:client"
    assert msg.attrs == {"from": "carol%example.org@echo.localhost", "to": "alice@localhost/pc",
                         "type": "chat", "id": "c1"}
    assert msg.find_text("body", "jabber:client") == "hello"


async def test_an_iq_to_the_server_is_answered_to_the_component(env: Env) -> None:
    c = await env.component()
    await c.send("<iq type='get' id='p1' from='echo.localhost' to='localhost'>"
                 "<ping xmlns='urn:xmpp:ping'/></iq>")
    reply = await c.stanza(lambda e: getattr(e, "name", None) == "iq")
    assert reply.attrs == {"type": "result", "id": "p1", "to": "echo.localhost",
                           "from": "localhost"}


async def test_without_from_the_component_domain_is_stamped(env: Env) -> None:
    c = await env.component()
    alice = env.login("alice@localhost/pc")
    await c.send("<message to='alice@localhost/pc' id='c1'/>")
    await wait_for(lambda: alice.sent)
    assert alice.sent[0].attrs["from"] == "echo.localhost"


@pytest.mark.parametrize("frm", ["evil@localhost", "localhost", "x@sub.echo.localhost",
                                 "x@gw.example"])
async def test_a_forged_from_is_invalid_from(env: Env, frm: str) -> None:
    c = await env.component()
    alice = env.login("alice@localhost/pc")
    await c.send(f"<message from='{frm}' to='alice@localhost/pc'><body>x</body></message>")
    assert await c.stream_error() == "invalid-from"
    assert alice.sent == []
    # The domain is free again for a (well-behaved) new connection.
    await wait_for(lambda: not env.module.connected)
    await env.component()


async def test_a_stanza_without_to_is_improper_addressing(env: Env) -> None:
    c = await env.component()
    await c.send("<message from='echo.localhost'><body>x</body></message>")
    assert await c.stream_error() == "improper-addressing"


async def test_a_malformed_to_is_bounced_to_the_component(env: Env) -> None:
    c = await env.component()
    await c.send("<message from='bot@echo.localhost' to='a@b@c' id='bad'/>")
    err = await c.stanza(is_message)
    assert err.attrs["type"] == "error" and err.attrs["to"] == "bot@echo.localhost"
    assert err.attrs["id"] == "bad" and err.attrs["from"] == "localhost"
    error = err.find("error", "jabber:component:accept")
    assert error is not None and error.attrs["type"] == "modify"
    assert error.find("jid-malformed", "urn:ietf:params:xml:ns:xmpp-stanzas") is not None


async def test_stream_elements_other_than_stanzas_are_refused(env: Env) -> None:
    c = await env.component()
    await c.send("<handshake/>")
    assert await c.stream_error() == "unsupported-stanza-type"


async def test_a_stanza_over_the_size_limit_is_a_policy_violation(tmp_path: Path) -> None:
    e = await start(tmp_path, stanza_bytes=10000)
    try:
        c = await e.component()
        alice = e.login("alice@localhost/pc")
        await c.send(f"<message from='echo.localhost' to='alice@localhost/pc'><body>"
                     f"{'x' * 9000}</body></message>")
        await wait_for(lambda: alice.sent)           # under the limit: delivered
        await c.send(f"<message from='echo.localhost' to='alice@localhost/pc'><body>"
                     f"{'x' * 11000}</body></message>")
        assert await c.stream_error() == "policy-violation"
        assert len(alice.sent) == 1
    finally:
        await e.server.stop()


async def test_stanzas_are_routed_in_the_order_sent(env: Env) -> None:
    c = await env.component()
    alice = env.login("alice@localhost/pc")
    await c.send("".join(f"<message from='echo.localhost' to='alice@localhost/pc' id='{i}'/>"
                         for i in range(50)))
    await wait_for(lambda: len(alice.sent) == 50)
    assert [m.attrs["id"] for m in alice.sent] == [str(i) for i in range(50)]


# -- discovery, liveness, shutdown ---------------------------------------------------------------

async def disco_items(env: Env) -> list[str]:
    alice = env.login("alice@localhost/pc")
    await env.send(alice, f"<iq type='get' id='d' to='localhost'><query xmlns='{DISCO_ITEMS}'/>"
                          "</iq>")
    (reply,) = alice.take()
    return [i.attrs["jid"] for i in reply.find("query", DISCO_ITEMS).find_all("item")]


async def test_the_component_is_a_disco_item_of_the_server_while_connected(env: Env) -> None:
    assert "echo.localhost" not in await disco_items(env)
    c = await env.component()
    assert "echo.localhost" in await disco_items(env)
    await c.send("</stream:stream>")
    assert await c.next() is not None            # the server's closing tag
    await wait_for(lambda: not env.module.connected)
    assert "echo.localhost" not in await disco_items(env)


async def test_after_the_component_leaves_stanzas_are_answered_try_later(env: Env) -> None:
    c = await env.component()
    await c.close()
    await wait_for(lambda: not env.module.connected)
    alice = env.login("alice@localhost/pc")
    await env.send(alice, "<message to='echo.localhost' id='m1'><body>hi</body></message>")
    assert condition(alice.sent[0]) == "remote-server-timeout"


async def test_a_silent_component_gets_whitespace_keepalives(tmp_path: Path) -> None:
    e = await start(tmp_path, keepalive_interval=0.2)
    try:
        c = await e.component()
        before = len(c.received)
        await asyncio.sleep(0.7)
        with pytest.raises(AssertionError):
            await c.next(timeout=0.1)                 # whitespace only: no element
        assert bytes(c.received[before:]).strip() == b"" and len(c.received) > before
    finally:
        await e.server.stop()


async def test_server_shutdown_is_system_shutdown(tmp_path: Path) -> None:
    e = await start(tmp_path)
    c = await e.component()
    stopping = asyncio.ensure_future(e.server.stop())
    assert await c.stream_error() == "system-shutdown"
    await stopping


# -- configuration -------------------------------------------------------------------------------

async def test_no_components_no_listener(tmp_path: Path) -> None:
    server = Server(Config.model_validate({
        "hosts": ["localhost"], "data_dir": str(tmp_path), "modules": ["component"],
        "c2s": {"bind": ["127.0.0.1"], "port": 0, "tls_port": None}}))
    await server.start()
    try:
        assert server.services is not None
        assert server.services.module("component").listener is None
    finally:
        await server.stop()


async def test_a_hosted_domain_cannot_be_a_component(tmp_path: Path) -> None:
    server = Server(config(tmp_path, components={"localhost": "x"}))
    with pytest.raises(ModuleError, match="hosted domain"):
        await server.start()
    assert server.services is not None
    await server.services.storage.close()


def test_options_defaults_and_preparation() -> None:
    opts = validate_options(REGISTRY["component"], {"components": {"Gateway.Example": "s"}})
    assert opts.components == {"gateway.example": "s"}
    assert (opts.bind, opts.port, opts.stanza_bytes) == ("127.0.0.1", 5347, 524288)
    assert REGISTRY["component"].default_enabled


@pytest.mark.parametrize(("options", "message"), [
    ({"components": {"not a domain": "s"}}, "not a domain"),
    ({"components": {"gw.example": ""}}, "empty"),
    ({"components": {"gw.example": "a", "GW.example": "b"}}, "twice"),
    ({"stanza_bytes": 100}, "stanza_bytes"),
    ({"secret": "x"}, "secret"),
])
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ModuleError, match=message):
        validate_options(REGISTRY["component"], options)
