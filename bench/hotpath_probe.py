"""In-process micro-benchmark of the router's hot path: CPU per routed stanza, no sockets.

    .venv/bin/python -m bench.hotpath_probe [--rounds 5] [--messages 20000] [--contacts 200]

Builds the real Services (router, hook bus, IQ dispatcher, the default feature modules and
SQLite storage in memory) with fake sessions whose `send` serializes like the c2s transport
(`XMPPStream.element`: `serialize(el, "jabber:client").encode()`), then measures with
`time.process_time()` (CPU of this process, robust on a shared machine):

* `route`  — `Router.from_session` for a chat message to a connected full JID (the
  `throughput` scenario's stanza), pre-parsed; includes delivery and serialization;
* `parse+route` — the same stanzas fed as bytes through `XMLStreamParser` first;
* `fanout` — one user with `--contacts` mutual contacts, all online, changes presence; CPU per
  delivered presence (the `fanout` scenario).

Each figure is the best of `--rounds` rounds (the least disturbed by other processes). Unlike
`bench.run` it isolates the Python work the router does from the transport, the parser's
buffering and the event loop, so the figures are lower than the server's CPU per message.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from typing import Any

from blether.config import Config
from blether.core import events
from blether.core.auth import Authenticator
from blether.core.modules import ModuleManager
from blether.core.router import Router
from blether.core.services import Services
from blether.core.session import Session
from blether.errors import StreamError
from blether.features import DEFAULT_MODULES, REGISTRY
from blether.jid import JID
from blether.storage import RosterItem, open_storage
from blether.xml.element import Element, serialize
from blether.xml.parser import ElementParsed, XMLStreamParser

HOST = "bench.local"
BODY = " The quick brown fox jumps over the lazy dog."
HEADER = (b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
          b" to='" + HOST.encode() + b"' version='1.0'>")


class ProbeSession(Session):
    """Serializes what it is sent, as C2SSession does, and counts it."""

    def __init__(self, jid: JID) -> None:
        super().__init__(jid, "127.0.0.1")
        self.count = 0
        self.last = b""

    def send(self, stanza: Element) -> None:
        if not self.closed:
            self.last = serialize(stanza, "jabber:client").encode()
            self.count += 1

    def send_bytes(self, data: bytes) -> None:
        self.last = data
        self.count += 1

    async def close(self, error: StreamError | None = None) -> None:
        self.closed = True


async def build() -> Services:
    config = Config.model_validate({"hosts": [HOST]})
    storage = await open_storage(f"sqlite:///{tempfile.mkdtemp(prefix='hotpath')}/probe.db")
    s = Services(config=config, storage=storage, hosts=frozenset(config.hosts))
    s.router = Router(s)
    s.auth = Authenticator(storage.accounts, iterations=4096)
    s.modules = ModuleManager(s, REGISTRY)
    s.modules.load(list(DEFAULT_MODULES), config.module_options)
    await s.modules.start()
    return s


async def login(s: Services, full: str, *, available: bool = True) -> ProbeSession:
    jid = JID.parse(full)
    if not await s.storage.accounts.exists(str(jid.bare)):
        await s.auth.create_account(str(jid.bare), "secret")
    session = ProbeSession(jid)
    s.sessions.add(session)
    await s.hooks.notify(events.SESSION_BOUND, events.SessionEvent(session))
    if available:
        session.available = True
        session.presence = Element("presence", "jabber:client", {"from": full})
    return session


def parse_all(data: bytes) -> list[Element]:
    parser = XMLStreamParser()
    parser.feed(HEADER)
    return [e.element for e in parser.feed(data) if isinstance(e, ElementParsed)]


def message_bytes(to: str, n: int) -> bytes:
    return b"".join(f"<message to='{to}' type='chat' id='m{i}'><body>#{i}:0:{i}#{BODY}"
                    f"</body></message>".encode() for i in range(n))


async def measure(label: str, rounds: int, unit: str, body: Any) -> float:
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        count, cpu = await body()
        best = min(best, cpu / count * 1e6)
    print(f"{label:12s} {best:7.2f} µs per {unit}")
    return best


async def main(rounds: int, n_messages: int, n_contacts: int) -> None:
    s = await build()
    try:
        a = await login(s, f"alice@{HOST}/pc")
        b = await login(s, f"bob@{HOST}/pc")
        data = message_bytes(str(b.jid), n_messages)
        parsed = parse_all(data)
        router = s.router

        async def route() -> tuple[int, float]:
            before = b.count
            t0 = time.process_time()
            for el in parsed:
                await router.from_session(a, el)
            cpu = time.process_time() - t0
            assert b.count - before == len(parsed), "messages were not delivered"
            return len(parsed), cpu

        async def parse_route() -> tuple[int, float]:
            parser = XMLStreamParser()
            parser.feed(HEADER)
            chunk = 64 * 1024
            before = b.count
            t0 = time.process_time()
            for i in range(0, len(data), chunk):
                for ev in parser.feed(data[i:i + chunk]):
                    if isinstance(ev, ElementParsed):
                        await router.from_session(a, ev.element)
            cpu = time.process_time() - t0
            assert b.count - before == n_messages, "messages were not delivered"
            return n_messages, cpu

        await route()  # warm caches (JIDs, blocklists, expat)
        await measure("route", rounds, "message", route)
        await measure("parse+route", rounds, "message", parse_route)

        hub = await login(s, f"hub@{HOST}/pc")
        contacts = []
        for i in range(n_contacts):
            c = await login(s, f"contact{i}@{HOST}/pc")
            await s.storage.roster.put(str(hub.bare), RosterItem(str(c.bare), subscription="both"))
            await s.storage.roster.put(str(c.bare), RosterItem(str(hub.bare),
                                                               subscription="both"))
            contacts.append(c)
        presences = parse_all(b"".join(
            b"<presence><status>#%d:0:1# benchmark presence %d</status></presence>" % (i, i)
            for i in range(50)))
        for p in presences[:2]:  # warm the roster cache
            await router.from_session(hub, p)

        async def fanout() -> tuple[int, float]:
            before = sum(c.count for c in contacts)
            t0 = time.process_time()
            for p in presences:
                await router.from_session(hub, p)
            cpu = time.process_time() - t0
            delivered = sum(c.count for c in contacts) - before
            assert delivered == len(presences) * n_contacts, delivered
            return delivered, cpu

        await measure("fanout", rounds, "presence", fanout)
    finally:
        await s.modules.stop()
        await s.storage.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--contacts", type=int, default=200)
    args = ap.parse_args()
    asyncio.run(main(args.rounds, args.messages, args.contacts))
