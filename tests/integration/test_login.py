"""Logging in over the network (RFC 6120 §4-§7, XEP-0368, RFC 5802/5929, RFC 4616).

Real `blether serve` subprocess; slixmpp for the mechanisms it implements, the raw client for
exact bytes (channel binding under TLS 1.3, failures, binding conflicts, keepalives).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from blether.xml.parser import StreamFooter
from integration.harness import Client, ServerProcess
from integration.rawclient import (
    BIND_NS,
    NO_FEDERATION,
    SASL_NS,
    STREAMS,
    TLS_NS,
    Closed,
    RawClients,
    condition,
    header,
    running_server,
    sasl,
)

MAX_SESSIONS = 3
CONFIG = f"""
[c2s]
max_sessions_per_user = {MAX_SESSIONS}
[limits]
auth_failures_per_ip = 1000
{NO_FEDERATION}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(Path(tmp_path_factory.mktemp("login")), CONFIG) as proc:
        yield proc


@pytest.fixture
async def raw(server: ServerProcess) -> AsyncIterator[RawClients]:
    clients = RawClients(server)
    yield clients
    await clients.close()


@pytest.fixture
async def slix() -> AsyncIterator[list[Client]]:
    clients: list[Client] = []
    yield clients
    for c in clients:
        await c.close()


def new_client(clients: list[Client], jid: str, password: str = "secret", *,
               mech: str | None = None, tls12: bool = False) -> Client:
    c = Client(jid, password, sasl_mech=mech)
    if tls12:  # slixmpp computes tls-unique, which exists only up to TLS 1.2 (RFC 9266)
        c.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
    clients.append(c)
    return c


# -- successful logins ---------------------------------------------------------------------

