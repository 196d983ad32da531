"""Federation between real Blether servers (RFC 6120 s2s, XEP-0220 dialback, XEP-0178 SASL
EXTERNAL, XEP-0368 direct TLS) with slixmpp clients on each side.

Servers: A serves a.test and a2.test on 127.0.0.1, B serves b.test on 127.0.0.2; each finds the
other through the static override table. A scripted remote server (evil.test) connects with raw
sockets to check what a receiving server must refuse.

Clients log in with XEP-0368 direct TLS: the c2s STARTTLS path has a handshake race under uvloop
(reported to the lead) that would make these tests flaky for reasons unrelated to s2s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from blether.xml.element import Element
from blether.xml.parser import StreamFooter, StreamHeader
from integration.harness import (
    CertificateAuthority,
    Client,
    DialbackAuthority,
    ServerProcess,
    expect_push,
    free_port_on,
    full,
    go_online,
)
from integration.rawclient import RawClient, client_context, header

S2S_HEADER_EXTRA = "xmlns:db='jabber:server:dialback'"
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def _config(hosts: list[str], bind: str, port: int, overrides: dict[str, str],
            extra: str = "", tls: str = "") -> str:
    table = ", ".join(f'"{d}" = "{t}"' for d, t in overrides.items())
    return (f"hosts = {hosts!r}\n".replace("'", '"') + tls +
            f"[module_options.s2s]\nbind = [\"{bind}\"]\nport = {port}\nconnect_timeout = 4\n"
            f"overrides = {{ {table} }}\n{extra}")


class Net:
    """Two federated servers and the addresses of the scripted peers."""

    def __init__(self, root: Path) -> None:
        self.pa, self.pb = free_port_on("127.0.0.1"), free_port_on("127.0.0.2")
        self.down = free_port_on("127.0.0.1")           # nothing listens there
        self.slow = free_port_on("127.0.0.1")            # accepts, never speaks
        self.evil = DialbackAuthority("evil.test", "127.0.0.1", root)
        self.a = ServerProcess(root / "a", ("a.test", "a2.test"), _config(
            ["a.test", "a2.test"], "127.0.0.1", self.pa, {
                "b.test": f"127.0.0.2:{self.pb}", "down.test": f"127.0.0.1:{self.down}",
                "slow.test": f"127.0.0.1:{self.slow}",
                "evil.test": f"127.0.0.1:{self.evil.port}"}), bind="127.0.0.1")
        self.b = ServerProcess(root / "b", ("b.test",), _config(
            ["b.test"], "127.0.0.2", self.pb, {"a.test": f"127.0.0.1:{self.pa}",
                                                "a2.test": f"127.0.0.1:{self.pa}"}),
            bind="127.0.0.2")


def _stop_and_check(server: ServerProcess) -> None:
    code = server.stop()
    log = server.log()
    assert "Traceback" not in log, f"the server logged a traceback:\n{log[-5000:]}"
    assert code == 0, f"server exited with {code}:\n{log[-3000:]}"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    n = Net(Path(tmp_path_factory.mktemp("s2s")))
    n.a.start()
    n.b.start()
    yield n
    _stop_and_check(n.a)
    _stop_and_check(n.b)


@pytest.fixture
async def login() -> AsyncIterator[Any]:
    clients: list[Client] = []

    async def _login(server: ServerProcess, jid: str, online: bool = True) -> Client:
        client = Client(jid)
        clients.append(client)
        assert await client.login(server, direct_tls=True), f"{jid} could not log in"
        if online:
            await go_online(client)
        return client

    yield _login
    for c in clients:
        await c.close()


def _error_condition(el: Any) -> str | None:
    err = el.find("{jabber:client}error")
    if err is None:
        return None
    return next((c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{STANZA_ERRORS}}}")
                 and not c.tag.endswith("}text")), None)


# -- messages, subscriptions, presence -----------------------------------------------------

async def test_chat_messages_both_ways(net: Net, login: Any) -> None:
    (a_jid,), (b_jid,) = net.a.new_users(1), net.b.new_users(1)
    alice, bob = await login(net.a, a_jid), await login(net.b, b_jid)
    await alice.send_xml(f"<message to='{b_jid}' type='chat' id='m1'><body>Art thou not Romeo"
                         "</body></message>")
    await bob.expect(f"<message from='{full(alice)}' to='{b_jid}' type='chat' id='m1'>"
                     "<body>Art thou not Romeo</body></message>")
    await bob.send_xml(f"<message to='{full(alice)}' type='chat' id='m2'><body>Neither, fair "
                       "saint</body></message>")
    await alice.expect(f"<message from='{full(bob)}' type='chat' id='m2'><body>Neither, fair "
                       "saint</body></message>")


async def test_mutual_subscription_and_presence_across_servers(net: Net, login: Any) -> None:
    (a_jid,), (b_jid,) = net.a.new_users(1), net.b.new_users(1)
    alice, bob = await login(net.a, a_jid), await login(net.b, b_jid)
    # RFC 6121 §3.1: request, approval, roster pushes on both servers.
    await alice.send_xml(f"<presence to='{b_jid}' type='subscribe'/>")
    await expect_push(alice, b_jid, subscription="none", ask="subscribe")
    await bob.expect(f"<presence from='{a_jid}' type='subscribe'/>")
    await bob.send_xml(f"<presence to='{a_jid}' type='subscribed'/>")
    await expect_push(bob, a_jid, subscription="from")
    await alice.expect(f"<presence from='{b_jid}' type='subscribed'/>")
    await expect_push(alice, b_jid, subscription="to", ask=None)
    await alice.expect(f"<presence from='{full(bob)}'/>")     # §3.1.5: current presence
    # And the other way round: both ends reach 'both'.
    await bob.send_xml(f"<presence to='{a_jid}' type='subscribe'/>")
    await alice.expect(f"<presence from='{b_jid}' type='subscribe'/>")
    await alice.send_xml(f"<presence to='{b_jid}' type='subscribed'/>")
    await expect_push(alice, b_jid, subscription="both")
    await expect_push(bob, a_jid, subscription="both", timeout=10)
    await bob.expect(f"<presence from='{full(alice)}'/>")
    # §4.4: a presence change reaches the contact on the other server.
    await bob.send_xml("<presence><show>away</show></presence>")
    await alice.expect(f"<presence from='{full(bob)}'><show>away</show></presence>")
    # §4.3: a new resource of alice probes bob's server and gets his presence.
    alice2 = await login(net.a, f"{a_jid}/second", online=False)
    await alice2.send_xml("<presence/>")
    await alice2.expect(f"<presence from='{full(bob)}'><show>away</show></presence>")
    # §4.5: unavailable when bob leaves.
    await bob.close()
    await alice.expect(f"<presence from='{full(bob)}' type='unavailable'/>")


async def test_message_to_offline_remote_user_is_stored_on_its_server(net: Net,
                                                                       login: Any) -> None:
    (a_jid,), (b_jid,) = net.a.new_users(1), net.b.new_users(1)
    alice = await login(net.a, a_jid)
    await alice.send_xml(f"<message to='{b_jid}' type='chat' id='off1'><body>call me"
                         "</body></message>")
    await alice.expect_nothing(where=lambda e: e.attrib.get("id") == "off1", wait=1.0)
    bob = await login(net.b, b_jid, online=False)
    await bob.send_xml("<presence/>")
    await bob.expect(f"<message from='{full(alice)}' id='off1'><body>call me</body>"
                     "<delay xmlns='urn:xmpp:delay' from='b.test'/></message>")


async def test_hosted_domains_talk_locally(net: Net, login: Any) -> None:
    (a_jid,) = net.a.new_users(1)
    (d_jid,) = net.a.new_users(1, domain="a2.test")
    alice, dave = await login(net.a, a_jid), await login(net.a, d_jid)
    await alice.send_xml(f"<message to='{d_jid}' type='chat' id='loc'><body>next door"
                         "</body></message>")
    await dave.expect(f"<message from='{full(alice)}' id='loc'><body>next door</body></message>")
    assert "→a2.test" not in net.a.log() and "a2.test→" not in net.a.log()


# -- failures bounce -----------------------------------------------------------------------

async def test_peer_down_gives_remote_server_not_found(net: Net, login: Any) -> None:
    (a_jid,) = net.a.new_users(1)
    alice = await login(net.a, a_jid)
    await alice.send_xml("<message to='romeo@down.test' type='chat' id='d1'><body>hello?"
                         "</body></message>")
    err = await alice.expect("<message from='romeo@down.test' type='error' id='d1'/>",
                             timeout=10)
    assert _error_condition(err) == "remote-server-not-found"
    # A subscription request is not lost silently either: it comes back as an error.
    await alice.send_xml("<presence to='romeo@down.test' type='subscribe'/>")
    err = await alice.expect("<presence from='romeo@down.test' type='error'/>", timeout=10)
    assert _error_condition(err) == "remote-server-not-found"


async def test_silent_peer_gives_remote_server_timeout(net: Net, login: Any) -> None:
    held: list[asyncio.StreamWriter] = []

    async def mute(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)

    listener = await asyncio.start_server(mute, "127.0.0.1", net.slow)
    try:
        (a_jid,) = net.a.new_users(1)
        alice = await login(net.a, a_jid)
        await alice.send_xml("<message to='juliet@slow.test' type='chat' id='t1'><body>hi"
                             "</body></message>")
        err = await alice.expect("<message from='juliet@slow.test' type='error' id='t1'/>",
                                 timeout=15)
        assert _error_condition(err) == "remote-server-timeout"
    finally:
        listener.close()
        for w in held:
            w.close()


# -- what a receiving server refuses (raw s2s stream from a scripted peer) -----------------

async def evil_stream(net: Net, key: str | None = None) -> tuple[RawClient, Element]:
    """evil.test opens a stream to a.test, secures it and asks for dialback; returns the
    stream and the receiving server's <db:result/> verdict."""
    c = await RawClient.connect("127.0.0.1", net.pa, "a.test")
    s2s = header("a.test", xmlns="jabber:server", extra=f"from='evil.test' {S2S_HEADER_EXTRA}")
    features = await c.open_stream(s2s)
    assert features.find("starttls", TLS_NS) is not None
    await c.send(f"<starttls xmlns='{TLS_NS}'/>")
    assert (await c.element()).name == "proceed"
    ctx = client_context()
    await c.writer.start_tls(ctx, server_hostname="a.test")
    features = await c.open_stream(s2s)
    assert features.find("dialback", "urn:xmpp:features:dialback") is not None
    assert isinstance(c.stream_header, StreamHeader)
    stream_id = c.stream_header.attrs["id"]
    await c.send(f"<db:result from='evil.test' to='a.test'>"
                 f"{key or net.evil.key_for('a.test', stream_id)}</db:result>")
    verdict = await c.stanza(lambda e: e.name == "result", timeout=10)
    return c, verdict


