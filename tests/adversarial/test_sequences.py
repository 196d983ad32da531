"""Adversarial cases that take more than one exchange: STARTTLS command injection
(RFC 6120 §5.4.3.3; the CVE-2011-0411 class), replayed SCRAM messages (RFC 5802 §9), and
renegotiation attempts. They run under the same `sentinel` guard as the corpus."""

from __future__ import annotations

import asyncio

import scramp

from blether.xml.parser import StreamFooter
from integration.rawclient import (
    SASL_NS,
    TLS_NS,
    RawClient,
    RawClients,
    b64,
    client_context,
    condition,
    header,
    sasl,
)

PING = "<iq type='get' id='injected' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"


async def _tls_after_proceed(c: RawClient) -> None:
    proceed = await c.element()
    assert (proceed.name, proceed.xmlns) == ("proceed", TLS_NS), proceed
    await c.writer.start_tls(client_context(), server_hostname="localhost")


async def test_plaintext_pipelined_after_starttls_is_discarded(
        accounts: dict[str, str], raw: RawClients, sentinel: RawClient) -> None:
    c = await raw.connect()
    await c.open_stream()
    await c.send(f"<starttls xmlns='{TLS_NS}'/>{PING}")
    await _tls_after_proceed(c)
    await c.open_stream()
    assert c.mechanisms()  # a fresh, unauthenticated stream
    await c.silence(0.5)   # the injected ping was never processed


async def test_injected_stream_and_auth_after_starttls_are_discarded(
        accounts: dict[str, str], raw: RawClients, sentinel: RawClient) -> None:
    # A man in the middle appends a whole stream restart and a PLAIN auth with credentials
    # it knows; if the server read them as if they came through TLS, the victim's TLS
    # session would start out authenticated as the attacker.
    user = accounts["attacker"].split("@")[0]
    c = await raw.connect()
    await c.open_stream()
    injected = header("localhost").decode() + sasl("auth", f"\0{user}\0secret".encode(),
                                                   mechanism="PLAIN")
    await c.send(f"<starttls xmlns='{TLS_NS}'/>{injected}")
    await _tls_after_proceed(c)
    features = await c.open_stream()
    assert features.find("mechanisms", SASL_NS) is not None
    await c.silence(0.5)  # no <success/>, no second header


async def test_plaintext_sent_just_after_starttls_is_never_read_as_secure(
        accounts: dict[str, str], raw: RawClients, sentinel: RawClient) -> None:
    # Same injection, in its own TCP segment: the server may be anywhere in its switch to TLS.
    for delay in (0.0, 0.001, 0.01, 0.05):
        c = await raw.connect()
        await c.open_stream()
        await c.send(f"<starttls xmlns='{TLS_NS}'/>")
        await asyncio.sleep(delay)
        await c.send(header("localhost") + PING.encode())
        proceed = await c.element()
        assert proceed.name == "proceed"
        try:
            await asyncio.wait_for(c.writer.start_tls(client_context(),
                                                      server_hostname="localhost"), 3)
        except (OSError, TimeoutError, ConnectionError):
            continue  # the garbage broke the handshake: safe
        c.parser.reset()
        try:
            while True:
                el = await c.next(0.5)
                assert getattr(el, "attrs", {}).get("id") != "injected", \
                    "plaintext injected before the TLS handshake was processed after it"
        except AssertionError as exc:
            if "nothing from the server" not in str(exc):
                raise


async def test_replayed_scram_final_is_refused(accounts: dict[str, str], raw: RawClients,
                                               sentinel: RawClient) -> None:
    user = accounts["attacker"].split("@")[0]
    # A successful exchange, captured.
    first = await raw.secured()
    client = scramp.ScramClient(["SCRAM-SHA-256"], user, "secret", c_nonce="fixednonce")
    client_first = client.get_client_first()
    await first.send(sasl("auth", client_first.encode(), mechanism="SCRAM-SHA-256"))
    client.set_server_first(b64(await first.element()).decode())
    captured = client.get_client_final()
    await first.send(sasl("response", captured.encode()))
    assert (await first.element()).name == "success"
    # Replayed on a new connection with the same client nonce.
    second = await raw.secured()
    await second.send(sasl("auth", client_first.encode(), mechanism="SCRAM-SHA-256"))
    challenge = await second.element()
    assert challenge.name == "challenge"
    await second.send(sasl("response", captured.encode()))
    failure = await second.element()
    assert condition(failure, SASL_NS) == "not-authorized"


async def test_response_replayed_after_success_is_not_sasl(
        accounts: dict[str, str], raw: RawClients, sentinel: RawClient) -> None:
    # After <success/> the stream restarts: SASL is over and may not be resumed (§6.4.6).
    user = accounts["attacker"].split("@")[0]
    c = await raw.secured()
    assert (await c.sasl_plain(user, "secret")).name == "success"
    await c.open_stream()
    await c.send(sasl("auth", f"\0{user}\0secret".encode(), mechanism="PLAIN"))
    assert await c.stream_error() == "unsupported-stanza-type"


async def test_starttls_after_tls_is_refused(raw: RawClients, sentinel: RawClient) -> None:
    # RFC 6120 §5.4.3.3: STARTTLS is not offered again; asking anyway fails and closes.
    c = await raw.secured()
    await c.send(f"<starttls xmlns='{TLS_NS}'/>")
    failure = await c.element()
    assert (failure.name, failure.xmlns) == ("failure", TLS_NS)
    assert isinstance(await c.next(), StreamFooter)
    assert await c.closed()


async def test_many_half_open_connections_do_not_starve_others(
        raw: RawClients, sentinel: RawClient) -> None:
    # Connections that send half a header and stall cost the server nothing but a socket.
    for _ in range(20):
        c = await raw.connect()
        await c.send(b"<stream:stream xmlns='jabber:client' to='loc")
    assert await sentinel.ping() < 0.1


async def test_client_that_stops_reading_is_disconnected(
        accounts: dict[str, str], raw: RawClients, sentinel: RawClient) -> None:
    # DESIGN.md §1.5: a slow reader is disconnected, never allowed to grow server memory.
    victim = await raw.login(accounts["victim"], resource="sleepy", direct_tls=True)
    assert victim.jid is not None
    victim.writer.transport.pause_reading()
    attacker = await raw.login(accounts["attacker"], resource="flood", direct_tls=True)
    body = b"x" * 200_000
    # 30 MB: more than kernel buffers hold; the limit is 2 MiB. Headlines, because once the
    # victim is gone a normal message would bounce back to the attacker, body included.
    for i in range(150):
        await attacker.send(b"<message type='headline' to='" + victim.jid.encode() +
                            b"' id='f%d'><body>" % i + body + b"</body></message>")
    await attacker.ping(timeout=10)
    victim.writer.transport.resume_reading()
    assert await victim.closed(timeout=10), "the slow reader was never disconnected"
    await attacker.ping()


async def test_a_burst_of_requests_is_answered_in_order(
        accounts: dict[str, str], raw: RawClients, sentinel: RawClient) -> None:
    # RFC 6120 §10.1: in order; and a burst from one client does not starve the sentinel.
    c = await raw.login(accounts["attacker"], resource="burst", direct_tls=True)
    n = 2000
    await c.send("".join(f"<iq type='get' id='b{i}' to='localhost'>"
                         "<ping xmlns='urn:xmpp:ping'/></iq>" for i in range(n)))
    for i in range(n):
        reply = await c.element(timeout=10)
        assert (reply.attrs["id"], reply.attrs["type"]) == (f"b{i}", "result")
