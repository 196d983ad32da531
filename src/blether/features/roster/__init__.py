"""RFC 6121 §2 (roster management, with §2.6 / XEP-0237 versioning), §3 (presence
subscriptions, Appendix A state machine, §3.4 pre-approval).

* Roster get/set (`jabber:iq:roster`) for the account itself only (§2.1.5, others get
  `forbidden`); a get makes the resource "interested" (§2.1.6): only interested resources get
  roster pushes, in modification order, from the account's bare JID.
* Set: exactly one item, stored atomically as given (§2.3.3 errors: bad-request,
  not-acceptable, jid-malformed, item-not-found for removing an unknown item); 'subscription'
  other than "remove" is ignored and subscription/ask/approved stay as the server has them.
  Removal ends the subscriptions both ways (§2.5.2).
* Versioning (§2.6): stream feature `<ver xmlns='urn:xmpp:features:rosterver'/>`; a client
  presenting a version we can answer a delta for gets an empty result and one push per item
  changed since (final state; removed items as subscription='remove'), otherwise the whole
  roster. A delta's pushes carry the client's own version except the last, which carries the
  current one: a client cut off halfway asks again from where it surely was.
* Subscriptions: see subscriptions.py and the pure table in subscription.py. Pre-approval is
  advertised with `<sub xmlns='urn:xmpp:features:pre-approval'/>`.
* Limits (module_options.roster): `max_items` (default 1000) — adding an item beyond it fails
  with `policy-violation`, the condition Tigase uses for its roster size limit (RFC 6120
  §8.3.3.12: a local service policy); `max_name_length`, `max_group_length` (RFC 6121 §2.3.3:
  `not-acceptable`). Adding one's own JID fails with `not-allowed`, as in Prosody.

Public API for other features (all JIDs bare, all safe to call for offline accounts):

* `await get_item(user, contact) -> RosterItem | None`
* `await get_roster(user) -> list[RosterItem]` (sorted by contact JID)
* `await is_subscribed_from(user, contact) -> bool` — contact receives user's presence
  (subscription from/both)
* `await is_subscribed_to(user, contact) -> bool` — user receives contact's presence (to/both)
* `subscriptions.send_current_presence(user, contact)` / `send_unavailable(user, contact)`
"""

from __future__ import annotations

import time
from collections import deque

from pydantic import BaseModel, ConfigDict, Field

from blether import ns
from blether.core import events
from blether.core.iq import IqRequest, Target
from blether.core.module import RFC, XEP, Module, ModuleContext, hook, iq_handler
from blether.core.session import Session
from blether.errors import StanzaError
from blether.jid import JID
from blether.stanza import PRESENCE_SUBSCRIPTION_TYPES, error_reply
from blether.storage.api import RosterItem, StorageError
from blether.xml.element import Element

from .cache import RosterCache
from .items import item_element, parse_set, parse_version, push, query, removed_element
from .subscriptions import RosterFull, Subscriptions

__all__ = ["RosterModule", "RosterOptions"]


class RosterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_items: int = Field(1000, ge=1, description="items per roster")
    max_name_length: int = Field(1023, ge=1, description="characters in an item's name")
    max_group_length: int = Field(1023, ge=1, description="characters in a group name")
    versioning: bool = Field(True, description="roster versioning (RFC 6121 §2.6)")
    subscribe_rate: int = Field(
        5, ge=0, description="subscription requests an account may send per "
        "subscribe_window; more get policy-violation (wait); 0 = unlimited")
    subscribe_window: float = Field(60.0, gt=0, description="seconds")