@pytest.fixture
async def evil(net: Net) -> AsyncIterator[DialbackAuthority]:
    await net.evil.start()
    yield net.evil
    await net.evil.stop()


async def test_dialback_then_forged_from_is_invalid_from(net: Net, evil: DialbackAuthority,
                                                         login: Any) -> None:
    (a_jid,) = net.a.new_users(1)
    alice = await login(net.a, a_jid)
    c, verdict = await evil_stream(net)
    assert verdict.attrs == {"from": "a.test", "to": "evil.test", "type": "valid"}
    assert evil.verified and evil.verified[-1][1] == "valid"     # a.test dialed back
    await c.send(f"<message from='mallory@evil.test' to='{a_jid}' type='chat' id='ok'>"
                 "<body>legit</body></message>")
    await alice.expect("<message from='mallory@evil.test' id='ok'><body>legit</body></message>")
    await c.send(f"<message from='romeo@b.test' to='{a_jid}' type='chat' id='forged'>"
                 "<body>forged</body></message>")
    assert await c.stream_error() == "invalid-from"
    await alice.expect_nothing(where=lambda e: e.attrib.get("id") == "forged")


async def test_stanza_for_a_domain_not_hosted_is_host_unknown(net: Net,
                                                              evil: DialbackAuthority) -> None:
    c, verdict = await evil_stream(net)
    assert verdict.attrs["type"] == "valid"
    await c.send("<message from='mallory@evil.test' to='someone@c.test'><body>x</body>"
                 "</message>")
    assert await c.stream_error() == "host-unknown"


