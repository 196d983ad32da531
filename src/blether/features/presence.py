"""RFC 6121 §4: exchanging presence — broadcast, probes, directed presence, unavailable.

* Initial presence (§4.2): the session becomes available with its priority (§4.7.2.3: an
  integer -128..127; anything else does not conform to the schema and is refused with
  bad-request, and nothing changes); the presence goes to every contact with a 'from' or
  'both' subscription (each contact's bare JID, through the router's outbound path, so
  blocking applies), to all of the account's available resources including the sender, the
  new resource gets the presence of the account's other available resources, probes go from
  the bare JID to every contact with 'to' or 'both', and SESSION_AVAILABLE fires (stored
  subscription requests, offline messages).
* Subsequent presence (§4.4): the same broadcast, without probes.
* Unavailable (§4.5): to subscribers, to the account's resources, and to every entity that got
  directed presence during the session (§4.6.3); the server generates it when the stream ends
  without one (§4.5.3, clean close and dropped connection alike). The last unavailable presence
  of the account is kept, stamped with XEP-0203 <delay/>, to answer probes while it is offline
  (at stream end in one transaction with XEP-0012's logout record, see last.py).
* Directed presence (§4.6): routed; recipients of available directed presence are remembered
  until a directed unavailable, unless they are subscribers (the broadcast reaches them anyway).
* Probes (§4.3): a client's probe is routed as is. A probe for an account is answered only if
  the prober's bare JID has a 'from'/'both' subscription (or is the account itself) with the
  last presence of each available resource, or, when none is available, the last unavailable
  presence (or a bare 'unavailable'); anyone else gets 'unsubscribed' and learns nothing —
  also for accounts that do not exist (§8.5.1), so probes cannot tell them apart.

Presence to an account (available/unavailable, from anyone) is left to the router's §8.5
delivery. Negative-priority resources receive presence but no bare-JID messages (decide()).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from blether import ns
from blether.core import events
from blether.core.module import RFC, Module, hook
from blether.core.session import Session
from blether.errors import StanzaError
from blether.features.last import WRITE_STAGED_PRIORITY, stage_at_session_end, write_staged
from blether.features.roster import RosterModule
from blether.features.roster.subscriptions import decode
from blether.jid import JID, JIDError
from blether.stanza import PRESENCE_SUBSCRIPTION_TYPES, error_reply, stanza_type
from blether.storage.api import StorageError
from blether.xml.element import Element, serialize

_PRIORITY = re.compile(r"^\s*[+-]?[0-9]{1,4}\s*$")
_KV_STORE = "presence"
_KV_LAST = "last-unavailable"


def parse_priority(stanza: Element) -> int | None:
    """The <priority/> of a presence (absent: 0); None if it is not an integer in -128..127."""
    text = stanza.find_text("priority", stanza.xmlns)
    if text is None:
        return 0
    if not _PRIORITY.match(text):
        return None
    value = int(text)
    return value if -128 <= value <= 127 else None


class PresenceModule(Module):
    name = "presence"
    depends = ("roster",)
    specs = (RFC(6121, "§4", "complete",
                 "broadcast, probes, directed presence, unavailable on stream end"),)

    @property
    def roster(self) -> RosterModule:
        module: RosterModule = self.ctx.services.module("roster")
        return module

    # -- from the account's clients ------------------------------------------------------
    @hook(events.STANZA_FROM_SESSION, kinds=("presence",))
    async def from_client(self, ev: events.FromSession) -> bool:
        stanza = ev.stanza
        if stanza.name != "presence":
            return False
        ptype = stanza_type(stanza)
        if ptype in PRESENCE_SUBSCRIPTION_TYPES:
            return False  # the roster feature's (RFC 6121 §3)
        session = ev.session
        if ev.to is None:
            if ptype == "available":
                await self._available(session, stanza)
            elif ptype == "unavailable":
                await self._unavailable(session, stanza)
            else:  # a probe or error with nobody to go to
                self.ctx.log.debug("[%s %s] ignored presence of type %s without 'to'",
                                   session.id, session.jid, ptype)
            return True
        if ptype == "available":
            if ev.to.bare != session.bare and not await self._subscriber(session.bare, ev.to):
                session.directed.add(ev.to)
        elif ptype == "unavailable":
            session.directed.discard(ev.to)
        return False  # the router routes it (probes and errors too)

    async def _available(self, session: Session, stanza: Element) -> None:
        priority = parse_priority(stanza)
        if priority is None:
            session.send(error_reply(stanza, StanzaError(
                "bad-request", "<priority/> must be an integer from -128 to 127")))
            return
        initial = not session.available
        session.available = True
        session.priority = priority
        session.presence = stanza
        await self._broadcast(session, stanza)
        if not initial:
            return
        # §4.2.2: the new resource learns about the account's other available resources.
        for other in self.ctx.services.sessions.available(session.bare):
            if other is not session and other.presence is not None:
                session.send(other.presence.with_attrs(to=str(session.jid)))
        await self._probe(session)
        await self.ctx.services.hooks.notify(events.SESSION_AVAILABLE,
                                             events.SessionEvent(session))

    async def _unavailable(self, session: Session, stanza: Element, ending: bool = False
                           ) -> None:
        """`ending`: called for SESSION_ENDED, whose late handler writes what is kept."""
        was_available = session.available
        session.available = False
        session.presence = None
        reached: set[JID] = set()
        if was_available:
            reached = await self._broadcast(session, stanza, echo=not session.closed)
        router = self.ctx.services.router
        for to in list(session.directed):
            if to.bare not in reached:  # §4.6.3; subscribers already had the broadcast
                await router.route_from_account(stanza.with_attrs(to=str(to)), to, session.jid)
        session.directed.clear()
        if not was_available:
            return
        if not self.ctx.services.sessions.available(session.bare):
            await self._keep_last(session, stanza, ending)
        await self.ctx.services.hooks.notify(events.SESSION_UNAVAILABLE,
                                             events.SessionEvent(session))

    async def _broadcast(self, session: Session, stanza: Element, echo: bool = True) -> set[JID]:
        """Send a presence to the subscribers and to the account's available resources;
        returns the subscribers' bare JIDs."""
        reached: set[JID] = set()
        router = self.ctx.services.router
        for contact in await self._contacts(session, ("from", "both")):
            reached.add(contact)
            await router.route_from_account(stanza.with_attrs(to=str(contact)), contact,
                                            session.jid)
        own = self.ctx.services.sessions.available(session.bare)
        if echo and session not in own:
            own.append(session)
        for other in own:
            other.send(stanza.with_attrs(to=str(other.jid)))
        return reached

    async def _probe(self, session: Session) -> None:
        """§4.3.1: probes from the account's bare JID to the contacts it is subscribed to."""
        user = session.bare
        for contact in await self._contacts(session, ("to", "both")):
            probe = Element("presence", ns.CLIENT,
                            {"type": "probe", "from": str(user), "to": str(contact)})
            await self.ctx.services.router.route_from_account(probe, contact, user)

    async def _contacts(self, session: Session, subscriptions: tuple[str, ...]) -> list[JID]:
        try:
            items = await self.roster.get_roster(session.bare)
        except StorageError:
            self.ctx.log.exception("[%s %s] reading the roster failed; presence goes to the "
                                   "account's own resources only", session.id, session.jid)
            return []
        out = []
        for item in items:
            if item.subscription in subscriptions:
                try:
                    out.append(JID.parse(item.jid))
                except JIDError:
                    self.ctx.log.warning("skipping invalid roster JID %r of %s", item.jid,
                                         session.bare)
        return out

    async def _subscriber(self, user: JID, other: JID) -> bool:
        try:
            return await self.roster.is_subscribed_from(user, other.bare)
        except StorageError:
            return False  # then it is remembered as directed: at worst a second unavailable

    async def _keep_last(self, session: Session, stanza: Element, ending: bool) -> None:
        """Remember the account's last unavailable presence for probes (§4.3.2); at session
        end in the same transaction as the other logout records (last.py)."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        delay = Element("delay", ns.DELAY, {"from": session.bare.domain, "stamp": stamp})
        kept = Element(stanza.name, stanza.xmlns,
                       {k: v for k, v in stanza.attrs.items() if k != "to"},
                       [*[c for c in stanza.children
                          if not (isinstance(c, Element) and c.name == "delay"
                                  and c.xmlns == ns.DELAY)], delay])
        if ending:
            stage_at_session_end(session, _KV_STORE, _KV_LAST, serialize(kept, ns.CLIENT))
            return
        try:
            await self.ctx.services.storage.kv.set(str(session.bare), _KV_STORE, _KV_LAST,
                                                   serialize(kept, ns.CLIENT))
        except StorageError:
            self.ctx.log.exception("[%s %s] keeping the last unavailable presence failed",
                                   session.id, session.jid)

    # -- to the account ------------------------------------------------------------------
    @hook(events.STANZA_TO_ACCOUNT, kinds=("presence",))
    async def to_account(self, ev: events.ToAccount) -> bool:
        if ev.stanza.name != "presence" or ev.stanza.attrs.get("type") != "probe":
            return False  # available/unavailable: the router's §8.5 delivery
        try:
            await self._answer_probe(ev.to.bare, ev.sender)
        except StorageError:
            self.ctx.log.exception("answering a probe from %s to %s failed", ev.sender, ev.to)
        return True

    async def _answer_probe(self, user: JID, prober: JID) -> None:
        router = self.ctx.services.router
        if prober.bare != user and not (await router.account_exists(user)
                                        and await self.roster.is_subscribed_from(user,
                                                                                 prober.bare)):
            # §4.3.2: not entitled to the presence; 'unsubscribed' lets its server fix a
            # subscription it wrongly believes in.
            await router.route_from_account(Element(
                "presence", ns.CLIENT,
                {"type": "unsubscribed", "from": str(user), "to": str(prober.bare)}),
                prober.bare, user)
            return
        available = self.ctx.services.sessions.available(user)
        for session in available:
            if session.presence is not None:
                await router.route_from_account(session.presence.with_attrs(
                    {"from": str(session.jid), "to": str(prober)}), prober, session.jid)
        if available:
            return
        last = await self._last_unavailable(user)
        sender = JID.parse(last.attrs["from"]) if "from" in last.attrs else user
        await router.route_from_account(last.with_attrs({"from": str(sender),
                                                         "to": str(prober)}), prober, sender)

    async def _last_unavailable(self, user: JID) -> Element:
        xml = await self.ctx.services.storage.kv.get(str(user), _KV_STORE, _KV_LAST)
        if xml is not None:
            try:
                return decode(xml)
            except Exception as exc:  # fall back to a plain unavailable
                self.ctx.log.error("unreadable last presence of %s: %s", user, exc)
        return Element("presence", ns.CLIENT, {"type": "unavailable", "from": str(user)})

    # -- stream end ----------------------------------------------------------------------
    @hook(events.SESSION_ENDED)
    async def on_ended(self, ev: events.SessionEnded) -> bool:
        """§4.5.3: the server sends the unavailable presence the client did not send."""
        session = ev.session
        if session.available or session.directed:
            unavailable = Element("presence", ns.CLIENT,
                                  {"type": "unavailable", "from": str(session.jid)})
            await self._unavailable(session, unavailable, ending=True)
        return False

    @hook(events.SESSION_ENDED, priority=WRITE_STAGED_PRIORITY)
    async def write_at_end(self, ev: events.SessionEnded) -> bool:
        await write_staged(self.ctx, ev.session)
        return False