@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
async def test_slixmpp_login(server: ServerProcess, slix: list[Client], mech: str,
                             direct_tls: bool) -> None:
    [jid] = server.new_users(1)
    c = new_client(slix, jid, mech=mech)
    assert await c.login(server, direct_tls=direct_tls)
    assert c.plugin["feature_mechanisms"].mech.name == mech
    assert c.boundjid.bare == jid and c.boundjid.resource
    reply = await c.query("<iq type='get' id='p1' to='localhost'>"
                          "<ping xmlns='urn:xmpp:ping'/></iq>")
    assert reply.attrib["type"] == "result"


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
@pytest.mark.parametrize("mech", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
async def test_slixmpp_login_with_tls_unique(server: ServerProcess, slix: list[Client],
                                             mech: str, direct_tls: bool) -> None:
    [jid] = server.new_users(1)
    c = new_client(slix, jid, mech=mech, tls12=True)
    assert await c.login(server, direct_tls=direct_tls)
    assert c.plugin["feature_mechanisms"].mech.name == mech
    assert c.socket.version() == "TLSv1.2"


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
@pytest.mark.parametrize("mech", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
@pytest.mark.parametrize("tls", ["1.3", "1.2"])
async def test_raw_login_with_tls_server_end_point(server: ServerProcess, raw: RawClients,
                                                   mech: str, direct_tls: bool,
                                                   tls: str) -> None:
    [jid] = server.new_users(1)
    c = await raw.login(jid, mech=mech, cb_type="tls-server-end-point", direct_tls=direct_tls,
                        max_version=ssl.TLSVersion.TLSv1_2 if tls == "1.2" else None)
    assert c.ssl_object is not None and c.ssl_object.version() == f"TLSv{tls}"
    assert c.jid is not None and c.jid.startswith(jid + "/")
    await c.ping()


async def test_channel_binding_types_are_advertised(raw: RawClients) -> None:
    # XEP-0440: tls-unique only where it exists (TLS ≤ 1.2, RFC 9266).
    for max_version, expected in ((None, {"tls-server-end-point"}),
                                  (ssl.TLSVersion.TLSv1_2, {"tls-server-end-point",
                                                            "tls-unique"})):
        c = await raw.connect(direct_tls=True, max_version=max_version)
        features = await c.open_stream()
        cb = features.find("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
        assert cb is not None
        assert {t.attrs["type"] for t in cb.elements()} == expected


async def test_features_at_each_stage(server: ServerProcess, raw: RawClients) -> None:
    [jid] = server.new_users(1)
    c = await raw.connect()
    before = await c.open_stream()
    # RFC 6120 §5.3.1: TLS mandatory → offer STARTTLS (required) and nothing else.
    [starttls] = before.elements()
    assert (starttls.name, starttls.xmlns) == ("starttls", TLS_NS)
    assert starttls.find("required", TLS_NS) is not None
    first_id = c.stream_header.attrs["id"] if c.stream_header else None
    after_tls = await c.starttls()
    assert after_tls.find("starttls", TLS_NS) is None  # §5.4.3.3: not offered again
    assert "SCRAM-SHA-1" in c.mechanisms()            # §13.8 mandatory to implement
    assert after_tls.find("bind", BIND_NS) is None
    tls_id = c.stream_header.attrs["id"] if c.stream_header else None
    final = await c.sasl_scram(jid.split("@")[0], "secret")
    assert final.name == "success"
    after_sasl = await c.open_stream()
    assert after_sasl.find("mechanisms", SASL_NS) is None  # §6.4.6: not offered again
    assert after_sasl.find("starttls", TLS_NS) is None
    assert after_sasl.find("bind", BIND_NS) is not None
    sasl_id = c.stream_header.attrs["id"] if c.stream_header else None
    assert len({first_id, tls_id, sasl_id}) == 3  # §4.3.3: a new id at every restart


async def test_direct_tls_offers_no_starttls(raw: RawClients) -> None:
    c = await raw.connect(direct_tls=True)
    features = await c.open_stream()
    assert features.find("starttls", TLS_NS) is None
    assert "PLAIN" in c.mechanisms() and "SCRAM-SHA-256-PLUS" in c.mechanisms()


async def test_plain_is_not_offered_before_tls_even_if_asked_for(raw: RawClients) -> None:
    c = await raw.connect()
    await c.open_stream()
    assert c.mechanisms() == []


# -- failures ------------------------------------------------------------------------------

async def test_slixmpp_wrong_password(server: ServerProcess, slix: list[Client]) -> None:
    [jid] = server.new_users(1)
    c = new_client(slix, jid, "not-the-password", mech="SCRAM-SHA-256")
    failures: list[Any] = []
    c.add_event_handler("failed_auth", failures.append)
    assert not await c.login(server)
    assert failures and failures[0]["condition"] == "not-authorized"


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
async def test_unknown_user_fails_like_a_wrong_password(server: ServerProcess,
                                                        raw: RawClients, mech: str) -> None:
    [jid] = server.new_users(1)
    user = jid.split("@")[0]
    failures = []
    for name, password in ((user, "wrong"), ("nobody-" + user, "secret")):
        c = await raw.secured()
        if mech == "PLAIN":
            failures.append(await c.sasl_plain(name, password))
        else:
            failures.append(await c.sasl_scram(name, password, mech))
    wrong_password, unknown_user = failures
    assert wrong_password.name == "failure"
    assert condition(wrong_password, SASL_NS) == "not-authorized"
    assert wrong_password == unknown_user  # same bytes: no account enumeration


async def test_third_failure_closes_the_stream(server: ServerProcess, raw: RawClients) -> None:
    # RFC 6120 §6.4.5: a limited number of retries, then the stream is closed.
    [jid] = server.new_users(1)
    user = jid.split("@")[0]
    c = await raw.secured()
    for attempt in (1, 2, 3):
        failure = await c.sasl_scram(user, f"wrong{attempt}")
        assert condition(failure, SASL_NS) == "not-authorized"
    assert await c.stream_error() == "policy-violation"


async def test_retry_after_a_failure_succeeds(server: ServerProcess, raw: RawClients) -> None:
    [jid] = server.new_users(1)
    user = jid.split("@")[0]
    c = await raw.secured()
    assert condition(await c.sasl_scram(user, "wrong"), SASL_NS) == "not-authorized"
    assert (await c.sasl_scram(user, "secret")).name == "success"


async def test_unknown_mechanism(raw: RawClients) -> None:
    c = await raw.secured()
    await c.send(sasl("auth", b"x", mechanism="DIGEST-MD5"))
    assert condition(await c.element(), SASL_NS) == "invalid-mechanism"


async def test_per_ip_ban(tmp_path: Path) -> None:
    # SECURITY.md: N failures from one address → temporary-auth-failure, before any hashing.
    config = ("[limits]\nauth_failures_per_ip = 3\nauth_failures_per_connection = 10\n" +
              NO_FEDERATION)
    with running_server(tmp_path / "ban", config) as srv:
        [jid] = srv.new_users(1)
        user = jid.split("@")[0]
        clients = RawClients(srv)
        try:
            c = await clients.secured()
            for _ in range(3):
                assert condition(await c.sasl_scram(user, "wrong"), SASL_NS) == \
                    "not-authorized"
            failure = await c.sasl_scram(user, "secret")  # even the right password
            assert condition(failure, SASL_NS) == "temporary-auth-failure"
            other = await clients.secured()
            failure = await other.sasl_plain(user, "secret")
            assert condition(failure, SASL_NS) == "temporary-auth-failure"
        finally:
            await clients.close()


async def test_header_for_unknown_domain(raw: RawClients) -> None:
    c = await raw.connect()
    await c.send(header("example.net"))
    assert await c.stream_error() == "host-unknown"


@pytest.mark.parametrize("early", [
    sasl("auth", b"\0u\0secret", mechanism="PLAIN"),
    sasl("auth", b"n,,n=u,r=abc", mechanism="SCRAM-SHA-256"),
    "<message to='someone@localhost'><body>hi</body></message>",
    "<presence/>",
    "<iq type='get' id='1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
])
async def test_nothing_but_starttls_before_tls(raw: RawClients, early: str) -> None:
    # RFC 6120 §5.3.1 makes TLS mandatory-to-negotiate here but names no condition for a
    # client that skips it; §4.9.3.12 not-authorized ("not authorized to perform an action
    # related to stream negotiation") fits. (ejabberd: policy-violation; Prosody answers
    # SASL with <encryption-required/>.)
    c = await raw.connect()
    await c.open_stream()
    await c.send(early)
    assert await c.stream_error() == "not-authorized"


async def test_starttls_twice_fails(raw: RawClients) -> None:
    c = await raw.secured()
    await c.send(f"<starttls xmlns='{TLS_NS}'/>")
    failure = await c.element()
    assert (failure.name, failure.xmlns) == ("failure", TLS_NS)
    assert isinstance(await c.next(), StreamFooter)
    assert await c.closed()


# -- resource binding (RFC 6120 §7) --------------------------------------------------------

async def test_client_chosen_and_server_generated_resources(server: ServerProcess,
                                                           raw: RawClients) -> None:
    [jid] = server.new_users(1)
    chosen = await raw.login(jid, resource="balcony")
    assert chosen.jid == f"{jid}/balcony"
    generated = await raw.login(jid)
    assert generated.jid is not None and generated.jid.startswith(jid + "/")
    assert len(generated.jid.split("/", 1)[1]) >= 8


async def test_resource_is_prepared(server: ServerProcess, raw: RawClients) -> None:
    [jid] = server.new_users(1)
    c = await raw.login(jid.upper(), resource="Balcony")
    assert c.jid == f"{jid}/Balcony"  # localpart case-mapped, resourcepart kept


async def test_conflict_replaces_the_old_session(server: ServerProcess,
                                                 raw: RawClients) -> None:
    [jid] = server.new_users(1)
    old = await raw.login(jid, resource="r")
    new = await raw.login(jid, resource="r")
    assert new.jid == f"{jid}/r"
    assert await old.stream_error() == "conflict"
    await new.ping()


async def test_bad_resource_is_bad_request(server: ServerProcess, raw: RawClients) -> None:
    [jid] = server.new_users(1)
    c = await raw.secured()
    assert (await c.sasl_scram(jid.split("@")[0], "secret")).name == "success"
    await c.open_stream()
    await c.send(f"<iq type='set' id='b'><bind xmlns='{BIND_NS}'><resource>"
                 f"{'x' * 1100}</resource></bind></iq>")
    reply = await c.element()
    assert condition(reply) == "bad-request"
    await c.bind("fine")  # the stream survives


async def test_too_many_sessions_is_resource_constraint(server: ServerProcess,
                                                        raw: RawClients) -> None:
    [jid] = server.new_users(1)
    for i in range(MAX_SESSIONS):
        await raw.login(jid, resource=f"r{i}")
    c = await raw.secured()
    assert (await c.sasl_scram(jid.split("@")[0], "secret")).name == "success"
    await c.open_stream()
    await c.send(f"<iq type='set' id='b'><bind xmlns='{BIND_NS}'/></iq>")
    reply = await c.element()
    assert reply.attrs["type"] == "error" and condition(reply) == "resource-constraint"
    err = reply.find("error")
    assert err is not None and err.attrs["type"] == "wait"


async def test_legacy_session_is_answered(server: ServerProcess, raw: RawClients) -> None:
    [jid] = server.new_users(1)
    c = await raw.login(jid)
    await c.send("<iq type='set' id='s1'><session "
                 "xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
    reply = await c.element()
    assert (reply.name, reply.attrs["type"], reply.attrs["id"]) == ("iq", "result", "s1")


async def _authenticated(server: ServerProcess, raw: RawClients) -> Any:
    [jid] = server.new_users(1)
    c = await raw.secured()
    assert (await c.sasl_scram(jid.split("@")[0], "secret")).name == "success"
    await c.open_stream()
    return c


async def test_iq_before_bind_is_not_authorized(server: ServerProcess,
                                                raw: RawClients) -> None:
    c = await _authenticated(server, raw)
    await c.send("<iq type='get' id='early' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    reply = await c.element()
    assert reply.attrs["id"] == "early" and condition(reply) == "not-authorized"


@pytest.mark.parametrize("stanza", ["<message to='a@localhost'><body>x</body></message>",
                                    "<presence/>"])
async def test_stanza_before_bind_is_not_authorized(server: ServerProcess, raw: RawClients,
                                                    stanza: str) -> None:
    c = await _authenticated(server, raw)
    await c.send(stanza)
    assert await c.stream_error() == "not-authorized"


# -- the stream itself ---------------------------------------------------------------------

async def test_whitespace_keepalives_are_ignored(server: ServerProcess,
                                                 raw: RawClients) -> None:
    [jid] = server.new_users(1)
    c = await raw.login(jid)
    for _ in range(50):
        await c.send(" ")
    await c.send("\n\t \r\n")
    await c.silence(0.3)
    await c.ping()


async def test_clean_close_is_answered(server: ServerProcess, raw: RawClients) -> None:
    # RFC 6120 §4.4
    [jid] = server.new_users(1)
    c = await raw.login(jid)
    await c.send("</stream:stream>")
    assert isinstance(await c.next(), StreamFooter)
    assert isinstance(await c.next(), Closed)


async def test_stanza_split_across_writes_is_answered_without_more_traffic(
        server: ServerProcess, raw: RawClients) -> None:
    # SECURITY.md point 3: expat's reparse deferral must not hold a complete stanza back.
    [jid] = server.new_users(1)
    c = await raw.login(jid)
    pieces = ["<iq type='get' id='split' to='localh", "ost'><ping xmlns='urn:xm",
              "pp:ping'/></i", "q>"]
    for piece in pieces:
        await c.send(piece)
        await asyncio.sleep(0.2)
    start = time.monotonic()
    reply = await c.stanza(lambda e: e.attrs.get("id") == "split", timeout=2.0)
    assert reply.attrs["type"] == "result"
    assert time.monotonic() - start < 1.0


async def test_header_split_across_writes(raw: RawClients) -> None:
    c = await raw.connect()
    data = header("localhost")
    for i in range(0, len(data), 7):
        await c.send(data[i:i + 7])
        await asyncio.sleep(0.01)
    ev = await c.next()
    assert ev.__class__.__name__ == "StreamHeader"
    features = await c.element()
    assert (features.name, features.xmlns) == ("features", STREAMS)
