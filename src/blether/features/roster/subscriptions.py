"""RFC 6121 §3: presence subscriptions carried out at the user's server.

`subscription.transition` decides (Appendix A); this module reads the item and the stored
request, applies the outcome to storage, pushes the changed item, and then — with no roster
lock held, see cache.py — routes, delivers and answers:

* outbound (§3.1.2, §3.2.2, §3.3.2): the stanza leaves stamped with the user's bare JID
  (RFC 6120 §8.1.2.1) and addressed to the contact's bare JID; subscribe and unsubscribe are
  always routed, subscribed/unsubscribed only when they change the state (otherwise a
  'subscribed' is a §3.4 pre-approval and an 'unsubscribed' may cancel one);
* inbound (§3.1.3, §3.1.6, §3.2.3, §3.3.3): delivered to the user's available resources only
  when the state changes; a 'subscribe' is also stored, with all its content (a <status/>
  reason, extensions), and delivered again at every initial presence until answered;
* presence follows access: a contact that gains 'from' gets the current presence of every
  available resource, one that loses it gets 'unavailable' from each of them.

Contacts on other domains go through the same router calls (ROUTE_REMOTE picks them up).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from blether import ns
from blether.jid import JID
from blether.storage.api import RosterItem
from blether.xml.element import Element, serialize
from blether.xml.parser import ElementParsed, ParserLimits, XMLStreamParser

from .cache import RosterView
from .items import item_element
from .subscription import Direction, Kind, Outcome, State, Status, transition

if TYPE_CHECKING:
    from blether.core.services import Services

    from . import RosterModule

_HEADER = (b"<stream:stream xmlns='jabber:client' "
           b"xmlns:stream='http://etherx.jabber.org/streams'>")


def encode(stanza: Element) -> str:
    return serialize(stanza, ns.CLIENT)


def decode(xml: str) -> Element:
    """A stored stanza back as an element (our own serialization; generous limits)."""
    data = xml.encode()
    limits = ParserLimits(max_stanza_bytes=len(data) + 1, max_depth=1000,
                          max_attrs=1000, max_elements=1_000_000,
                          max_header_bytes=len(_HEADER) + 1)
    events = XMLStreamParser(limits).feed(_HEADER + data)
    stanzas = [e.element for e in events if isinstance(e, ElementParsed)]
    if len(stanzas) != 1:
        raise ValueError(f"expected one stored stanza, found {len(stanzas)}")
    return stanzas[0]


def status_of(item: RosterItem | None, pending_in: bool) -> Status:
    if item is None:
        return Status(State.of("none", False, pending_in))
    return Status(State.of(item.subscription, item.ask, pending_in), item.approved)


def presence(type_: str, frm: JID, to: JID) -> Element:
    return Element("presence", ns.CLIENT, {"type": type_, "from": str(frm), "to": str(to)})


class RosterFull(Exception):
    """The user's roster already holds the configured maximum of items."""