async def test_missing_from_is_improper_addressing(net: Net, evil: DialbackAuthority) -> None:
    c, _verdict = await evil_stream(net)
    await c.send("<message to='someone@a.test'><body>x</body></message>")
    assert await c.stream_error() == "improper-addressing"


async def test_wrong_dialback_key_is_invalid_and_closes(net: Net,
                                                        evil: DialbackAuthority) -> None:
    c, verdict = await evil_stream(net, key="0" * 64)
    assert verdict.attrs == {"from": "a.test", "to": "evil.test", "type": "invalid"}
    # XEP-0220 §2.2.1: no other valid pair on the stream, so it MUST be closed.
    assert isinstance(await c.next(), StreamFooter)
    await c.send("</stream:stream>")
    assert await c.closed()


async def test_stanza_before_authentication_is_not_authorized(net: Net) -> None:
    c = await RawClient.connect("127.0.0.1", net.pa, "a.test")
    await c.open_stream(header("a.test", xmlns="jabber:server",
                               extra=f"from='evil.test' {S2S_HEADER_EXTRA}"))
    await c.send("<message from='mallory@evil.test' to='someone@a.test'/>")
    assert await c.stream_error() == "not-authorized"


# -- certificates: SASL EXTERNAL (XEP-0178) and direct TLS (XEP-0368) ------------------------

