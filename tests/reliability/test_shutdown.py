"""Graceful shutdown and restart (SECURITY.md "Graceful shutdown"; RFC 6120 §4.9.3.22).

On SIGTERM the server stops accepting connections, ends every stream with the
`system-shutdown` stream error, tells contacts the sessions went unavailable (RFC 6121
§4.5.3: the server generates unavailable presence when a session ends without one), flushes
storage and exits with status 0 within 10 seconds — also with clients that stop reading or
never finish negotiating. Restarted on the same data directory it has lost nothing: offline
messages, rosters, pending subscription requests, private XML.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blether.storage import RosterItem, open_storage
from blether.xml.element import Element
from integration.harness import ServerProcess
from integration.rawclient import Closed, RawClient, StreamFooter
from reliability.helpers import NO_FEDERATION, Clients, create_accounts

DEADLINE = 10.0   # seconds from SIGTERM to exit


async def befriend(data_dir: Path, users: list[str]) -> None:
    """Mutual 'both' subscriptions between all `users`, written before the server starts."""
    storage = await open_storage(f"sqlite:///{(data_dir / 'blether.db').resolve()}")
    try:
        for a, b in itertools.permutations(users, 2):
            await storage.roster.put(a, RosterItem(jid=b, subscription="both"))
    finally:
        await storage.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    # A large output bound, so a client that stops reading keeps megabytes queued instead of
    # being cut off by the slow-reader rule before the shutdown starts.
    proc = ServerProcess(tmp_path, config_text=NO_FEDERATION +
                         "[limits]\noutbound_buffer_bytes = 67108864\n")
    yield proc
    proc.stop(signal.SIGKILL)


async def until_shutdown(c: RawClient) -> list[object]:
    """Everything the client receives up to the end of its stream; the last item is the
    stream error condition."""
    got: list[object] = []
    while True:
        ev = await c.next(timeout=DEADLINE + 5)
        if isinstance(ev, Element) and ev.name == "error":
            got.append(next(ch.name for ch in ev.elements() if ch.name != "text"))
            return got
        if isinstance(ev, StreamFooter | Closed):
            got.append(None)
            return got
        got.append(ev)


async def test_sigterm_ends_every_stream_and_exits_in_time(server: ServerProcess,
                                                           tmp_path: Path) -> None:
    users = [f"u{i}@localhost" for i in range(20)]
    await create_accounts(tmp_path, [*users, "sink@localhost"])
    server.start()
    clients = Clients(server)
    try:
        sessions = [await clients.login(u) for u in users]
        for c in sessions:
            await c.send("<presence/>")
        # A client that stopped reading, with a lot queued for it ...
        sink = await clients.login("sink@localhost")
        assert sink.jid is not None
        for _ in range(20):
            await sessions[0].send(f"<message to='{sink.jid}' type='headline'><body>"
                                   f"{'x' * 100_000}</body></message>")
        # ... one that only sent its stream header, one stuck before the TLS handshake.
        half = await clients.connect()
        await half.open_stream()
        stuck = await clients.connect()
        await stuck.open_stream()
        await stuck.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        assert (await stuck.element()).name == "proceed"
        await sessions[-1].ping()

        assert server.proc is not None
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        ends = await asyncio.gather(*(until_shutdown(c) for c in [*sessions, half]))
        assert all(e[-1] == "system-shutdown" for e in ends), [e[-1] for e in ends]
        # Not accepting any more: the listening sockets are gone.
        with pytest.raises(OSError):
            await clients.connect()
        code = await asyncio.to_thread(server.proc.wait, DEADLINE + 5)
        elapsed = time.monotonic() - start
        assert code == 0, server.log()[-3000:]
        assert elapsed < DEADLINE, f"shutdown took {elapsed:.1f}s"
    finally:
        await clients.close()


@pytest.mark.parametrize("laggard", ["not-reading", "tls-handshake"])
async def test_a_laggard_connection_does_not_spoil_the_shutdown(
        server: ServerProcess, tmp_path: Path, laggard: str) -> None:
    """A connection that cannot be closed politely (its client reads nothing, or never
    finishes the TLS handshake) does not hold the exit past the deadline and is cut."""
    await create_accounts(tmp_path, ["talker@localhost", "sink@localhost"])
    server.start()
    clients = Clients(server)
    try:
        talker = await clients.login("talker@localhost")
        await talker.send("<presence/>")
        if laggard == "not-reading":
            sink = laggard_client = await clients.login("sink@localhost")
            await sink.send("<presence/>")
            for _ in range(100):   # 10 MB: more than the kernel's socket buffers hold
                await talker.send(f"<message to='{sink.jid}' type='headline'><body>"
                                  f"{'x' * 100_000}</body></message>")
        else:
            stuck = laggard_client = await clients.connect()
            await stuck.open_stream()
            await stuck.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            assert (await stuck.element()).name == "proceed"
        await talker.ping()
        assert server.proc is not None
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.proc.wait, DEADLINE + 5)
        elapsed = time.monotonic() - start
        assert code == 0, server.log()[-3000:]
        assert elapsed < DEADLINE, f"shutdown took {elapsed:.1f}s"
        assert await laggard_client.closed(timeout=5)
        print(f"\nshutdown with a {laggard} connection took {elapsed:.1f}s")
    finally:
        await clients.close()


async def test_contacts_are_told_sessions_went_unavailable(server: ServerProcess,
                                                           tmp_path: Path) -> None:
    users = ["alice@localhost", "bob@localhost", "carol@localhost"]
    await create_accounts(tmp_path, users)
    await befriend(tmp_path, users)
    server.start()
    clients = Clients(server)
    try:
        sessions = {u: await clients.login(u, resource="r") for u in users}
        for c in sessions.values():
            await c.send("<presence/>")
        for u, c in sessions.items():   # everybody sees everybody online
            for other in users:
                if other != u:
                    await c.stanza(lambda e, o=other: e.name == "presence"
                                   and e.attrs.get("from") == f"{o}/r")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        ends = dict(zip(users, await asyncio.gather(*(until_shutdown(c)
                                                      for c in sessions.values())),
                        strict=True))
        told = {(u, e.attrs["from"].split("/")[0])   # type: ignore[attr-defined]
                for u, got in ends.items() for e in got
                if getattr(e, "name", None) == "presence"
                and e.attrs.get("type") == "unavailable"}  # type: ignore[attr-defined]
        # Streams close one after another; whoever is still connected when a contact's
        # session ends must hear of it: of every pair, at least one heard of the other
        # (what Prosody guarantees: each session's close broadcasts before the next).
        for a, b in itertools.combinations(users, 2):
            assert (a, b) in told or (b, a) in told, f"neither {a} nor {b} was told: {told}"
    finally:
        await clients.close()


async def test_restart_on_the_same_data_directory_loses_nothing(server: ServerProcess,
                                                                tmp_path: Path) -> None:
    users = ["romeo@localhost", "juliet@localhost", "nurse@localhost"]
    await create_accounts(tmp_path, users)
    server.start()
    clients = Clients(server)
    try:
        romeo = await clients.login("romeo@localhost")
        nurse = await clients.login("nurse@localhost")
        await romeo.send("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'>"
                         "<item jid='juliet@localhost' name='J'><group>Capulets</group></item>"
                         "</query></iq>"
                         "<presence to='juliet@localhost' type='subscribe'/>"
                         "<iq type='set' id='p1'><query xmlns='jabber:iq:private'>"
                         "<note xmlns='urn:test:note'>balcony at nine</note></query></iq>")
        for i in range(20):
            await romeo.send(f"<message to='juliet@localhost' id='m{i}' type='chat'>"
                             f"<body>{i}</body></message>")
            await nurse.send(f"<message to='juliet@localhost' id='n{i}'><body>{i}</body>"
                             f"</message>")
        await romeo.ping()
        await nurse.ping()
        assert server.stop() == 0, server.log()[-3000:]

        server.start()
        juliet = await clients.login("juliet@localhost")
        await juliet.send("<presence/>")
        got = []
        subscribe = None
        while len(got) < 40 or subscribe is None:
            el = await juliet.element()
            if el.name == "message":
                got.append(el.attrs["id"])
            elif el.name == "presence" and el.attrs.get("type") == "subscribe":
                subscribe = el
        assert [g for g in got if g.startswith("m")] == [f"m{i}" for i in range(20)]
        assert [g for g in got if g.startswith("n")] == [f"n{i}" for i in range(20)]
        assert subscribe.attrs["from"] == "romeo@localhost"
        await juliet.silence(0.5)   # nothing twice

        romeo = await clients.login("romeo@localhost")
        await romeo.send("<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>"
                         "<iq type='get' id='p2'><query xmlns='jabber:iq:private'>"
                         "<note xmlns='urn:test:note'/></query></iq>")
        roster = await romeo.stanza(lambda e: e.attrs.get("id") == "r2")
        (item,) = roster.find("query", "jabber:iq:roster").find_all("item")  # type: ignore[union-attr]
        assert item.attrs == {"jid": "juliet@localhost", "name": "J", "subscription": "none",
                              "ask": "subscribe"}
        assert item.find_text("group", "jabber:iq:roster") == "Capulets"
        private = await romeo.stanza(lambda e: e.attrs.get("id") == "p2")
        assert "balcony at nine" in repr(private)
    finally:
        await clients.close()
        assert server.stop() == 0
