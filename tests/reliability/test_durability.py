"""Durability under `kill -9` (SECURITY.md "Durability": SQLite WAL with synchronous=FULL).

Senders keep sending chat messages to an account that is offline throughout, add roster items
and send it a subscription request, while the server is killed with SIGKILL at a random
moment, restarted on the same data directory, killed again, and so on. Then the recipient
logs in once and must get every *accepted* message exactly once.

What counts as accepted — stated precisely, because this is what the test can know:
  a sender sends messages M1…Mk, then `<iq type='get'><ping/></iq>` to the server. A stream's
  stanzas are processed strictly in order (RFC 6120 §10.1) and the c2s loop awaits each
  stanza's handling — for a message to an offline account, the committed offline-store insert
  (XEP-0160) — before it reads the next one. So when the ping's result arrives, M1…Mk have been
  committed: they are accepted. The same holds for a roster set (its result is sent after the
  commit) and for a subscription request followed by an answered ping (kept as a pending
  inbound request, RFC 6121 §3.1.3).
Messages after the last answered ping may or may not have survived the kill; none may be
duplicated, and nothing may appear that was never sent.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path

from integration.harness import ServerProcess
from integration.rawclient import RawClient
from reliability.helpers import NO_FEDERATION, Clients, create_accounts

ROUNDS = int(os.environ.get("BLETHER_DURABILITY_ROUNDS", "5"))
SENDERS = 3
BATCH = 5
CONFIG = NO_FEDERATION + "[module_options.offline]\nquota = 1000000\n"


@dataclass
class Ledger:
    sent: set[str] = field(default_factory=set)        # every message id ever written
    accepted: set[str] = field(default_factory=set)    # ids followed by an answered ping
    roster_accepted: set[str] = field(default_factory=set)
    subscribed: set[str] = field(default_factory=set)  # senders whose request was accepted


async def sender(c: RawClient, me: str, to: str, rnd: int, ledger: Ledger) -> None:
    """Send batches followed by a ping, pipelined (up to 4 pings outstanding), until the
    connection dies; record what was sent and what the answered pings make accepted."""
    pending: dict[str, list[str]] = {}   # ping id -> message ids before it
    window = asyncio.Semaphore(4)

    async def write() -> None:
        if me not in ledger.subscribed:
            await c.send(f"<presence to='{to}' type='subscribe'/>")
            pending[f"sub-{me}-{rnd}"] = [f"sub:{me}"]
            await c.send(f"<iq type='get' id='sub-{me}-{rnd}' to='localhost'>"
                         f"<ping xmlns='urn:xmpp:ping'/></iq>")
        seq = 0
        while True:
            await window.acquire()
            ids = [f"{me}-{rnd}-{seq + i}" for i in range(BATCH)]
            seq += BATCH
            data = "".join(f"<message to='{to}' id='{i}' type='chat'><body>{i}</body>"
                           f"</message>" for i in ids)
            contact = f"contact-{me.split('@')[0]}-{rnd}-{seq}@localhost"
            data += (f"<iq type='set' id='roster-{contact}'><query xmlns='jabber:iq:roster'>"
                     f"<item jid='{contact}'/></query></iq>")
            ping = f"ping-{me}-{rnd}-{seq}"
            data += f"<iq type='get' id='{ping}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
            pending[ping] = ids
            ledger.sent.update(ids)
            c.writer.write(data.encode())
            await c.writer.drain()

    async def read() -> None:
        while True:
            el = await c.element(timeout=30)
            iq_id = el.attrs.get("id", "")
            if el.name != "iq" or el.attrs.get("type") != "result":
                continue
            if iq_id.startswith("roster-"):
                ledger.roster_accepted.add(iq_id.removeprefix("roster-"))
            elif iq_id in pending:
                for mid in pending.pop(iq_id):
                    if mid.startswith("sub:"):
                        ledger.subscribed.add(mid.removeprefix("sub:"))
                    else:
                        ledger.accepted.add(mid)
                if iq_id.startswith("ping-"):
                    window.release()

    tasks = [asyncio.create_task(write()), asyncio.create_task(read())]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)   # the connection died: expected


async def one_round(server: ServerProcess, users: list[str], to: str, rnd: int,
                    ledger: Ledger, rng: random.Random) -> None:
    server.start()
    clients = Clients(server)
    try:
        logged = [await clients.login(u) for u in users]
        tasks = [asyncio.create_task(sender(c, u, to, rnd, ledger))
                 for c, u in zip(logged, users, strict=True)]
        await asyncio.sleep(rng.uniform(0.3, 2.0))
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        assert server.stop() == -signal.SIGKILL
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        await clients.close()


async def test_accepted_messages_survive_sigkill_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(os.environ.get("BLETHER_DURABILITY_SEED"))
    recipient = "offline@localhost"
    users = [f"sender{i}@localhost" for i in range(SENDERS)]
    await create_accounts(tmp_path, [recipient, *users])
    server = ServerProcess(tmp_path, config_text=CONFIG)
    ledger = Ledger()
    for rnd in range(ROUNDS):
        await one_round(server, users, recipient, rnd, ledger, rng)
    assert ledger.accepted, "no message was accepted: the rounds were too short"

    server.start()
    clients = Clients(server)
    try:
        r = await clients.login(recipient)
        await r.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>"
                     "<presence/>")
        received: list[str] = []
        requests: set[str] = set()
        while True:   # everything stored is written at initial presence; then silence
            try:
                el = await r.element(timeout=3)
            except AssertionError:
                break
            if el.name == "message":
                assert el.find_text("body", "jabber:client") == el.attrs["id"], el
                received.append(el.attrs["id"])
            elif el.name == "presence" and el.attrs.get("type") == "subscribe":
                requests.add(el.attrs["from"])
        duplicates = {m for m in received if received.count(m) > 1}
        assert not duplicates, f"delivered more than once: {sorted(duplicates)[:10]}"
        lost = ledger.accepted - set(received)
        assert not lost, f"{len(lost)} accepted messages lost, e.g. {sorted(lost)[:10]}"
        assert set(received) <= ledger.sent, "delivered a message nobody sent"
        assert ledger.subscribed <= requests, "an accepted subscription request was lost"
        # Roster items the server acknowledged are all still there.
        for u in users:
            c = await clients.login(u)
            await c.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
            reply = await c.stanza(lambda e: e.attrs.get("id") == "r")
            query = reply.find("query", "jabber:iq:roster")
            assert query is not None
            have = {i.attrs["jid"] for i in query.find_all("item", "jabber:iq:roster")}
            mine = {j for j in ledger.roster_accepted
                    if j.startswith(f"contact-{u.split('@')[0]}-")}
            assert mine, f"no roster set of {u} was acknowledged"
            assert mine <= have, f"{len(mine - have)} acknowledged roster items lost"
        print(f"\ndurability: {ROUNDS} SIGKILLs, {len(ledger.sent)} messages sent, "
              f"{len(ledger.accepted)} accepted, {len(received)} delivered after restart "
              f"(0 lost, 0 duplicated); {len(ledger.roster_accepted)} roster items kept")
    finally:
        await clients.close()
        assert server.stop() == 0, server.log()[-3000:]
