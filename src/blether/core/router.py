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
# RFC 6120 §8.2.2: the effective type of a stanza without one (stanza.stanza_type, inlined
# on the hot path).
_DEFAULT_TYPE = {"message": "normal", "presence": "available"}


class Router:
    def __init__(self, services: Services, policy: MessagePolicy = "most_available") -> None:
        self.s = services
        self.policy: MessagePolicy = policy

    # -- from a local client -------------------------------------------------------------
    async def from_session(self, session: Session, stanza: Element) -> None:
        """Handle one stanza from a bound client, in stream order (RFC 6120 §10.1)."""
        full = str(session.jid)
        attrs = stanza.attrs
        frm = attrs.get("from")
        if frm is not None and frm != full:
            try:
                claimed = JID.parse(frm)
            except JIDError:
                claimed = None
            if claimed != session.jid and claimed != session.bare:
                log.info("[%s %s] client claimed from=%r; stamped with its own JID",
                         session.id, session.jid, frm)
        # One new attribute dict with every change (what with_attrs would do in up to three
        # copies): 'from' stamped, and RFC 6120 §8.1.5's stream default for a stanza
        # without xml:lang.
        stamped = dict(attrs)
        stamped["from"] = full
        if "xml:lang" not in stamped:
            stamped["xml:lang"] = session.lang
        name = stanza.name
        stype = attrs.get("type") or _DEFAULT_TYPE.get(name, "")
        to: JID | None = None
        to_text = attrs.get("to")
        try:
            if to_text is not None:
                to = JID.parse(to_text)
            if name != "message":  # messages have nothing to check
                self._check(stanza, stype)
        except JIDError as exc:
            self._reply_to(session, Element(name, stanza.xmlns, stamped, stanza.children),
                           StanzaError("jid-malformed", str(exc)))
            return
        except StanzaError as exc:
            self._reply_to(session, Element(name, stanza.xmlns, stamped, stanza.children), exc)
            return
        if to is not None:
            to_str = str(to)
            if to_str != to_text:
                stamped["to"] = to_str
        stanza = Element(name, stanza.xmlns, stamped, stanza.children)

        hooks = self.s.hooks
        if hooks.wants(events.STANZA_FROM_SESSION, name) and await hooks.fire(
                events.STANZA_FROM_SESSION, events.FromSession(session, stanza, to), name):
            return
        if to is None:
            if name == "iq":
                await self._iq_to_account(stanza, session.jid, session.bare, session)
                return
            if name == "message":  # RFC 6120 §10.3.1
                to = session.bare
                stanza = stanza.with_attrs(to=str(to))
            else:
                log.debug("[%s] presence broadcast with no presence feature loaded", session.id)
                return
        if name == "iq" and to == session.bare:
            await self._iq_to_account(stanza, session.jid, session.bare, session)
            return
        await self.route_from_account(stanza, to, session.jid, session)

    async def route_from_account(self, stanza: Element, to: JID, sender: JID,
                                 session: Session | None = None) -> None:
        """Route a stanza leaving a local account, letting privacy features veto it first.

        `session` is the client session that sent it, if a client did (a veto answers it).
        """
        hooks = self.s.hooks
        name = stanza.name
        if hooks.wants(events.STANZA_FROM_ACCOUNT, name) and await hooks.fire(
                events.STANZA_FROM_ACCOUNT, events.FromAccount(stanza, to, sender, session), name):
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
        if not await self.s.hooks.fire(events.ROUTE_REMOTE, events.ToRemote(stanza, to, sender),
                                       stanza.name):
            await self.bounce(stanza, StanzaError("remote-server-not-found",
                                                  f"no route to {to.domain}"))

    async def _to_host(self, stanza: Element, to: JID, sender: JID) -> None:
        if stanza.name == "iq":
            session = self.s.sessions.get(sender) if sender.domain in self.s.hosts else None
            reply = await self.s.iq.dispatch(stanza, sender, to, Target.HOST, session)
            if reply is not None:
                await self._send_reply(reply, session)
            return
        if await self.s.hooks.fire(events.STANZA_TO_HOST, events.ToHost(stanza, to, sender),
                                   stanza.name):
            return
        if stanza.name == "message" and stanza_type(stanza) not in ("error", "groupchat",
                                                                   "headline"):
            await self.bounce(stanza, StanzaError("service-unavailable"))

    async def deliver_to_account(self, stanza: Element, to: JID, sender: JID) -> None:
        name = stanza.name
        hooks = self.s.hooks
        if hooks.wants(events.STANZA_TO_ACCOUNT, name) and await hooks.fire(
                events.STANZA_TO_ACCOUNT, events.ToAccount(stanza, to, sender), name):
            return
        stype = stanza.attrs.get("type") or _DEFAULT_TYPE.get(name, "")
        if name == "presence" and stype not in ("available", "unavailable", "error"):
            return  # subscription types and probes belong to the roster/presence features
        sessions = self.s.sessions
        resource = to.resource
        # Fast paths: what decide() would answer, without building its snapshot of the
        # account (a bound session implies an existing account; presence to nobody is
        # ignored whether the account exists or not). decide() handles everything else.
        if resource is not None:
            target = sessions.get_resource(to.bare, resource)
            if target is not None:  # §8.5.3.1: a connected full JID gets whatever it is
                target.send(stanza)
                return
            if name == "presence":  # §8.5.3.2.3 (and §8.5.1): ignored, no lookup needed
                return
        elif name == "presence":
            # §8.5.2.1.2: presence to a bare JID goes to every available resource; with none
            # (or no account, §8.5.1) it is ignored, so no storage lookup is needed.
            for target in sessions.resources(to):  # `to` is bare here
                if target.available:
                    target.send(stanza)
            return
        bound = {s.jid.resource or "": s for s in sessions.resources(to.bare)}
        if bound:
            user = UserSnapshot(True, tuple(ResourceState(r, s.priority, s.available)
                                            for r, s in bound.items()))
        else:
            user = UserSnapshot(await self.account_exists(to.bare))
        action = decide(name, stype, resource, user, self.policy)
        if isinstance(action, Deliver):
            for res in action.resources:
                target = bound.get(res)
                if target is not None:
                    target.send(stanza)
        elif isinstance(action, HandleAtServer):
            session = self.s.sessions.get(sender) if sender.domain in self.s.hosts else None
            await self._iq_to_account(stanza, sender, to.bare, session)
        elif isinstance(action, StoreOffline):
            if not await self.s.hooks.fire(events.MESSAGE_OFFLINE,
                                           events.ToAccount(stanza, to, sender), name):
                await self.bounce(stanza, StanzaError("service-unavailable"))
        elif isinstance(action, Bounce):
            await self.bounce(stanza, StanzaError(action.condition))
        elif isinstance(action, Ignore):
            log.debug("ignored %s to %s: %s", name, to, action.reason)

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
