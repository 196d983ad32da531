"""In-process services for feature tests: real router, hooks, IQ dispatch, modules and SQLite
storage (in memory), with fake sessions that record what the server writes to them.

    kit = await Kit.create(["disco", "caps"])
    alice = await kit.login("alice@localhost/pc")
    reply = await kit.query(alice, "<iq type='get' id='1' to='localhost'>…</iq>")

No sockets: a stanza goes through `Router.from_session` exactly as the C2S transport hands it
over, and a closed session ends as the transport ends it (registry removal, SESSION_ENDED).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from blether.config import Config
from blether.core import events
from blether.core.auth import Authenticator
from blether.core.modules import ModuleManager
from blether.core.router import Router
from blether.core.services import Services
from blether.core.session import Session
from blether.errors import StreamError
from blether.features import REGISTRY
from blether.jid import JID
from blether.storage import open_storage
from blether.xml.element import Element
from blether.xml.parser import ElementParsed, XMLStreamParser

CLIENT = "jabber:client"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def xml(text: str) -> Element:
    """Parse one stanza written with jabber:client as the default namespace."""
    parser = XMLStreamParser()
    parser.feed(b"<stream:stream xmlns='jabber:client' "
                b"xmlns:stream='http://etherx.jabber.org/streams'>")
    events_ = parser.feed(text.encode())
    parsed = [e.element for e in events_ if isinstance(e, ElementParsed)]
    assert len(parsed) == 1, text
    return parsed[0]


def condition(stanza: Element) -> str | None:
    err = stanza.find("error")
    if err is None:
        return None
    for child in err.elements():
        if child.xmlns == STANZA_ERRORS and child.name != "text":
            return child.name
    return None


class FakeSession(Session):
    def __init__(self, kit: Kit, jid: JID) -> None:
        super().__init__(jid, "127.0.0.1")
        self.kit = kit
        self.sent: list[Element] = []
        self.close_error: StreamError | None = None

    def send(self, stanza: Element) -> None:
        if not self.closed:
            self.sent.append(stanza)

    def send_bytes(self, data: bytes) -> None:
        raise AssertionError("feature tests expect elements")

    async def close(self, error: StreamError | None = None) -> None:
        if self.closed:
            return
        self.close_error = error
        await self.kit.end(self, "error" if error is not None else "closed")

    def take(self, where: Callable[[Element], bool] | None = None) -> list[Element]:
        """Remove and return what the server sent (only the matching stanzas if `where`)."""
        taken = [s for s in self.sent if where is None or where(s)]
        self.sent = [s for s in self.sent if s not in taken]
        return taken


# The feature suite runs on the embedded SQLite by default; with BLETHER_FEATURE_STORAGE_DSN
# (a PostgreSQL URL whose user may create databases) every Kit gets a fresh PostgreSQL database
# cloned from a migrated template, so the same tests check the features on both backends.
PG_DSN = os.environ.get("BLETHER_FEATURE_STORAGE_DSN", "")
_template: str | None = None
_created: list[str] = []   # every database this process made; all dropped at exit


def _drop_all_created() -> None:
    async def drop() -> None:
        for name in _created:
            await _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    asyncio.run(drop())


async def _pg_execute(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _with_database(dsn: str, name: str) -> str:
    return dsn.rsplit("/", 1)[0] + "/" + name


async def _storage_url() -> tuple[str, Callable[[], Awaitable[None]] | None]:
    global _template
    if not PG_DSN:
        return "sqlite://", None
    if _template is None:
        name = f"blether_kit_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        await _pg_execute(f'CREATE DATABASE "{name}"')
        migrated = await open_storage(_with_database(PG_DSN, name))
        await migrated.close()
        _template = name
        _created.append(name)
        atexit.register(_drop_all_created)
    db = f"blether_kit_{uuid.uuid4().hex[:12]}"
    await _pg_execute(f'CREATE DATABASE "{db}" TEMPLATE "{_template}"')
    _created.append(db)

    async def drop() -> None:
        await _pg_execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    return _with_database(PG_DSN, db), drop


class Kit:
    def __init__(self, services: Services,
                 drop: Callable[[], Awaitable[None]] | None = None) -> None:
        self.s = services
        self._drop = drop

    @classmethod
    async def create(cls, modules: Sequence[str], options: dict[str, dict[str, Any]] | None = None,
                     *, hosts: Sequence[str] = ("localhost",),
                     admins: Sequence[str] = ()) -> Kit:
        config = Config(hosts=list(hosts), admins=list(admins), module_options=options or {})
        url, drop = await _storage_url()
        storage = await open_storage(url)
        s = Services(config=config, storage=storage, hosts=frozenset(config.hosts))
        s.router = Router(s)
        s.auth = Authenticator(storage.accounts, iterations=4096)
        s.modules = ModuleManager(s, REGISTRY)
        s.modules.load(list(modules), config.module_options)
        await s.modules.start()
        return cls(s, drop)

    async def close(self) -> None:
        for session in list(self.s.sessions):
            await self.end(session, "closed")  # type: ignore[arg-type]
        await self.s.modules.stop()
        await self.s.storage.close()
        if self._drop is not None:
            await self._drop()

    def module(self, name: str) -> Any:
        return self.s.modules.get(name)

    async def account(self, bare: str) -> str:
        if not await self.s.storage.accounts.exists(bare):
            await self.s.auth.create_account(bare, "secret")
        return bare

    async def login(self, full: str) -> FakeSession:
        """Bind a session for `full` (creating the account if needed), like the transport."""
        jid = JID.parse(full)
        await self.account(str(jid.bare))
        session = FakeSession(self, jid)
        self.s.sessions.add(session)
        await self.s.hooks.notify(events.SESSION_BOUND, events.SessionEvent(session))
        return session

    async def end(self, session: FakeSession, reason: str = "dropped") -> None:
        session.closed = True
        if self.s.sessions.remove(session):
            await self.s.hooks.notify(events.SESSION_ENDED, events.SessionEnded(session, reason))

    async def send(self, session: FakeSession, stanza: str | Element) -> None:
        el = xml(stanza) if isinstance(stanza, str) else stanza
        session.last_active = time.monotonic()   # as the transport stamps every read
        await self.s.router.from_session(session, el)

    async def query(self, session: FakeSession, stanza: str) -> Element:
        """Send an IQ and return the one reply with its id."""
        el = xml(stanza)
        await self.send(session, el)
        iq_id = el.attrs["id"]
        replies = session.take(lambda s: s.name == "iq" and s.attrs.get("id") == iq_id
                               and s.attrs.get("type") in ("result", "error"))
        assert len(replies) == 1, f"expected one reply to {iq_id}, got {replies}"
        return replies[0]
