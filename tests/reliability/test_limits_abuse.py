"""Abuse limits (SECURITY.md "Auth brute force", "Registration", "Sessions per user",
"Rate limiting", DESIGN.md §1.5 bounded output), each checked on the wire with its exact
reaction:

* three failed SASL attempts on one stream → `policy-violation` stream error (RFC 6120
  §6.4.5 lets the server limit retries); ten failures from one IP in ten minutes → that IP
  gets `temporary-auth-failure` (RFC 6120 §6.5.12) before any password is checked, for the ban
  time; a success clears the count;
* the eleventh session of an account → bind answered `resource-constraint` (RFC 6120
  §7.6.2.1) with type wait;
* roster full → `policy-violation`; offline queue full → `service-unavailable` (XEP-0160 §2,
  the sender is told); a second in-band registration from one IP within 600 s →
  `policy-violation` type wait (Prosody's mod_register_limits);
* subscription requests beyond 5 per minute (ejabberd mod_pres_counter) → refused;
* a client that stops reading is disconnected once its output queue passes the bound, and
  the server's memory stays bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from integration.harness import ServerProcess
from integration.rawclient import SASL_NS, RawClient, condition, running_server
from reliability.helpers import NO_FEDERATION, Clients, rss_kib, source_ips

CONFIG = """[module_options.offline]
quota = 3
[module_options.register]
allow_registration = true
"""
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(Path(tmp_path_factory.mktemp("abuse")), CONFIG + NO_FEDERATION) as proc:
        yield proc


@pytest.fixture
async def clients(server: ServerProcess) -> AsyncIterator[Clients]:
    c = Clients(server)
    yield c
    await c.close()


def error_of(el: object) -> tuple[str | None, str | None]:
    """(type, defined condition) of a stanza error reply."""
    err = el.find("error")  # type: ignore[attr-defined]
    return (err.attrs.get("type") if err is not None else None), condition(el)  # type: ignore[arg-type]


async def fail_auth(c: RawClient, user: str) -> str | None:
    final = await c.sasl_scram(user.split("@")[0], "wrong password")
    assert final.name == "failure", final
    return condition(final, SASL_NS)


# -- authentication failures --------------------------------------------------------------------

async def test_three_failures_on_one_stream_end_it(server: ServerProcess,
                                                   clients: Clients) -> None:
    (user,) = server.new_users(1, prefix="bf")
    c = await clients.secured(source_ips()[0])
    for _ in range(3):
        assert await fail_auth(c, user) == "not-authorized"
    assert await c.stream_error() == "policy-violation"


async def test_ten_failures_from_one_ip_ban_it_before_any_password_check(
        server: ServerProcess, clients: Clients) -> None:
    (user,) = server.new_users(1, prefix="bf")
    ip, other = source_ips(2)
    for n in (3, 3, 3, 1):   # ten failures over four streams (3 per stream end it)
        c = await clients.secured(ip)
        for _ in range(n):
            assert await fail_auth(c, user) == "not-authorized"
    # Banned: even the right password is refused, with temporary-auth-failure, before it is
    # hashed (PLAIN is the mechanism where the server itself runs PBKDF2).
    c = await clients.secured(ip)
    final = await c.sasl_plain(user.split("@")[0], "secret")
    assert final.name == "failure" and condition(final, SASL_NS) == "temporary-auth-failure"
    final = await c.sasl_scram(user.split("@")[0], "secret")
    assert condition(final, SASL_NS) == "temporary-auth-failure"
    # The account is not locked: the same user from another address logs in.
    await clients.login(user, source=other)


async def test_success_clears_the_ip_failure_count(server: ServerProcess,
                                                   clients: Clients) -> None:
    (user,) = server.new_users(1, prefix="bf")
    (ip,) = source_ips()
    for _round in range(2):   # 9 failures, a success, 9 more failures: never banned
        for n in (3, 3, 3):
            c = await clients.secured(ip)
            for _ in range(n):
                assert await fail_auth(c, user) == "not-authorized"
        await clients.login(user, source=ip)


async def test_ban_expires(tmp_path: Path) -> None:
    config = "[limits]\nauth_failures_per_ip = 2\nauth_ban_time = 2\n" + NO_FEDERATION
    with running_server(tmp_path, config) as proc:
        (user,) = proc.new_users(1, prefix="ban")
        clients = Clients(proc)
        try:
            c = await clients.secured()
            for _ in range(2):
                assert await fail_auth(c, user) == "not-authorized"
            final = await c.sasl_scram(user.split("@")[0], "secret")
            assert condition(final, SASL_NS) == "temporary-auth-failure"
            await asyncio.sleep(2.2)
            final = await c.sasl_scram(user.split("@")[0], "secret")
            assert final.name == "success"
        finally:
            await clients.close()


# -- sessions per account -----------------------------------------------------------------------

async def test_eleventh_session_is_resource_constraint(server: ServerProcess,
                                                       clients: Clients) -> None:
    (user,) = server.new_users(1, prefix="many")
    for i in range(10):
        await clients.login(user, resource=f"r{i}")
    c = await clients.secured()
    assert (await c.sasl_scram(user.split("@")[0], "secret")).name == "success"
    await c.open_stream()
    await c.send("<iq type='set' id='b11'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                 "<resource>r10</resource></bind></iq>")
    reply = await c.stanza(lambda e: e.attrs.get("id") == "b11")
    assert reply.attrs["type"] == "error"
    assert error_of(reply) == ("wait", "resource-constraint")


# -- per-account quotas -------------------------------------------------------------------------

async def test_roster_size_limit(tmp_path: Path) -> None:
    config = "[module_options.roster]\nmax_items = 3\n" + NO_FEDERATION
    with running_server(tmp_path, config) as proc:
        (user,) = proc.new_users(1, prefix="ros")
        clients = Clients(proc)
        try:
            c = await clients.login(user)
            for i in range(4):
                await c.send(f"<iq type='set' id='r{i}'><query xmlns='jabber:iq:roster'>"
                             f"<item jid='contact{i}@localhost'/></query></iq>")
                reply = await c.stanza(lambda e, i=i: e.name == "iq"
                                       and e.attrs.get("id") == f"r{i}")
                if i < 3:
                    assert reply.attrs["type"] == "result"
                else:
                    assert error_of(reply) == ("modify", "policy-violation")
            # A subscription request would add a fourth item: refused the same way.
            await c.send("<presence to='contact9@localhost' type='subscribe' id='s9'/>")
            reply = await c.stanza(lambda e: e.name == "presence" and e.attrs.get("id") == "s9")
            assert reply.attrs["type"] == "error" and condition(reply) == "policy-violation"
        finally:
            await clients.close()


async def test_offline_quota(server: ServerProcess, clients: Clients) -> None:
    sender, absent = server.new_users(2, prefix="quota")
    c = await clients.login(sender)
    for i in range(4):
        await c.send(f"<message to='{absent}' id='o{i}' type='chat'><body>{i}</body></message>")
    bounce = await c.element()   # (RawClient.stanza would skip what does not match)
    assert bounce.name == "message" and bounce.attrs["id"] == "o3", bounce
    assert error_of(bounce) == ("cancel", "service-unavailable")
    await c.silence(0.3)   # only the fourth was refused
    r = await clients.login(absent)
    await r.send("<presence/>")
    got = [await r.stanza(lambda e: e.name == "message") for _ in range(3)]
    assert [m.attrs["id"] for m in got] == ["o0", "o1", "o2"]


async def test_registration_throttle(server: ServerProcess, clients: Clients) -> None:
    ip, other = source_ips(2)

    async def register(source: str, name: str) -> object:
        c = await clients.secured(source)
        await c.send(f"<iq type='set' id='reg'><query xmlns='jabber:iq:register'>"
                     f"<username>{name}</username><password>pw</password></query></iq>")
        return await c.stanza(lambda e: e.attrs.get("id") == "reg")

    first = await register(ip, f"reg{ip.replace('.', '')}a")
    assert first.attrs["type"] == "result"  # type: ignore[attr-defined]
    second = await register(ip, f"reg{ip.replace('.', '')}b")
    assert error_of(second) == ("wait", "policy-violation")
    third = await register(other, f"reg{other.replace('.', '')}c")
    assert third.attrs["type"] == "result"  # type: ignore[attr-defined]


async def test_subscription_request_rate(server: ServerProcess, clients: Clients) -> None:
    sender, *targets = server.new_users(7, prefix="flood")
    c = await clients.login(sender)
    receivers = [await clients.login(t) for t in targets]
    for r in receivers:
        await r.send("<presence/>")
        # RFC 6121 §4.2.2: the initial presence comes back to its own resource first.
        await r.stanza(lambda e: e.name == "presence" and "type" not in e.attrs)
    for i, t in enumerate(targets):   # six requests within a second
        await c.send(f"<presence to='{t}' type='subscribe' id='f{i}'/>")
    for r in receivers[:5]:
        await r.stanza(lambda e: e.name == "presence" and e.attrs.get("type") == "subscribe")
    refused = await c.stanza(lambda e: e.name == "presence" and e.attrs.get("id") == "f5")
    assert refused.attrs["type"] == "error"
    assert error_of(refused) == ("wait", "policy-violation")
    await receivers[5].silence(0.5)


# -- bounded output -----------------------------------------------------------------------------

async def test_client_that_stops_reading_is_disconnected(server: ServerProcess,
                                                         clients: Clients) -> None:
    flooder, sink = server.new_users(2, prefix="slow")
    f = await clients.login(flooder)
    s = await clients.login(sink)   # ... and never reads again
    assert s.jid is not None
    assert server.proc is not None
    before = rss_kib(server.proc.pid)
    body = "x" * 100_000
    total = 0
    start = time.monotonic()
    for i in range(400):   # 40 MB of headlines (never stored offline, never bounced)
        await f.send(f"<message to='{s.jid}' type='headline' id='h{i}'><body>{body}</body>"
                     f"</message>")
        total += len(body)
        if i % 50 == 49:
            await f.ping(timeout=10)   # the flooder is never the one held up
    after = rss_kib(server.proc.pid)
    elapsed = time.monotonic() - start
    cut = [line for line in server.log().splitlines() if "client is not reading" in line]
    assert len(cut) == 1 and s.jid in cut[0], cut
    # Far less than the 40 MB sent stayed in the server (the queue bound is 2 MiB).
    assert after - before < 20 * 1024, f"RSS grew {after - before} KiB for {total} B sent"
    assert elapsed < 60
    # The sink's connection was cut: reading now ends in EOF, not a stream of 40 MB.
    assert await s.closed(timeout=10)
