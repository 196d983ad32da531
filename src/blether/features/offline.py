"""XEP-0160: Best Practices for Handling Offline Messages, stamped with XEP-0203 Delayed Delivery.

RFC 6121 §8.5.2.2.1 (and §8.5.3.2.1 for chat to an unknown resource) lets the server keep a
normal or chat message for an account that has no available resource with a non-negative
priority; the router asks this module through MESSAGE_OFFLINE. What is kept (XEP-0160 §3):

* `normal` and `chat` messages; never `groupchat`, `headline` or `error`;
* not a message that carries only XEP-0085 chat states and no body (XEP-0160 §3, "chat");
* not a message with the XEP-0334 `<no-store/>` hint; a `<store/>` hint overrides the
  chat-state rule. `<no-permanent-store/>` does NOT prevent offline storage: XEP-0334 §4
  says such a sender "may be happy for it to be stored temporarily as a normal part of
  delivery (e.g. if the recipient is offline)" — offline storage is exactly that (ejabberd
  checks only `<no-store/>` too).

Each kept message gets a XEP-0203 `<delay from='domain' stamp='…Z'>Offline Storage</delay>`
(the time it was received, UTC, XEP-0082) and keeps its original 'to' (RFC 6121 §8.5.2.1.1:
never rewritten). When the account's queue already holds `quota` messages the sender gets
`service-unavailable` (XEP-0160 §2 step 3), bounced here with an explanatory text; a storage
failure gets `internal-server-error` (what ejabberd answers for a database failure).

Delivery (XEP-0160 §2 step 5): when a session sends available presence with a non-negative
priority — its initial presence, or a later presence that raises its priority from negative
to non-negative — every stored message is written to that session, oldest first, and then
deleted; SESSION_AVAILABLE picks up any stragglers.

Only this module stores offline messages (the router asks it for s2s, components and admin
announcements alike; the CLI only deletes, with the account), so the module knows which
accounts have an empty queue — it read them empty, or delivered and deleted everything — and
nothing was stored since: a login of such an account reads nothing, and the second pass at
SESSION_AVAILABLE reads only if something was stored after the first.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from blether import ns
from blether.core import events
from blether.core.module import XEP, Module, ModuleContext, hook
from blether.core.session import Session
from blether.errors import StanzaError
from blether.stanza import stanza_type
from blether.storage.api import StorageError
from blether.xml.element import Element, serialize
from blether.xml.parser import ElementParsed, ParserLimits, XMLError, XMLStreamParser

HINTS = "urn:xmpp:hints"                    # XEP-0334
MESSAGE_EVENTS = "jabber:x:event"           # XEP-0022, the chat states' predecessor
NEVER_STORED_TYPES = frozenset({"groupchat", "headline", "error"})
# Children a "standalone chat state" message may carry besides the state itself (the set
# ejabberd's xmpp_util:is_standalone_chat_state ignores).
_CHAT_STATE_COMPANIONS = frozenset({ns.CHATSTATES, ns.DELAY, MESSAGE_EVENTS, HINTS})

_PRIORITY = re.compile(r"^\s*[+-]?[0-9]{1,4}\s*$")
# Accounts remembered as having an empty queue (a forgotten one costs one read at its login).
KNOWN_EMPTY_LIMIT = 100_000

# The stored XML is parsed back as the only stanza of a jabber:client stream, so whatever
# content namespace it arrived in (jabber:client, jabber:server) it comes back as jabber:client.
_STREAM_HEADER = (b"<stream:stream xmlns='jabber:client' "
                  b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


class OfflineOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quota: int = Field(1000, ge=0, description="messages kept per account; 0 stores none")


def xep0082_stamp(when: datetime) -> str:
    """XEP-0082 DateTime in UTC with milliseconds: `2002-09-10T23:08:25.123Z`."""
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{utc.microsecond // 1000:03d}Z"


def should_store(stanza: Element) -> bool:
    """XEP-0160 §3 with the XEP-0334 hints: is this message worth keeping offline?"""
    if stanza.name != "message":
        return False
    # normal and chat are stored; an unknown type counts as normal (RFC 6121 §5.2.2).
    if stanza_type(stanza) in NEVER_STORED_TYPES:
        return False
    if stanza.find("no-store", HINTS) is not None:
        return False
    if stanza.find("store", HINTS) is not None:
        return True
    return not is_standalone_chat_state(stanza)


def is_standalone_chat_state(stanza: Element) -> bool:
    """A message with a XEP-0085 chat state and nothing a person would read."""
    children = stanza.elements()
    if not any(c.xmlns == ns.CHATSTATES for c in children):
        return False
    return all(c.xmlns in _CHAT_STATE_COMPANIONS for c in children)


def with_delay(stanza: Element, domain: str, when: datetime) -> Element:
    """A copy of `stanza` with a XEP-0203 delay element added (the original is untouched)."""
    delay = Element("delay", ns.DELAY, {"from": domain, "stamp": xep0082_stamp(when)},
                    ["Offline Storage"])
    return Element(stanza.name, stanza.xmlns, dict(stanza.attrs), [*stanza.children, delay])


def encode(stanza: Element) -> str:
    """Serialize for storage, relative to the stanza's own namespace (so no xmlns on top)."""
    return serialize(stanza, stanza.xmlns)


