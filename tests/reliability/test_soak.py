"""Soak: many concurrent sessions exchanging messages and presence for a long time, with zero
messages or presence updates lost or duplicated, and the server's memory flat.

CI runs a reduced size (100 sessions for 30 s) as part of `make test`. The full soak of the
issue — 2 000 sessions for 10 minutes — is the same test, sized by the environment:

    BLETHER_SOAK_SESSIONS=2000 BLETHER_SOAK_SECONDS=600 .venv/bin/pytest -s \\
        tests/reliability/test_soak.py

Set-up: accounts and a ring of mutual ('both') subscriptions are written to the database
before the server starts (each session has two contacts); clients are raw TLS + SCRAM streams
(integration/rawclient.py), not slixmpp, so 2 000 of them fit in one process. Every session
sends a chat message to a random account's bare JID every `interval` seconds and changes its
status every 5 `interval`s (RFC 6121 §4.4 broadcast to both contacts), with `interval` chosen
for about 200 messages/s in all (at least 1 s). Exactly-once is checked per message id and
per (contact, status) pair. Memory: the server's resident set at the end must be within 10 %
of what it was after the first minute of exchange (or a third of the run, if shorter).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from blether.storage import RosterItem, open_storage
from blether.xml.element import Element
from blether.xml.parser import ElementParsed
from integration.harness import ServerProcess
from integration.rawclient import RawClient
from reliability.helpers import NO_FEDERATION, QuietServer, create_accounts, rss_kib

SESSIONS = int(os.environ.get("BLETHER_SOAK_SESSIONS", "100"))
SECONDS = float(os.environ.get("BLETHER_SOAK_SECONDS", "30"))
INTERVAL = max(1.0, SESSIONS / 200)
CONFIG = NO_FEDERATION + f"[limits]\nconnections_per_ip = {SESSIONS + 100}\n"


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)            # message ids
    received: Counter[str] = field(default_factory=Counter)
    presence_expected: Counter[tuple[str, str]] = field(default_factory=Counter)
    presence_received: Counter[tuple[str, str]] = field(default_factory=Counter)


def jid(i: int) -> str:
    return f"soak{i}@localhost"


def contacts(i: int) -> list[int]:
    return sorted({(i - 1) % SESSIONS, (i + 1) % SESSIONS} - {i})


async def prepare(data_dir: Path) -> None:
    await create_accounts(data_dir, [jid(i) for i in range(SESSIONS)])
    storage = await open_storage(f"sqlite:///{(data_dir / 'blether.db').resolve()}")
    try:
        for i in range(SESSIONS):
            for j in contacts(i):
                await storage.roster.put(jid(i), RosterItem(jid=jid(j), subscription="both"))
    finally:
        await storage.close()


class Session:
    def __init__(self, i: int, client: RawClient, tally: Tally) -> None:
        self.i = i
        self.c = client
        self.tally = tally
        self.seq = itertools.count()

    async def pump(self) -> None:
        """Read forever: count messages and status updates, answer the server's pings."""
        for ev in list(self.c.events):
            if isinstance(ev, Element):
                self.handle(ev)
        self.c.events.clear()
        while data := await self.c.reader.read(65536):
            for ev in self.c.parser.feed(data):
                if isinstance(ev, ElementParsed):
                    self.handle(ev.element)

    def handle(self, el: Element) -> None:
        if el.name == "message" and el.attrs.get("type") == "chat":
            self.tally.received[el.attrs["id"]] += 1
        elif el.name == "presence" and "type" not in el.attrs and \
                not el.attrs.get("from", "").startswith(f"{jid(self.i)}/"):
            status = el.find_text("status", "jabber:client")
            if status:
                self.tally.presence_received[(jid(self.i), status)] += 1
        elif el.name == "iq" and el.attrs.get("type") == "get":
            self.c.writer.write(f"<iq type='result' id='{el.attrs['id']}' "
                                f"to='{el.attrs.get('from', 'localhost')}'/>".encode())

    async def chatter(self, until: float, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0, INTERVAL))
        n = 0
        while time.monotonic() < until:
            to = rng.randrange(SESSIONS)
            mid = f"m{self.i}-{next(self.seq)}"
            self.tally.sent[mid] += 1
            data = f"<message to='{jid(to)}' id='{mid}' type='chat'><body>{mid}</body></message>"
            n += 1
            if n % 5 == 0:
                status = f"s{self.i}-{n}"
                for j in contacts(self.i):
                    self.tally.presence_expected[(jid(j), status)] += 1
                data += f"<presence><status>{status}</status></presence>"
            self.c.writer.write(data.encode())
            await self.c.writer.drain()
            await asyncio.sleep(INTERVAL)


