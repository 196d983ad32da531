"""XEP-0191: Blocking Command (v1.3) — a user blocks communications with JIDs.

* §3.2-§3.5: `<blocklist/>` get, `<block/>` and `<unblock/>` set (an empty unblock clears the
  list), answered only for the account itself; every change is pushed to each of the user's
  sessions that retrieved the blocklist (tracked in `session.data["blocking"]`).
* §3.3 inbound: nothing from a blocked entity reaches the user. Presence (notifications,
  subscriptions, probes) is dropped without a reply; a message gets `service-unavailable`;
  an IQ get/set gets `service-unavailable`; IQ results and errors are dropped.
* §3.3 outbound: a stanza the user's client sends to a blocked entity is refused with
  `not-acceptable` + `<blocked xmlns='urn:xmpp:blocking:errors'/>`; stanzas the server sends
  on the user's behalf (presence broadcasts, probe answers) are silently not sent.
* §3.3/§3.4 presence: blocking sends `unavailable` from each available resource to the newly
  blocked entities that may see the user's presence (subscription from/both, or directed
  presence); unblocking sends them the current presence of each available resource.
* §5 (XEP-0016 order): an item matches a full JID exactly, a bare JID any of its resources,
  `domain/resource` exactly, and a domain the domain, its users and its resources.
  A user's own resources are never blocked (§6 note), nor the user's own server (its bare
  domain JID): blocking one's domain blocks its users, not disco or pings.

The list is persisted in the BlocklistStore and cached in memory while the user is online.
"Polite blocking" (§4): subscriptions are left as they are.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Collection, Iterable

from blether import ns
from blether.core import events
from blether.core.iq import IqRequest, Target
from blether.core.module import XEP, Module, ModuleContext, hook, iq_handler
from blether.core.session import Session
from blether.errors import StanzaError
from blether.jid import JID, JIDError
from blether.stanza import can_bounce, error_reply
from blether.storage.api import StorageError
from blether.xml.element import Element


def blocks(items: Collection[str], jid: JID) -> bool:
    """XEP-0191 §5: does any of `items` (prepared JID strings) match `jid`?"""
    if not items:
        return False
    if str(jid) in items:                                    # user@domain/resource
        return True
    if jid.local is not None and jid.resource is not None and str(jid.bare) in items:
        return True                                          # user@domain
    # domain/resource: "only that resource matches"; like ejabberd's mod_privacy we read it
    # as that resource of the domain or of any of its users.
    if jid.resource is not None and f"{jid.domain}/{jid.resource}" in items:
        return True
    return jid.domain in items                               # domain


def prepare_items(payload: Element) -> list[str]:
    """The `<item jid=…/>` children of a block/unblock payload, prepared, deduplicated."""
    out: dict[str, None] = {}
    for item in payload.find_all("item", ns.BLOCKING):
        text = item.attrs.get("jid")
        if not text:
            raise StanzaError("bad-request", "each <item/> needs a 'jid'")
        try:
            out[str(JID.parse(text))] = None
        except JIDError as exc:
            raise StanzaError("jid-malformed", f"{text!r}: {exc}") from None
    return list(out)


def _items_element(name: str, jids: Iterable[str]) -> Element:
    return Element(name, ns.BLOCKING, None,
                   [Element("item", ns.BLOCKING, {"jid": j}) for j in jids])


class BlockingModule(Module):
    name = "blocking"
    specs = (XEP(191, "1.3", "complete", "polite blocking; lists cached while online"),)
    depends = ("roster",)  # who may see the user's presence (§3.3/§3.4)
    # XEP-0191 §3.1 has clients ask the server; ejabberd advertises it on the account: both.
    host_features = (ns.BLOCKING,)
    account_features = (ns.BLOCKING,)

    def __init__(self, ctx: ModuleContext, options: object) -> None:
        super().__init__(ctx, options)
        # Blocklists of online users (bare JID -> items in insertion order).
        self._cache: dict[JID, dict[str, None]] = {}
        self._locks: weakref.WeakValueDictionary[JID, asyncio.Lock] = \
            weakref.WeakValueDictionary()

    # -- the list --------------------------------------------------------------------------
    async def blocklist(self, user: JID) -> dict[str, None]:
        """The user's blocked JIDs (cached while online). Raises StorageError."""
        cached = self._cache.get(user)
        if cached is not None:
            return cached
        items: dict[str, None] = {}
        for text in await self.ctx.services.storage.blocklist.get(str(user)):
            try:
                items[str(JID.parse(text))] = None
            except JIDError:
                self.ctx.log.warning("ignoring malformed blocklist entry %r of %s", text, user)
        if self.ctx.services.sessions.is_online(user):
            self._cache[user] = items
        return items

    def _blocks_nobody(self, user: JID) -> bool:
        """The common case on every stanza, answered without a coroutine: an online user
        whose (cached) blocklist is empty."""
        cached = self._cache.get(user)
        return cached is not None and not cached

    async def is_blocked(self, user: JID, other: JID) -> bool:
        """Whether `user` (a local bare JID) blocks `other`; for other features to ask."""
        if self._blocks_nobody(user):
            return False
        if other.bare == user:
            return False  # §6 note: never between one's own resources
        if other.is_domain and other.domain in self.ctx.services.hosts:
            # Our own server is not a correspondent: blocking one's domain (to block its
            # users) must not cut the account off from disco, pings or server notices.
            return False
        return blocks(await self.blocklist(user), other)

    def _lock(self, user: JID) -> asyncio.Lock:
        lock = self._locks.get(user)
        if lock is None:
            lock = self._locks[user] = asyncio.Lock()
        return lock

    @hook(events.SESSION_BOUND)
    async def on_bound(self, ev: events.SessionEvent) -> bool:
        try:
            await self.blocklist(ev.session.bare)  # warm the cache before any stanza flows
        except StorageError:
            self.ctx.log.exception("[%s %s] loading the blocklist failed", ev.session.id,
                                   ev.session.jid)
        return False

    @hook(events.SESSION_ENDED)
    async def on_ended(self, ev: events.SessionEnded) -> bool:
        if not self.ctx.services.sessions.is_online(ev.session.bare):
            self._cache.pop(ev.session.bare, None)
        return False

    # -- IQ ----------------------------------------------------------------------------------
    @staticmethod
    def _check_self(req: IqRequest) -> None:
        # §3.2: sent "with no 'to' address (thus handled by the user's server)". Another
        # entity asking about someone's blocklist gets what an unsupported payload gets
        # (RFC 6121 §8.5.2.1.3), revealing nothing — Prosody's answer too.
        if not req.is_self:
            raise StanzaError("service-unavailable")

    @iq_handler("get", ns.BLOCKING, Target.ACCOUNT)
    async def get_blocklist(self, req: IqRequest) -> Element:
        self._check_self(req)
        if req.payload.name != "blocklist":
            raise StanzaError("bad-request", "expected <blocklist/>")
        items = await self.blocklist(req.to)
        if req.session is not None:
            req.session.data["blocking"] = True  # §3.3: this resource gets the pushes
        return req.result(_items_element("blocklist", items))

    @iq_handler("set", ns.BLOCKING, Target.ACCOUNT)
    async def set_blocklist(self, req: IqRequest) -> Element:
        self._check_self(req)
        name = req.payload.name
        if name not in ("block", "unblock"):
            raise StanzaError("bad-request", "expected <block/> or <unblock/>")
        jids = prepare_items(req.payload)
        user = req.to
        async with self._lock(user):
            if name == "block":
                if not jids:
                    raise StanzaError("bad-request", "<block/> needs at least one <item/>")
                await self._block(user, jids)
                self._push(user, _items_element("block", jids))
            else:
                await self._unblock(user, jids)
                self._push(user, _items_element("unblock", jids))
        return req.result()

    async def _block(self, user: JID, jids: list[str]) -> None:
        current = await self.blocklist(user)
        new = [j for j in jids if j not in current]
        if not new:
            return
        targets = await self._presence_targets(user, new, current)
        directed = {sess: {d for d in sess.directed if blocks(new, d) and not blocks(current, d)}
                    for sess in self.ctx.services.sessions.available(user)}
        await self._store(self.ctx.services.storage.blocklist.add(str(user), new))
        self._store_cache(user, {**current, **dict.fromkeys(new)})
        # router.route, not route_from_account: the outbound filter would now drop these.
        for sess, also in directed.items():
            for to in targets | also:
                await self.ctx.services.router.route(Element(
                    "presence", ns.CLIENT,
                    {"type": "unavailable", "from": str(sess.jid), "to": str(to)}), to, sess.jid)

    async def _unblock(self, user: JID, jids: list[str]) -> None:
        current = await self.blocklist(user)
        removed = list(current) if not jids else [j for j in jids if j in current]
        if not removed:
            return
        storage = self.ctx.services.storage.blocklist
        await self._store(storage.clear(str(user)) if not jids
                          else storage.remove(str(user), removed))
        remaining = {j: None for j in current if j not in removed}
        self._store_cache(user, remaining)
        targets = await self._presence_targets(user, removed, remaining)
        for sess in self.ctx.services.sessions.available(user):
            if sess.presence is None:
                continue
            for to in targets:  # §3.4: current presence to those allowed to see it
                await self.ctx.services.router.route(
                    sess.presence.with_attrs({"from": str(sess.jid), "to": str(to)}),
                    to, sess.jid)

    async def _store(self, write: Awaitable[None]) -> None:
        try:
            await write
        except StorageError:
            self.ctx.log.exception("writing a blocklist failed")
            raise StanzaError("internal-server-error", "the blocklist could not be saved") \
                from None

    def _store_cache(self, user: JID, items: dict[str, None]) -> None:
        if self.ctx.services.sessions.is_online(user):
            self._cache[user] = items
        else:
            self._cache.pop(user, None)

    async def _presence_targets(self, user: JID, changed: list[str],
                                unchanged: Collection[str]) -> set[JID]:
        """Entities matched by `changed` (and not by `unchanged`) that may receive the user's
        presence: contacts with a 'from' or 'both' subscription (RFC 6121 §4.2.2).

        A full-JID item of a subscribed contact is itself a target (that resource is the
        one blocked); bare and domain items target the subscribed contacts they match."""
        roster = self.ctx.services.module("roster")
        subscribed: set[JID] = set()
        for item in await roster.get_roster(user):
            if item.subscription in ("from", "both"):
                try:
                    subscribed.add(JID.parse(item.jid))
                except JIDError:
                    continue
        targets = {c for c in subscribed if blocks(changed, c) and not blocks(unchanged, c)}
        for text in changed:
            jid = JID.parse(text)
            owner = jid.bare if jid.local is not None else JID(None, jid.domain)
            if jid.resource is not None and owner in subscribed and not blocks(unchanged, jid):
                targets.add(jid)
        return targets

    def _push(self, user: JID, payload: Element) -> None:
        """§3.3/§3.4: an IQ set to every resource of the user that retrieved the list."""
        tracker = self.ctx.services.iq.tracker
        for sess in self.ctx.services.sessions.resources(user):
            if sess.data.get("blocking"):
                sess.send(Element("iq", ns.CLIENT, {"type": "set", "id": tracker.new_id(),
                                                     "to": str(sess.jid)}, [payload]))

    # -- enforcement -------------------------------------------------------------------------
    @hook(events.STANZA_TO_ACCOUNT, priority=100)
    async def inbound(self, ev: events.ToAccount) -> bool:
        """§3.3: nothing from a blocked entity reaches the user."""
        if self._blocks_nobody(ev.to.bare):
            return False
        stanza = ev.stanza
        try:
            blocked = await self.is_blocked(ev.to.bare, ev.sender)
        except StorageError:
            # Fail closed: a broken database must not open the door to a blocked sender.
            self.ctx.log.exception("blocklist of %s unavailable; refusing a %s from %s",
                                   ev.to.bare, stanza.name, ev.sender)
            if stanza.name != "presence":
                await self.ctx.services.router.bounce(stanza,
                                                      StanzaError("internal-server-error"))
            return True
        if not blocked:
            return False
        if stanza.name == "message" or (stanza.name == "iq"
                                        and stanza.attrs.get("type") in ("get", "set")):
            # bounce() never answers an error, so message errors are dropped silently.
            await self.ctx.services.router.bounce(stanza, StanzaError("service-unavailable"))
        return True  # presence, IQ results and errors: dropped without a word

    # Presence only: it must be refused before the presence and roster features act on it
    # (directed-presence bookkeeping, subscription state). A client's messages and IQs are
    # checked once, by `outbound` below, which knows the session from the event.
    @hook(events.STANZA_FROM_SESSION, priority=100, kinds=("presence",))
    async def outbound_from_client(self, ev: events.FromSession) -> bool:
        """§3.3: a client's presence to a blocked entity is refused with <blocked/>."""
        if ev.to is None:
            return False
        session = ev.session
        try:
            blocked = await self.is_blocked(session.bare, ev.to)
        except StorageError:
            self.ctx.log.exception("[%s %s] blocklist unavailable", session.id, session.jid)
            return False  # the STANZA_FROM_ACCOUNT check below fails closed
        if not blocked:
            return False
        self._refuse(session, ev.stanza)
        return True

    @staticmethod
    def _refuse(session: Session, stanza: Element) -> None:
        if can_bounce(stanza):
            session.send(error_reply(stanza, StanzaError(
                "not-acceptable", "You have blocked this JID", type="cancel",
                app=Element("blocked", ns.BLOCKING_ERRORS))))

    @hook(events.STANZA_FROM_ACCOUNT, priority=100)
    async def outbound(self, ev: events.FromAccount) -> bool:
        """§3.3: a stanza to a blocked entity is not sent: refused with <blocked/> when the
        user's client sent it, dropped when the server sends it on the user's behalf."""
        if ev.sender.domain not in self.ctx.services.hosts or ev.sender.local is None:
            return False
        if self._blocks_nobody(ev.sender.bare):
            return False
        try:
            blocked = await self.is_blocked(ev.sender.bare, ev.to)
        except StorageError:
            self.ctx.log.exception("blocklist of %s unavailable; not sending a %s to %s",
                                   ev.sender.bare, ev.stanza.name, ev.to)
            return True
        if blocked and ev.session is not None:
            self._refuse(ev.session, ev.stanza)
        return blocked