class RosterModule(Module):
    name = "roster"
    specs = (
        RFC(6121, "§2", "complete", "roster get/set/push, §2.6 versioning"),
        RFC(6121, "§3, App. A", "complete", "subscription state machine, §3.4 pre-approval"),
        XEP(237, "1.3", "complete", "roster versioning (obsolete: now RFC 6121 §2.6)"),
    )
    Options = RosterOptions

    options: RosterOptions

    def __init__(self, ctx: ModuleContext, options: RosterOptions) -> None:
        super().__init__(ctx, options)
        sessions = ctx.services.sessions
        self.cache = RosterCache(ctx.services.storage.roster,
                                 lambda user: sessions.is_online(JID.parse(user)))
        self.subscriptions = Subscriptions(self)
        self._recent_subscribes: dict[JID, deque[float]] = {}

    # -- public API ----------------------------------------------------------------------
    async def get_item(self, user: JID, contact: JID) -> RosterItem | None:
        return await self.cache.get(str(user.bare), str(contact.bare))

    async def get_roster(self, user: JID) -> list[RosterItem]:
        return await self.cache.items(str(user.bare))

    async def is_subscribed_from(self, user: JID, contact: JID) -> bool:
        item = await self.get_item(user, contact)
        return item is not None and item.subscription in ("from", "both")

    async def is_subscribed_to(self, user: JID, contact: JID) -> bool:
        item = await self.get_item(user, contact)
        return item is not None and item.subscription in ("to", "both")

    def push(self, user: JID, item: Element, version: int) -> None:
        """Roster push of one item to every interested resource (§2.1.6)."""
        tracker = self.ctx.services.iq.tracker
        for session in self.ctx.services.sessions.resources(user):
            if session.interested:
                session.send(push(session.jid, user, item, version, tracker.new_id()))

    # -- roster IQs ----------------------------------------------------------------------
    @staticmethod
    def _check_self(req: IqRequest) -> None:
        if not req.is_self:  # §2.1.5: only the account itself manages its roster
            raise StanzaError("forbidden", "only the account itself may manage its roster")

    @iq_handler("get", ns.ROSTER, Target.ACCOUNT)
    async def roster_get(self, req: IqRequest) -> Element:
        self._check_self(req)
        user = str(req.to)
        if req.session is not None:
            req.session.interested = True
        known = parse_version(req.payload.attrs.get("ver")) if self.options.versioning \
            else None
        if known is not None:
            async with self.cache.edit(user) as roster:
                current = await roster.version()  # loads the roster the session will need
            if known == current:
                return req.result()  # §2.6.3: nothing changed; what changes_since would say
            delta = await self.ctx.services.storage.roster.changes_since(user, known)
            if delta is not None:
                changed, removed, current = delta
                if req.session is not None and (changed or removed):
                    # §2.6.3: the empty result first, then the pushes; the dispatcher writes
                    # the result as soon as we return, before this task runs.
                    pushes = [item_element(i) for i in changed] + \
                             [removed_element(c) for c in removed]
                    self.ctx.spawn(self._push_delta(req.session, pushes, known, current),
                                   "roster-delta")
                return req.result()
        async with self.cache.edit(user) as roster:
            items, version = await roster.items()
        return req.result(query(version if self.options.versioning else None,
                                [item_element(i) for i in items]))

    async def _push_delta(self, session: Session, pushes: list[Element], known: int,
                          current: int) -> None:
        tracker = self.ctx.services.iq.tracker
        for n, el in enumerate(pushes, 1):
            ver = current if n == len(pushes) else known
            session.send(push(session.jid, session.bare, el, ver, tracker.new_id()))

    @iq_handler("set", ns.ROSTER, Target.ACCOUNT)
    async def roster_set(self, req: IqRequest) -> Element:
        self._check_self(req)
        request = parse_set(req.payload, self.options.max_name_length,
                            self.options.max_group_length)
        user = req.to
        contact = request.contact
        if contact == user:
            raise StanzaError("not-allowed", "an account cannot be in its own roster")
        if request.remove:
            await self._remove(user, contact)
            return req.result()
        async with self.cache.edit(str(user)) as roster:
            old = await roster.get(str(contact))
            if old is None and await roster.count() >= self.options.max_items:
                raise StanzaError("policy-violation",
                                  f"the roster is full ({self.options.max_items} items)")
            # §2.3.2: the item is stored exactly as provided; the subscription state is ours.
            item = RosterItem(jid=str(contact), name=request.name, groups=request.groups,
                              subscription=old.subscription if old else "none",
                              ask=old.ask if old else False,
                              approved=old.approved if old else False)
            version = await roster.put(item)
            self.push(user, item_element(item), version)
        return req.result()

    async def _remove(self, user: JID, contact: JID) -> None:
        async with self.cache.edit(str(user)) as roster:
            item = await roster.get(str(contact))
            if item is None:
                raise StanzaError("item-not-found", f"{contact} is not in the roster")
            pending = await roster.remove_pending(str(contact))
            version = await roster.remove(str(contact))
            if version is not None:
                self.push(user, removed_element(str(contact)), version)
        # Outside the lock: routing to a local contact takes the contact's roster lock.
        await self.subscriptions.removed(user, item, pending)

    def _subscribe_allowed(self, user: JID) -> bool:
        limit = self.options.subscribe_rate
        if limit == 0:
            return True
        now = time.monotonic()
        horizon = now - self.options.subscribe_window
        recent = self._recent_subscribes.get(user)
        if recent is None:
            if len(self._recent_subscribes) > 10000:  # forget accounts that went quiet
                for key in [k for k, q in self._recent_subscribes.items() if q[-1] <= horizon]:
                    del self._recent_subscribes[key]
            recent = self._recent_subscribes[user] = deque()
        while recent and recent[0] <= horizon:
            recent.popleft()
        if len(recent) >= limit:
            return False
        recent.append(now)
        return True

    # -- subscription stanzas ------------------------------------------------------------
    @hook(events.STANZA_FROM_SESSION, kinds=("presence",))
    async def from_client(self, ev: events.FromSession) -> bool:
        stanza = ev.stanza
        if stanza.name != "presence" or stanza.attrs.get("type") not in \
                PRESENCE_SUBSCRIPTION_TYPES:
            return False
        session = ev.session
        if ev.to is None or ev.to.bare == session.bare:
            # Nobody to subscribe to (no 'to', or oneself): nothing to do. A domain is a
            # valid contact (a gateway, XEP-0100), so it goes through like any other.
            self.ctx.log.debug("[%s %s] ignored %s to %s", session.id, session.jid,
                               stanza.attrs["type"], ev.to)
            return True
        if stanza.attrs["type"] == "subscribe" and not self._subscribe_allowed(session.bare):
            # SECURITY.md: subscription spam (ejabberd's mod_pres_counter). Only requests
            # count; answering other people's requests is never limited.
            self.ctx.log.info("[%s %s] subscription request to %s refused: over %d per %gs",
                              session.id, session.jid, ev.to, self.options.subscribe_rate,
                              self.options.subscribe_window)
            session.send(error_reply(stanza, StanzaError(
                "policy-violation", "too many subscription requests; try again later",
                type="wait")))
            return True
        try:
            await self.subscriptions.outbound(stanza, session.bare, ev.to.bare)
        except RosterFull:
            session.send(error_reply(stanza, StanzaError(
                "policy-violation", f"the roster is full ({self.options.max_items} items)")))
        except StorageError:
            self.ctx.log.exception("[%s %s] subscription %s to %s failed", session.id,
                                   session.jid, stanza.attrs["type"], ev.to)
            session.send(error_reply(stanza, StanzaError("internal-server-error")))
        return True

    @hook(events.STANZA_TO_ACCOUNT, kinds=("presence",))
    async def to_account(self, ev: events.ToAccount) -> bool:
        stanza = ev.stanza
        if stanza.name != "presence" or stanza.attrs.get("type") not in \
                PRESENCE_SUBSCRIPTION_TYPES:
            return False
        try:
            await self.subscriptions.inbound(stanza, ev.to.bare, ev.sender.bare)
        except StorageError:
            self.ctx.log.exception("inbound %s %s -> %s failed", stanza.attrs["type"],
                                   ev.sender, ev.to)
        return True

    # -- sessions and stream features ----------------------------------------------------
    @hook(events.SESSION_AVAILABLE)
    async def on_available(self, ev: events.SessionEvent) -> bool:
        """§3.1.3 rule 4: unanswered requests go to every resource that becomes available."""
        session = ev.session
        try:
            requests = await self.subscriptions.redeliver(session.bare)
        except StorageError:
            self.ctx.log.exception("[%s %s] reading pending subscription requests failed",
                                   session.id, session.jid)
            return False
        for request in requests:
            session.send(request)
        return False

    # After every other SESSION_ENDED handler: presence's unavailable broadcast for the
    # ending session (RFC 6121 §4.5.3) still reads the roster from the cache.
    @hook(events.SESSION_ENDED, priority=-100)
    async def on_ended(self, ev: events.SessionEnded) -> bool:
        if not self.ctx.services.sessions.is_online(ev.session.bare):
            self.cache.drop(str(ev.session.bare))
        return False

    @hook(events.ACCOUNT_REMOVED)
    async def on_removed(self, ev: events.AccountEvent) -> bool:
        """The account's storage was purged behind the cache; its sessions, still open until
        the caller closes them, must see the empty roster."""
        await self.cache.invalidate(str(ev.user.bare))
        return False

    @hook(events.COLLECT_FEATURES)
    async def features(self, ev: events.StreamFeatures) -> bool:
        if ev.authenticated:
            if self.options.versioning:
                ev.features.append(Element("ver", ns.ROSTER_VER_FEATURE))
            ev.features.append(Element("sub", ns.PRE_APPROVAL_FEATURE))
        return False