async def login_all(server: ServerProcess, tally: Tally) -> list[Session]:
    gate = asyncio.Semaphore(50)

    async def one(i: int) -> Session:
        async with gate:
            c = await RawClient.login(server.bind, server.port, jid(i), resource="soak")
            await c.send("<presence/>")
            return Session(i, c, tally)

    return list(await asyncio.gather(*(one(i) for i in range(SESSIONS))))


@pytest.mark.timeout(SECONDS + 900)
async def test_soak(tmp_path: Path) -> None:
    await prepare(tmp_path)
    server = QuietServer(tmp_path, config_text=CONFIG)
    server.start()
    assert server.proc is not None
    tally = Tally()
    sessions: list[Session] = []
    pumps: list[asyncio.Task[None]] = []
    try:
        t0 = time.monotonic()
        sessions = await login_all(server, tally)
        pumps = [asyncio.create_task(s.pump()) for s in sessions]
        login_time = time.monotonic() - t0
        await asyncio.sleep(2)   # initial presence and probe answers settle
        rng = random.Random(1)
        start = time.monotonic()
        until = start + SECONDS
        chatter = [asyncio.create_task(s.chatter(until, random.Random(rng.random())))
                   for s in sessions]
        await asyncio.sleep(min(60.0, SECONDS / 3))
        rss_early = rss_kib(server.proc.pid)
        await asyncio.gather(*chatter)
        # Everything sent is delivered within a few seconds; wait for the counts to match.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
                sum(tally.received.values()) < sum(tally.sent.values()) or
                sum(tally.presence_received.values()) < sum(tally.presence_expected.values())):
            await asyncio.sleep(0.5)
        rss_end = rss_kib(server.proc.pid)
        elapsed = time.monotonic() - start
        lost = [m for m in tally.sent if tally.received[m] == 0]
        duplicated = [m for m, n in tally.received.items() if n > 1]
        unknown = [m for m in tally.received if m not in tally.sent]
        p_lost = [k for k in tally.presence_expected if tally.presence_received[k] == 0]
        p_dup = [k for k, n in tally.presence_received.items() if n > 1]
        messages = sum(tally.sent.values())
        print(f"\nsoak: {SESSIONS} sessions (logged in in {login_time:.1f}s), {elapsed:.0f}s, "
              f"{messages} messages ({messages / SECONDS:.0f}/s), "
              f"{sum(tally.presence_expected.values())} presence deliveries; lost "
              f"{len(lost)}, duplicated {len(duplicated)}; presence lost {len(p_lost)}, "
              f"duplicated {len(p_dup)}; server RSS {rss_early / 1024:.1f} MiB after "
              f"{min(60.0, SECONDS / 3):.0f}s, {rss_end / 1024:.1f} MiB at the end "
              f"({(rss_end / rss_early - 1) * 100:+.1f} %)")
        assert messages > 0
        assert not lost, f"{len(lost)} messages lost, e.g. {lost[:5]}"
        assert not duplicated and not unknown, (duplicated[:5], unknown[:5])
        assert not p_lost, f"{len(p_lost)} presence updates lost, e.g. {p_lost[:5]}"
        assert not p_dup, f"{len(p_dup)} presence updates duplicated, e.g. {p_dup[:5]}"
        assert rss_end <= rss_early * 1.10, f"RSS grew from {rss_early} to {rss_end} KiB"
        # Log out politely and let the server finish every session's end (each one writes
        # last activity and last presence) before stopping it.
        for s in sessions:
            s.c.writer.write(b"</stream:stream>")
        await asyncio.wait_for(asyncio.gather(*pumps), 120)
    finally:
        for t in pumps:
            t.cancel()
        for s in sessions:
            s.c.abort()
        code = server.stop()
    assert code == 0, server.log()[-3000:]
    assert "Traceback" not in server.log()