@pytest.fixture(scope="module")
def ca_net(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, ServerProcess, int]]:
    root = Path(tmp_path_factory.mktemp("s2s-ca"))
    ca = CertificateAuthority(root / "ca")
    pc, pd, pd_tls = (free_port_on("127.0.0.5"), free_port_on("127.0.0.6"),
                      free_port_on("127.0.0.6"))
    (cc, ck), (dc, dk) = ca.issue("c.test"), ca.issue("d.test")
    trust = f'ca_file = "{ca.path}"\n'
    c = ServerProcess(root / "c", ("c.test",), _config(
        ["c.test"], "127.0.0.5", pc, {"d.test": f"tls://127.0.0.6:{pd_tls}"},
        extra=trust + 'trusted_domains = ["d.test"]\n',
        tls=f'[tls]\ncertificates = {{ "c.test" = ["{cc}", "{ck}"] }}\n'), bind="127.0.0.5")
    d = ServerProcess(root / "d", ("d.test",), _config(
        ["d.test"], "127.0.0.6", pd, {"c.test": f"127.0.0.5:{pc}"},
        extra=trust + f"secure_auth = true\ntls_port = {pd_tls}\n",
        tls=f'[tls]\ncertificates = {{ "d.test" = ["{dc}", "{dk}"] }}\n'), bind="127.0.0.6")
    c.start()
    d.start()
    yield c, d, pc
    _stop_and_check(c)
    _stop_and_check(d)


async def test_sasl_external_with_ca_certificates(
        ca_net: tuple[ServerProcess, ServerProcess, int], login: Any) -> None:
    c, d, _port = ca_net
    (c_jid,), (d_jid,) = c.new_users(1), d.new_users(1)
    carol, dan = await login(c, c_jid), await login(d, d_jid)
    await carol.send_xml(f"<message to='{d_jid}' type='chat' id='x1'><body>signed</body>"
                         "</message>")
    await dan.expect(f"<message from='{full(carol)}' id='x1'><body>signed</body></message>",
                     timeout=10)
    await dan.send_xml(f"<message to='{c_jid}' type='chat' id='x2'><body>sealed</body>"
                       "</message>")
    await carol.expect(f"<message from='{full(dan)}' id='x2'><body>sealed</body></message>",
                       timeout=10)
    # c.test → d.test went over XEP-0368 direct TLS (d.test asks every peer for a certificate:
    # secure_auth), d.test → c.test over STARTTLS (c.test asks d.test, a trusted domain); both
    # authenticated by certificate, neither needed dialback.
    for server, peer in ((c, "d.test"), (d, "c.test")):
        log = server.log()
        assert "ready (EXTERNAL)" in log, log[-3000:]
        assert f"{peer} authenticated with SASL EXTERNAL" in log
        assert "with dialback" not in log
    assert "tls://127.0.0.6" in c.log()


async def test_untrusted_certificate_is_refused_for_a_trusted_domain(
        ca_net: tuple[ServerProcess, ServerProcess, int], tmp_path: Path) -> None:
    # d.test must authenticate with a certificate (trusted_domains): a self-signed one does
    # not verify, so the TLS handshake itself fails (see blether/s2s/certs.py).
    import ssl as _ssl

    from blether.transport.tls import make_self_signed

    c, _d, c_s2s_port = ca_net
    make_self_signed("d.test", tmp_path / "d.crt", tmp_path / "d.key")
    raw = await RawClient.connect(c.bind, c_s2s_port, "c.test")
    s2s = header("c.test", xmlns="jabber:server", extra=f"from='d.test' {S2S_HEADER_EXTRA}")
    await raw.open_stream(s2s)
    await raw.send(f"<starttls xmlns='{TLS_NS}'/>")
    assert (await raw.element()).name == "proceed"
    ctx = _ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = _ssl.CERT_NONE
    ctx.load_cert_chain(str(tmp_path / "d.crt"), str(tmp_path / "d.key"))
    with contextlib.suppress(_ssl.SSLError, ConnectionError):
        await raw.writer.start_tls(ctx, server_hostname="c.test")
        await raw.send(s2s)
    assert await raw.closed()