class Subscriptions:
    def __init__(self, module: RosterModule) -> None:
        self.m = module

    @property
    def s(self) -> Services:
        return self.m.ctx.services

    # -- the user sends ------------------------------------------------------------------
    async def outbound(self, stanza: Element, user: JID, contact: JID) -> None:
        """A subscription stanza from one of the user's clients (RFC 6121 A.2).

        Raises RosterFull if it would add an item to a full roster (nothing changes then).
        """
        kind = Kind(stanza.attrs["type"])
        async with self.m.cache.edit(str(user)) as roster:
            item = await roster.get(str(contact))
            pending = await roster.has_pending(str(contact))
            outcome = transition(Direction.OUTBOUND, kind, status_of(item, pending))
            if item is None and outcome.push and await roster.count() >= self.m.options.max_items:
                raise RosterFull
            await self._apply(roster, user, contact, item, outcome, None)
        if outcome.forward:
            stamped = stanza.with_attrs({"from": str(user), "to": str(contact)})
            await self.s.router.route_from_account(stamped, contact, user)
        await self._presence_follows(user, contact, outcome)

    # -- the contact sends -----------------------------------------------------------------
    async def inbound(self, stanza: Element, user: JID, contact: JID) -> None:
        """A subscription stanza for the local account `user` from `contact` (A.3)."""
        if not await self.s.router.account_exists(user):
            return  # RFC 6121 §8.5.1: subscription stanzas to no account are ignored
        kind = Kind(stanza.attrs["type"])
        # §3.1.3: a request to a full JID is treated as sent to the bare JID; the 'from' is the
        # contact's bare JID whatever the contact's server wrote (RFC 6120 §8.1.2.1).
        stamped = stanza.with_attrs({"from": str(contact), "to": str(user)})
        async with self.m.cache.edit(str(user)) as roster:
            item = await roster.get(str(contact))
            pending = await roster.has_pending(str(contact))
            outcome = transition(Direction.INBOUND, kind, status_of(item, pending))
            await self._apply(roster, user, contact, item, outcome, stamped)
        if outcome.forward:
            for session in self.s.sessions.available(user):
                session.send(stamped)
        if outcome.auto_reply is not None:
            await self.s.router.route_from_account(
                presence(outcome.auto_reply.value, user, contact), contact, user)
        await self._presence_follows(user, contact, outcome)

    # -- shared --------------------------------------------------------------------------
    async def _apply(self, roster: RosterView, user: JID, contact: JID,
                     item: RosterItem | None, outcome: Outcome,
                     request: Element | None) -> None:
        """Store the outcome and push the item; called with the user's roster lock held."""
        if outcome.request_answered:
            await roster.remove_pending(str(contact))
        if outcome.store_request and request is not None:
            await roster.add_pending(str(contact), encode(request))
        if outcome.push:
            state = outcome.new.state
            new = dataclasses.replace(item or RosterItem(jid=str(contact)),
                                      subscription=state.subscription,
                                      ask=state.pending_out, approved=outcome.new.approved)
            version = await roster.put(new)
            self.m.push(user, item_element(new), version)

    async def _presence_follows(self, user: JID, contact: JID, outcome: Outcome) -> None:
        if outcome.send_presence:
            await self.send_current_presence(user, contact)
        elif outcome.presence_revoked:
            await self.send_unavailable(user, contact)

    async def send_current_presence(self, user: JID, contact: JID) -> None:
        """The last presence of each available resource of `user`, to `contact` (§3.1.5)."""
        for session in self.s.sessions.available(user):
            if session.presence is not None:
                await self.s.router.route_from_account(
                    session.presence.with_attrs({"from": str(session.jid), "to": str(contact)}),
                    contact, session.jid)

    async def send_unavailable(self, user: JID, contact: JID) -> None:
        """'unavailable' from each available resource of `user` to `contact` (§3.2.2)."""
        for session in self.s.sessions.available(user):
            await self.s.router.route_from_account(
                presence("unavailable", session.jid, contact), contact, session.jid)

    async def removed(self, user: JID, item: RosterItem, pending_in: bool) -> None:
        """§2.5.2: after the item was removed, end the subscriptions in both directions."""
        contact = JID.parse(item.jid)
        state = State.of(item.subscription, item.ask, pending_in)
        router = self.s.router
        if state.has_to or state.pending_out:
            await router.route_from_account(presence("unsubscribe", user, contact), contact,
                                            user)
        if state.has_from or state.pending_in:
            await router.route_from_account(presence("unsubscribed", user, contact), contact,
                                            user)
        if state.has_from:
            await self.send_unavailable(user, contact)

    async def redeliver(self, user: JID) -> list[Element]:
        """The stored requests to deliver at an initial presence, oldest first (§3.1.3)."""
        out = []
        for contact, xml in await self.m.cache.pending(str(user)):
            try:
                out.append(decode(xml))
            except Exception as exc:  # one bad row must not hide the others
                self.m.ctx.log.error("unreadable stored subscription request %s -> %s: %s",
                                     contact, user, exc)
        return out
