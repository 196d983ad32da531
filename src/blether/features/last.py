"""XEP-0012 Last Activity (jabber:iq:last): server uptime, and when an account was last online.

- To the hosted domain (§5): the seconds since the server started, without text.
- To an account's bare JID (§3), answered by the server on the account's behalf: only to the
  account itself and to entities allowed to see its presence (a roster subscription 'from' or
  'both'); anyone else gets <forbidden/> (§3, §8). With a connected or available resource the
  answer is seconds='0' (§3); otherwise the seconds since the last resource went away, with the
  <status/> of the last unavailable presence as text.
- To a full JID (§4): the IQ goes to the client, but the server MUST answer <forbidden/> itself
  instead of delivering it to a requester not allowed to see the account's presence.

The logout time and status are kept in the key-value store ('last', 'last') so they survive a
restart. An account that never logged out has no record: like ejabberd we then answer
<service-unavailable/> (XEP-0012 names no condition for this case).

What a logout keeps (this record, and the presence feature's last unavailable presence) is
written in one transaction: SESSION_ENDED handlers stage their records with
`stage_at_session_end`, and the first of the late handlers `write_staged` (one here, one in the
presence feature, so either works without the other) commits them all.
"""

from __future__ import annotations

import json
import time

from blether import ns
from blether.core import events
from blether.core.iq import IqRequest, Target
from blether.core.module import XEP, Module, ModuleContext, hook, iq_handler
from blether.core.session import Session
from blether.errors import StanzaError
from blether.features.disco import may_see_presence
from blether.jid import JID
from blether.storage.api import StorageError
from blether.xml.element import Element

STORE = "last"
KEY = "last"
_STAGED = "kv-at-session-end"   # session.data key of the records staged at session end
# Below every handler that stages: all of SESSION_ENDED's default-priority handlers run first.
WRITE_STAGED_PRIORITY = -50


def stage_at_session_end(session: Session, store: str, key: str, value: str) -> None:
    """Keep a key-value record of the account, written with the others when the session's
    SESSION_ENDED handlers are done (call it from a SESSION_ENDED handler)."""
    staged: dict[tuple[str, str], str] = session.data.setdefault(_STAGED, {})
    staged[(store, key)] = value


async def write_staged(ctx: ModuleContext, session: Session) -> None:
    """Write the records staged for `session`, in one transaction (once: the first caller)."""
    staged: dict[tuple[str, str], str] | None = session.data.pop(_STAGED, None)
    if not staged:
        return
    try:
        await ctx.services.storage.kv.set_many(
            str(session.bare), [(store, key, value) for (store, key), value in staged.items()])
    except StorageError:
        ctx.log.exception("[%s %s] keeping %s at logout failed", session.id, session.jid,
                          ", ".join(f"{store}/{key}" for store, key in staged))


def last_query(seconds: float, text: str = "") -> Element:
    return Element("query", ns.LAST, {"seconds": str(max(0, int(seconds)))},
                   [text] if text else [])


class LastModule(Module):
    name = "last"
    specs = (XEP(12, "2.0", "complete",
                 "uptime for the server; last logout and status for accounts, to the account and "
                 "its presence subscribers only"),)
    host_features = (ns.LAST,)
    account_features = (ns.LAST,)

    async def start(self) -> None:
        # Monotonic, so a wall-clock step cannot make the uptime jump or go negative.
        self._started = time.monotonic()

    @iq_handler("get", ns.LAST, Target.HOST)
    async def uptime(self, req: IqRequest) -> Element:
        # §5: the server's uptime; the query SHOULD NOT contain text.
        return req.result(last_query(time.monotonic() - self._started))

    @iq_handler("get", ns.LAST, Target.ACCOUNT)
    async def last_activity(self, req: IqRequest) -> Element:
        s = self.ctx.services
        if not await may_see_presence(s, req.to, req.sender):
            raise StanzaError("forbidden")
        if s.sessions.is_online(req.to):
            return req.result(last_query(0))
        record = await self.recorded(req.to)
        if record is None:
            raise StanzaError("service-unavailable", "no last activity is recorded")
        when, status = record
        return req.result(last_query(time.time() - when, status))

    async def recorded(self, account: JID) -> tuple[float, str] | None:
        """(logout time as a Unix timestamp, status text) of the last logout, if any."""
        raw = await self.ctx.services.storage.kv.get(str(account), STORE, KEY)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return float(data["time"]), str(data.get("status", ""))
        except (ValueError, KeyError, TypeError):
            self.ctx.log.warning("unreadable last-activity record of %s; ignoring it", account)
            return None

    # -- recording -----------------------------------------------------------------------
    @hook(events.STANZA_FROM_SESSION, priority=1000, kinds=("presence",))
    async def watch_presence(self, event: events.FromSession) -> bool:
        """Remember the <status/> of the session's broadcast unavailable presence.

        Runs before the presence feature and never claims the stanza.
        """
        stanza = event.stanza
        if stanza.name == "presence" and event.to is None:
            stype = stanza.attrs.get("type")
            if stype == "unavailable":
                event.session.data[self.name] = stanza.find_text("status", stanza.xmlns) or ""
            elif stype is None:
                # Available again: an older unavailable status is no longer the last one.
                event.session.data.pop(self.name, None)
        return False

    @hook(events.SESSION_ENDED)
    async def session_ended(self, event: events.SessionEnded) -> None:
        session = event.session
        if event.reason == "replaced":
            return  # the same resource bound again at once: not a logout
        if self.ctx.services.sessions.resources(session.bare):
            return  # another resource is still connected; the account has not logged out
        record = {"time": time.time(), "status": session.data.get(self.name, "")}
        stage_at_session_end(session, STORE, KEY, json.dumps(record))

    @hook(events.SESSION_ENDED, priority=WRITE_STAGED_PRIORITY)
    async def write_at_end(self, event: events.SessionEnded) -> None:
        await write_staged(self.ctx, event.session)

    @hook(events.STANZA_TO_ACCOUNT, priority=100, kinds=("iq",))
    async def guard_full_jid(self, event: events.ToAccount) -> bool:
        """§4: a last-activity query to a full JID reaches the client only from requesters
        allowed to see the account's presence; others get <forbidden/> from the server."""
        stanza = event.stanza
        if (stanza.name != "iq" or event.to.resource is None
                or stanza.attrs.get("type") not in ("get", "set")):
            return False
        payload = stanza.elements()
        if len(payload) != 1 or payload[0].xmlns != ns.LAST:
            return False
        if await may_see_presence(self.ctx.services, event.to.bare, event.sender):
            return False
        await self.ctx.services.router.bounce(stanza, StanzaError("forbidden"))
        return True
