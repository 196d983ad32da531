"""Stream-level limits (SECURITY.md "Stanza size", "Rate limiting", "Dead-connection
detection"), checked on the wire at their exact boundaries, with the defaults and with
configured values.

* Stanza bytes, nesting depth, elements per stanza, attributes per element: before SASL
  success and after it (RFC 6120 §13.12 asks servers to limit resource use; the reaction is
  the `policy-violation` stream error, RFC 6120 §4.9.3.14, as Prosody and ejabberd send).
  The stanza at the limit is processed; one byte/level/element/attribute more ends the stream.
* The read rate pauses reading and loses nothing; the per-IP connection cap refuses the
  connection over it with `policy-violation`.
* Timeouts: negotiation (`connection-timeout`, §4.9.3.4), TLS handshake (the TCP connection
  is closed: after <proceed/> no stream error can be sent in the clear), idle sessions (the
  server's XEP-0199 ping goes unanswered → `connection-timeout`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from blether.config import LimitsConfig
from integration.harness import ServerProcess
from integration.rawclient import running_server
from reliability.helpers import NO_FEDERATION, Clients, source_ips

SMALL = """[limits]
pre_auth_stanza_bytes = 1000
pre_auth_max_depth = 5
pre_auth_max_elements = 6
max_attributes = 8
c2s_stanza_bytes = 20000
max_depth = 9
max_elements = 40
"""
SERVERS = {"defaults": "", "configured": SMALL}


def limits_of(name: str) -> LimitsConfig:
    import tomllib

    return LimitsConfig(**tomllib.loads(SERVERS[name]).get("limits", {}))


@pytest.fixture(scope="module", params=sorted(SERVERS))
def limited(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[ServerProcess, LimitsConfig, str]]:
    name = request.param
    # The production per-IP connection rate stays (it is tested here); only the read rate
    # is lifted, so the boundary stanzas of 256 KiB do not take 25 s each.
    with running_server(Path(tmp_path_factory.mktemp(f"limits-{name}")),
                        SERVERS[name] + NO_FEDERATION, relaxed=("c2s_read_rate",)) as proc:
        (user,) = proc.new_users(1, prefix=f"lim{name[0]}")
        yield proc, limits_of(name), user


@pytest.fixture
async def clients(limited: tuple[ServerProcess, LimitsConfig, str]) -> AsyncIterator[Clients]:
    c = Clients(limited[0])
    yield c
    await c.close()


# -- stanzas of an exact size / shape -----------------------------------------------------------
# Before SASL the probe is an IQ the server answers (service-unavailable: "authenticate
# first"), after binding a message to the client's own full JID, delivered back to it.

def pre_iq(inner: str = "", pad: int = 0) -> str:
    return (f"<iq type='get' id='probe' pad='{'x' * pad}'>"
            f"<query xmlns='jabber:iq:version'>{inner}</query></iq>")


def post_msg(jid: str, inner: str = "", pad: int = 0) -> str:
    return f"<message to='{jid}' id='probe' pad='{'x' * pad}'><body>b</body>{inner}</message>"


def sized(make: Callable[[int], str], size: int) -> str:
    """`make(pad)` grown to exactly `size` bytes on the wire (the parser counts from the
    stanza's `<` to its final `>`)."""
    out = make(size - len(make(0).encode()))
    assert len(out.encode()) == size
    return out


def nested(levels: int) -> str:
    return "<a xmlns='urn:t'>" * levels + "</a>" * levels


def flat(count: int) -> str:
    return "<a xmlns='urn:t'/>" * count


def attributed(count: int) -> str:
    # The namespace declaration counts as an attribute (SECURITY.md "64 attrs").
    return "<a xmlns='urn:t' " + " ".join(f"a{i}='{i}'" for i in range(count - 1)) + "/>"


def cases(lim: LimitsConfig, jid: str) -> dict[str, tuple[str, str]]:
    """limit name -> (stanza at the limit, stanza one over it)."""
    # pre-auth: iq (depth 1) > query (2) > <a> levels; elements = 2 + children
    # post-auth: message (1) > children; elements = 2 (message, body) + children
    def msg(inner: str) -> str:
        return post_msg(jid, inner)

    return {
        "pre-bytes": (sized(lambda p: pre_iq(pad=p), lim.pre_auth_stanza_bytes),
                      sized(lambda p: pre_iq(pad=p), lim.pre_auth_stanza_bytes + 1)),
        "pre-depth": (pre_iq(nested(lim.pre_auth_max_depth - 2)),
                      pre_iq(nested(lim.pre_auth_max_depth - 1))),
        "pre-elements": (pre_iq(flat(lim.pre_auth_max_elements - 2)),
                         pre_iq(flat(lim.pre_auth_max_elements - 1))),
        "pre-attributes": (pre_iq(attributed(lim.max_attributes)),
                           pre_iq(attributed(lim.max_attributes + 1))),
        "post-bytes": (sized(lambda p: post_msg(jid, pad=p), lim.c2s_stanza_bytes),
                       sized(lambda p: post_msg(jid, pad=p), lim.c2s_stanza_bytes + 1)),
        "post-depth": (msg(nested(lim.max_depth - 1)), msg(nested(lim.max_depth))),
        "post-elements": (msg(flat(lim.max_elements - 2)), msg(flat(lim.max_elements - 1))),
        "post-attributes": (msg(attributed(lim.max_attributes)),
                            msg(attributed(lim.max_attributes + 1))),
    }


def is_probe(el: object) -> bool:
    return getattr(el, "name", None) in ("iq", "message") and \
        el.attrs.get("id") == "probe"  # type: ignore[attr-defined]


@pytest.mark.parametrize("limit", ["pre-bytes", "pre-depth", "pre-elements", "pre-attributes",
                                   "post-bytes", "post-depth", "post-elements",
                                   "post-attributes"])
async def test_stanza_limit_boundary(limited: tuple[ServerProcess, LimitsConfig, str],
                                     clients: Clients, limit: str) -> None:
    _server, lim, user = limited
    if limit.startswith("pre"):
        c = await clients.secured()
        at, over = cases(lim, "")[limit]
    else:
        c = await clients.login(user)
        assert c.jid is not None
        at, over = cases(lim, c.jid)[limit]
    await c.send(at)
    reply = await c.stanza(is_probe)
    if limit.startswith("pre"):
        # Processed: answered like any IQ before authentication.
        assert reply.name == "iq" and reply.attrs["type"] == "error", reply
    else:
        # Processed: delivered back intact (children and attributes all there).
        sent = await _parse_one(at)
        assert reply.elements() == sent.elements() and \
            reply.attrs.get("pad") == sent.attrs.get("pad")
    await c.send(over)
    assert await c.stream_error() == "policy-violation"


async def _parse_one(xml: str) -> object:
    from blether.xml.parser import ElementParsed, ParserLimits, XMLStreamParser

    head = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    big = ParserLimits(1 << 30, 1 << 20, 1 << 20, 1 << 30, 1 << 20)
    (ev,) = [e for e in XMLStreamParser(big).feed(head + xml.encode())
             if isinstance(e, ElementParsed)]
    return ev.element


def test_defaults_are_the_security_md_values() -> None:
    lim = LimitsConfig()
    assert (lim.pre_auth_stanza_bytes, lim.pre_auth_max_elements, lim.pre_auth_max_depth,
            lim.max_attributes) == (8192, 32, 16, 64)
    assert (lim.c2s_stanza_bytes, lim.s2s_stanza_bytes, lim.max_elements, lim.max_depth) == \
        (262144, 524288, 10000, 64)
    assert (lim.auth_failures_per_connection, lim.auth_failures_per_ip,
            lim.auth_failure_window, lim.auth_ban_time) == (3, 10, 600.0, 900.0)
    assert lim.connections_per_ip == 32 and lim.negotiation_timeout == 60.0


def test_default_read_rate_is_10_kb_per_second() -> None:
    assert LimitsConfig().c2s_read_rate == 10_000


# -- read-rate shaping: pause, never drop -----------------------------------------------------

RATE = 5000   # bytes/s; the bucket holds 2 s of it


@pytest.fixture(scope="module")
def shaped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = f"[limits]\nc2s_read_rate = {RATE}\n" + NO_FEDERATION
    with running_server(Path(tmp_path_factory.mktemp("shaped")), config) as proc:
        yield proc


async def test_read_rate_pauses_reading_and_loses_nothing(shaped: ServerProcess) -> None:
    fast, bystander = shaped.new_users(2, prefix="rate")
    clients = Clients(shaped)
    try:
        c = await clients.login(fast)
        other = await clients.login(bystander)
        assert c.jid is not None
        burst = b"".join(f"<message to='{c.jid}' id='m{i}' type='headline'><body>{i:04d}"
                         f"{'z' * 900}</body></message>".encode() for i in range(40))
        start = time.monotonic()
        await c.send(burst)   # ~38 KB at once: far over 2 s worth of 5 kB/s
        # While the fast client's reads are paused, everybody else is served at once.
        assert await other.ping() < 0.5
        got = [await c.stanza(lambda e: e.name == "message", timeout=30) for _ in range(40)]
        elapsed = time.monotonic() - start
        assert [m.attrs["id"] for m in got] == [f"m{i}" for i in range(40)]   # all, in order
        expected = (len(burst) - 2 * RATE) / RATE
        assert elapsed >= 0.8 * expected, f"{len(burst)} B read in {elapsed:.1f}s at {RATE} B/s"
        await c.ping()   # the stream is still fine afterwards
    finally:
        await clients.close()


# -- connections per IP -------------------------------------------------------------------------

async def test_connections_per_ip_cap(limited: tuple[ServerProcess, LimitsConfig, str]) -> None:
    server, lim, _user = limited
    ip, other_ip = source_ips(2)
    clients = Clients(server)
    try:
        opened = []
        for _ in range(lim.connections_per_ip):
            opened.append(await clients.connect(ip))
            if lim.connection_rate_per_ip:  # stay under the per-IP connection rate
                await asyncio.sleep(1.1 / lim.connection_rate_per_ip)
        for c in opened[:3]:   # they are real, working connections
            await c.open_stream()
        refused = await clients.connect(ip)
        assert await refused.stream_error() == "policy-violation"
        # Another address is not affected; a slot freed is a slot usable again.
        await (await clients.connect(other_ip)).open_stream()
        await opened[-1].close()
        await asyncio.sleep(0.3)
        await (await clients.connect(ip)).open_stream()
    finally:
        await clients.close()


async def test_connection_rate_per_ip(limited: tuple[ServerProcess, LimitsConfig, str]) -> None:
    server, _lim, _user = limited
    (ip,) = source_ips(1)
    clients = Clients(server)
    try:
        for _ in range(10):   # ten in well under a second, each closed at once
            c = await clients.connect(ip)
            await c.open_stream()
            await c.close()
        eleventh = await clients.connect(ip)
        assert await eleventh.stream_error(timeout=2) == "policy-violation"
    finally:
        await clients.close()


# -- timeouts -----------------------------------------------------------------------------------

TIMEOUTS = """[limits]
negotiation_timeout = 2
tls_handshake_timeout = 2
[module_options.keepalive]
interval = 2
timeout = 1
"""


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(Path(tmp_path_factory.mktemp("timeouts")),
                        TIMEOUTS + NO_FEDERATION) as proc:
        yield proc


@pytest.mark.parametrize("stage", ["header", "features", "after-tls"])
async def test_negotiation_timeout(impatient: ServerProcess, stage: str) -> None:
    clients = Clients(impatient)
    try:
        c = await clients.connect()
        if stage != "header":
            await c.open_stream()
        if stage == "after-tls":
            await c.starttls()
        start = time.monotonic()
        assert await c.stream_error(timeout=6) == "connection-timeout"
        assert time.monotonic() - start < 4
    finally:
        await clients.close()


async def test_tls_handshake_timeout_after_starttls(impatient: ServerProcess) -> None:
    clients = Clients(impatient)
    try:
        c = await clients.connect()
        await c.open_stream()
        await c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        proceed = await c.element()
        assert proceed.name == "proceed"
        start = time.monotonic()   # ... and the client never starts the handshake
        assert await c.closed(timeout=6)
        assert 1.5 < time.monotonic() - start < 4.5
    finally:
        await clients.close()


async def test_tls_handshake_timeout_on_the_direct_tls_port(impatient: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection(impatient.bind, impatient.tls_port)
    start = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(100), 6)   # we never send a ClientHello
        assert data == b""
        assert 1.5 < time.monotonic() - start < 4.5
    finally:
        writer.close()


async def test_idle_session_is_pinged_then_closed(impatient: ServerProcess) -> None:
    silent, lively = impatient.new_users(2, prefix="idle")
    clients = Clients(impatient)
    try:
        quiet = await clients.login(silent)
        alive = await clients.login(lively)
        ping = await quiet.stanza(lambda e: e.name == "iq" and e.attrs.get("type") == "get",
                                  timeout=5)
        assert ping.find("ping", "urn:xmpp:ping") is not None
        # `alive` answers its ping; `quiet` does not and is disconnected.
        ping2 = await alive.stanza(lambda e: e.name == "iq" and e.attrs.get("type") == "get",
                                   timeout=5)
        await alive.send(f"<iq type='result' id='{ping2.attrs['id']}' "
                         f"to='{ping2.attrs['from']}'/>")
        assert await quiet.stream_error(timeout=4) == "connection-timeout"
        assert await alive.ping() < 1.0
    finally:
        await clients.close()