def decode(xml: str) -> Element:
    """Parse a stored stanza back as a jabber:client stanza; raises XMLError or ValueError."""
    data = xml.encode("utf-8")
    # The XML was written by us from a stanza that already passed the stream limits; the
    # limits here only have to let any such stanza (plus the delay element) through.
    limits = ParserLimits(max_stanza_bytes=len(data) + 1, max_depth=1024, max_attrs=1024,
                          max_elements=1_000_000, max_header_bytes=len(_STREAM_HEADER) + 1)
    parsed = XMLStreamParser(limits).feed(_STREAM_HEADER + data)
    stanzas = [e.element for e in parsed if isinstance(e, ElementParsed)]
    if len(stanzas) != 1:
        raise ValueError(f"expected one stored stanza, found {len(stanzas)}")
    return stanzas[0]


def presence_priority(presence: Element) -> int | None:
    """The <priority/> of an available presence (RFC 6121 §4.7.2.3; absent = 0), None if it
    is not an integer in -128..127 (the presence feature refuses such a presence)."""
    text = presence.find_text("priority", presence.xmlns)
    if text is None:
        return 0
    if not _PRIORITY.match(text):
        return None
    value = int(text)
    return value if -128 <= value <= 127 else None


class OfflineModule(Module):
    name = "offline"
    specs = (
        XEP(160, "1.0.1", "complete", "quota option; service-unavailable when full"),
        XEP(203, "2.0", "complete", "delay added to messages stored offline"),
        XEP(334, "1.0.0", "partial", "offline storage honours <no-store/> and <store/>"),
    )
    host_features = (ns.MSGOFFLINE,)
    Options = OfflineOptions

    options: OfflineOptions

    def __init__(self, ctx: ModuleContext, options: OfflineOptions) -> None:
        super().__init__(ctx, options)
        # One delivery at a time per account: two sessions becoming available together must
        # not both send (and then both delete) the same messages.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = \
            weakref.WeakValueDictionary()
        # Accounts whose stored queue is known to be empty (see the module docstring).
        self._empty: set[str] = set()
        # Pushes in flight per account, and the accounts whose queue is being read, with
        # whether a push was in flight or started meanwhile: then that read may not have seen
        # it, and the queue is not known to be empty afterwards.
        self._pushing: dict[str, int] = {}
        self._reading: dict[str, bool] = {}

    # -- storing ---------------------------------------------------------------------------
    @hook(events.MESSAGE_OFFLINE)
    async def store(self, ev: events.ToAccount) -> bool:
        """Keep the message; False (router bounces service-unavailable) if it must not be."""
        stanza = ev.stanza
        if not should_store(stanza):
            return False
        user = str(ev.to.bare)
        now = datetime.now(UTC)
        xml = encode(with_delay(stanza, ev.to.domain, now))
        router = self.ctx.services.router
        self._empty.discard(user)
        if user in self._reading:
            self._reading[user] = True
        self._pushing[user] = self._pushing.get(user, 0) + 1
        try:
            stored = await self.ctx.services.storage.offline.push(user, xml, now,
                                                                  self.options.quota)
        except StorageError:
            self.ctx.log.exception("storing an offline message for %s failed", user)
            await router.bounce(stanza, StanzaError("internal-server-error",
                                                    "offline storage failed"))
            return True
        finally:
            left = self._pushing[user] - 1
            if left:
                self._pushing[user] = left
            else:
                del self._pushing[user]
        if stored is None:
            self.ctx.log.info("offline queue of %s is full (%d); refusing a message from %s",
                              user, self.options.quota, ev.sender)
            await router.bounce(stanza, StanzaError("service-unavailable",
                                                    "the recipient's offline storage is full"))
            return True
        self.ctx.log.debug("stored offline message %d for %s", stored, user)
        return True

    # -- delivering ------------------------------------------------------------------------
    # Runs before the presence feature (which claims presence at a lower priority) and never
    # claims the stanza. A client's available presence with a non-negative priority that
    # makes it eligible for bare-JID messages — its initial presence, or a raise from a
    # negative priority — is XEP-0160 §2 step 5's "non-negative available presence": the
    # stored messages are written now, *before* the presence feature makes the session a
    # target for live messages, so a message sent after the recipient came online cannot
    # overtake the older stored ones (RFC 6120 §10.1 asks for in-order delivery per sender).
    @hook(events.STANZA_FROM_SESSION, priority=200, kinds=("presence",))
    async def on_presence(self, ev: events.FromSession) -> bool:
        stanza, session = ev.stanza, ev.session
        if (stanza.name != "presence" or ev.to is not None or "type" in stanza.attrs
                or (session.available and session.priority >= 0)):
            return False
        new = presence_priority(stanza)  # None: the presence feature refuses it
        if new is not None and new >= 0:
            await self.deliver(session)
        return False

    # SESSION_AVAILABLE (fired by the presence feature after initial presence) delivers what
    # arrived between the delivery above and the session becoming available — and everything
    # when the session was made available some other way.
    @hook(events.SESSION_AVAILABLE)
    async def on_available(self, ev: events.SessionEvent) -> bool:
        session = ev.session
        if session.priority >= 0:  # XEP-0160 §2 step 5: non-negative presence only
            await self.deliver(session)
        return False  # other features react to initial presence too

    async def deliver(self, session: Session) -> int:
        """Write the stored messages to `session` in order, then delete them. Returns count."""
        user = str(session.bare)
        lock = self._locks.get(user)
        if lock is None:
            lock = self._locks[user] = asyncio.Lock()
        async with lock:
            if user in self._empty:
                return 0
            self._reading[user] = user in self._pushing
            try:
                count, emptied = await self._send_stored(session, user)
            finally:
                missed = self._reading.pop(user)
            if emptied and not missed:
                if len(self._empty) >= KNOWN_EMPTY_LIMIT:
                    self._empty.clear()
                self._empty.add(user)
            return count

    async def _send_stored(self, session: Session, user: str) -> tuple[int, bool]:
        """Send and delete the stored messages; (how many, whether the queue is now empty)."""
        storage = self.ctx.services.storage.offline
        try:
            messages = await storage.list(user)
        except StorageError:
            self.ctx.log.exception("[%s %s] reading offline messages failed",
                                   session.id, session.jid)
            return 0, False
        if not messages:
            return 0, True
        if session.closed:
            return 0, False
        done: list[int] = []
        for message in messages:
            try:
                stanza = decode(message.stanza_xml)
            except (XMLError, ValueError) as exc:
                # Unreadable rows would block nothing but would never go away either.
                self.ctx.log.error("[%s %s] dropping unreadable offline message %d: %s",
                                   session.id, session.jid, message.id, exc)
                done.append(message.id)
                continue
            # session.send queues the bytes on the stream: for us that is "written". The
            # window between this and the client really reading them is what XEP-0198
            # acks close; stream management should delete only acked messages.
            session.send(stanza)
            done.append(message.id)
        emptied = True
        try:
            await storage.delete(user, done)
        except StorageError:
            # They were sent; they will be sent again at the next login (a duplicate is
            # better than a loss).
            self.ctx.log.exception("[%s %s] deleting %d delivered offline messages failed",
                                   session.id, session.jid, len(done))
            emptied = False
        self.ctx.log.info("[%s %s] delivered %d offline message(s)", session.id,
                          session.jid, len(done))
        return len(done), emptied
