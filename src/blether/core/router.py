"""The router (RFC 6120 §8.1, §10; RFC 6121 §8): stamps and validates addresses, lets features
claim a stanza through hooks, and otherwise carries out `delivery.decide()`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from blether.core import events
from blether.core.delivery import (
    Bounce,
    Deliver,
    HandleAtServer,
    Ignore,
    MessagePolicy,
    ResourceState,
    StoreOffline,
    UserSnapshot,
    decide,
)
from blether.core.iq import Target
from blether.core.session import Session
from blether.errors import StanzaError
from blether.jid import JID, JIDError
from blether.stanza import can_bounce, error_reply, stanza_type
from blether.xml.element import Element

if TYPE_CHECKING:
    from blether.core.services import Services

log = logging.getLogger(__name__)

IQ_TYPES = frozenset({"get", "set", "result", "error"})
MESSAGE_TYPES = frozenset({"normal", "chat", "groupchat", "headline", "error"})
PRESENCE_TYPES = frozenset({"available", "unavailable", "subscribe", "subscribed", "unsubscribe",
                            "unsubscribed", "probe", "error"})


class Router:
    def __init__(self, services: Services, policy: MessagePolicy = "most_available") -> None:
        self.s = services
        self.policy: MessagePolicy = policy

    # -- from a local client -------------------------------------------------------------
    async def from_session(self, session: Session, stanza: Element) -> None:
        """Handle one stanza from a bound client, in stream order (RFC 6120 §10.1)."""
        attrs = stanza.attrs
        frm = attrs.get("from")
        if frm is not None and frm != str(session.jid):
            try:
                claimed = JID.parse(frm)
            except JIDError:
                claimed = None
            if claimed != session.jid and claimed != session.bare:
                log.info("[%s %s] client claimed from=%r; stamped with its own JID",
                         session.id, session.jid, frm)
        if "xml:lang" in stanza.attrs:
            stanza = stanza.with_attrs(**{"from": str(session.jid)})
        else:  # RFC 6120 §8.1.5: a stanza without xml:lang gets the stream's default
            stanza = stanza.with_attrs(**{"from": str(session.jid), "xml:lang": session.lang})
        stype = stanza_type(stanza)
        to: JID | None = None
        to_text = stanza.attrs.get("to")
        try:
            if to_text is not None:
                to = JID.parse(to_text)
            self._check(stanza, stype)
        except JIDError as exc:
            self._reply_to(session, stanza, StanzaError("jid-malformed", str(exc)))
            return
        except StanzaError as exc:
            self._reply_to(session, stanza, exc)
            return
        if to is not None and str(to) != to_text:
            stanza = stanza.with_attrs(to=str(to))

        if await self.s.hooks.fire(events.STANZA_FROM_SESSION,
                                   events.FromSession(session, stanza, to)):
            return
        if to is None:
            if stanza.name == "iq":
                await self._iq_to_account(stanza, session.jid, session.bare, session)
                return
            if stanza.name == "message":  # RFC 6120 §10.3.1
                to = session.bare
                stanza = stanza.with_attrs(to=str(to))
            else:
                log.debug("[%s] presence broadcast with no presence feature loaded", session.id)
                return
        if stanza.name == "iq" and to == session.bare:
            await self._iq_to_account(stanza, session.jid, session.bare, session)
            return
        await self.route_from_account(stanza, to, session.jid)

    async def route_from_account(self, stanza: Element, to: JID, sender: JID) -> None:
        """Route a stanza leaving a local account, letting privacy features veto it first."""
        if await self.s.hooks.fire(events.STANZA_FROM_ACCOUNT,
                                   events.FromAccount(stanza, to, sender)):
            return
        await self.route(stanza, to, sender)

    @staticmethod
    def _check(stanza: Element, stype: str) -> None:
        if stanza.name == "iq":
            if "id" not in stanza.attrs:
                raise StanzaError("bad-request", "IQ stanzas need an 'id'")
            if stype not in IQ_TYPES:
                raise StanzaError("bad-request", "unknown IQ type")
            if stype in ("get", "set") and len(stanza.elements()) != 1:
                raise StanzaError("bad-request", "IQ get/set must contain exactly one child")
        elif stanza.name == "presence" and stype not in PRESENCE_TYPES:
            raise StanzaError("bad-request", "unknown presence type")

    # -- routing -------------------------------------------------------------------------
    async def route(self, stanza: Element, to: JID | None = None,
                    sender: JID | None = None) -> None:
        """Route a stanza whose 'from' and 'to' are set, wherever it came from."""
        if to is None:
            try:
                to = JID.parse(stanza.attrs["to"])
            except (KeyError, JIDError):
                log.warning("dropping stanza without a valid 'to': %r", stanza)
                return
        if sender is None:
            try:
                sender = JID.parse(stanza.attrs["from"])
            except (KeyError, JIDError):
                log.warning("dropping stanza without a valid 'from': %r", stanza)
                return
        if to.domain in self.s.hosts:
            if to.local is None:
                await self._to_host(stanza, to, sender)
            else:
                await self.deliver_to_account(stanza, to, sender)
            return
        if not await self.s.hooks.fire(events.ROUTE_REMOTE, events.ToRemote(stanza, to, sender)):
            await self.bounce(stanza, StanzaError("remote-server-not-found",
                                                  f"no route to {to.domain}"))

    async def _to_host(self, stanza: Element, to: JID, sender: JID) -> None:
        if stanza.name == "iq":
            session = self.s.sessions.get(sender) if sender.domain in self.s.hosts else None
            reply = await self.s.iq.dispatch(stanza, sender, to, Target.HOST, session)
            if reply is not None:
                await self._send_reply(reply, session)
            return
        if await self.s.hooks.fire(events.STANZA_TO_HOST, events.ToHost(stanza, to, sender)):
            return
        if stanza.name == "message" and stanza_type(stanza) not in ("error", "groupchat",
                                                                   "headline"):
            await self.bounce(stanza, StanzaError("service-unavailable"))

    async def deliver_to_account(self, stanza: Element, to: JID, sender: JID) -> None:
        if await self.s.hooks.fire(events.STANZA_TO_ACCOUNT,
                                   events.ToAccount(stanza, to, sender)):
            return
        stype = stanza_type(stanza)
        if stanza.name == "presence" and stype not in ("available", "unavailable", "error"):
            return  # subscription types and probes belong to the roster/presence features
        action = decide(stanza.name, stype, to.resource, await self.snapshot(to.bare),
                        self.policy)
        if isinstance(action, Deliver):
            for resource in action.resources:
                target = self.s.sessions.get(to.bare.with_resource(resource))
                if target is not None:
                    target.send(stanza)
        elif isinstance(action, HandleAtServer):
            session = self.s.sessions.get(sender) if sender.domain in self.s.hosts else None
            await self._iq_to_account(stanza, sender, to.bare, session)
        elif isinstance(action, StoreOffline):
            if not await self.s.hooks.fire(events.MESSAGE_OFFLINE,
                                           events.ToAccount(stanza, to, sender)):
                await self.bounce(stanza, StanzaError("service-unavailable"))
        elif isinstance(action, Bounce):
            await self.bounce(stanza, StanzaError(action.condition))
        elif isinstance(action, Ignore):
            log.debug("ignored %s to %s: %s", stanza.name, to, action.reason)

    async def snapshot(self, bare: JID) -> UserSnapshot:
        sessions = self.s.sessions.resources(bare)
        if sessions:
            return UserSnapshot(True, tuple(
                ResourceState(s.jid.resource or "", s.priority, s.available) for s in sessions))
        return UserSnapshot(await self.account_exists(bare))

    async def account_exists(self, bare: JID) -> bool:
        if self.s.sessions.is_online(bare):
            return True
        return await self.s.storage.accounts.exists(str(bare))

    async def _iq_to_account(self, stanza: Element, sender: JID, account: JID,
                             session: Session | None) -> None:
        if stanza.attrs.get("type") in ("get", "set") and not await self.account_exists(account):
            await self.bounce(stanza, StanzaError("service-unavailable"))
            return
        reply = await self.s.iq.dispatch(stanza, sender, account, Target.ACCOUNT, session)
        if reply is not None:
            await self._send_reply(reply, session)

    async def _send_reply(self, reply: Element, session: Session | None) -> None:
        if session is not None and reply.attrs.get("to") == str(session.jid):
            session.send(reply)
        else:
            await self.route(reply)

    # -- errors --------------------------------------------------------------------------
    async def bounce(self, stanza: Element, error: StanzaError) -> None:
        """Send the error reply for `stanza` to its sender, unless that would loop."""
        if not can_bounce(stanza) or "from" not in stanza.attrs:
            return
        await self.route(error_reply(stanza, error))

    def _reply_to(self, session: Session, stanza: Element, error: StanzaError) -> None:
        if can_bounce(stanza):
            reply = error_reply(stanza, error)
            session.send(reply.with_attrs(to=str(session.jid)))
