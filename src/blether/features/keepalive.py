"""XEP-0199 §4.1 (server-to-client pings): find and close client streams that died silently.

TCP can lose a peer without either side noticing (XEP-0199 §1). A sweep runs every
`interval / 2` seconds, and each session from which nothing has been read for at least
`interval` seconds gets `<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>` from the server's
domain. If neither the answer nor anything else arrives within `timeout` seconds, the stream is
closed with <connection-timeout/> (RFC 6120 §4.9.3.4) and the session ends like any other, so
its contacts get unavailable presence.

Any answer counts, an error included: XEP-0199 §4.1 lets a client without ping support answer
<service-unavailable/>, which still shows it is there. Any other traffic while the ping is
pending counts as well (§6 notes clients that never answer unknown IQs; ejabberd's mod_ping also
restarts its timer on every packet from the user).

Idleness is measured on `Session.last_active`, which the transport stamps on every read: any
bytes from the client, whitespace keepalives included, show the connection is alive.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from blether import ns
from blether.core import events
from blether.core.module import XEP, Module, hook
from blether.core.session import Session
from blether.errors import StreamError
from blether.xml.element import Element


class KeepaliveOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: float = Field(300.0, gt=0, description="seconds of silence before a ping")
    timeout: float = Field(30.0, gt=0, description="seconds to wait for the answer")


@dataclass(slots=True)
class _State:
    pinging: asyncio.Task[None] | None = None   # the ping under way, if any


class KeepaliveModule(Module):
    name = "keepalive"
    specs = (XEP(199, "2.0.1", "complete",
                 "the server pings clients idle for `interval` seconds and closes streams that "
                 "do not answer within `timeout` (§4.1)"),)
    Options = KeepaliveOptions

    async def start(self) -> None:
        self.ctx.spawn(self._watch(), "watch")

    def _state(self, session: Session) -> _State:
        state = session.data.get(self.name)
        if not isinstance(state, _State):
            state = _State()
            session.data[self.name] = state
        return state

    @hook(events.SESSION_ENDED)
    async def ended(self, event: events.SessionEnded) -> None:
        state = event.session.data.get(self.name)
        if isinstance(state, _State) and state.pinging is not None:
            state.pinging.cancel()

    async def _watch(self) -> None:
        tick = self.options.interval / 2
        while True:
            await asyncio.sleep(tick)
            self.sweep()

    def sweep(self) -> None:
        """Ping every session idle for `interval` that is not being pinged already."""
        now = time.monotonic()
        for session in self.ctx.services.sessions:
            state = self._state(session)
            if session.closed or state.pinging is not None:
                continue
            if now - session.last_active >= self.options.interval:
                state.pinging = self.ctx.spawn(self.ping(session, state), f"ping {session.id}")

    async def ping(self, session: Session, state: _State) -> None:
        tracker = self.ctx.services.iq.tracker
        # A random suffix makes the id unguessable, so no other entity can answer for the
        # client (the tracker matches results by id alone).
        iq_id = f"{tracker.new_id()}-{secrets.token_hex(6)}"
        answer = tracker.expect(iq_id, str(session.jid))
        sent = time.monotonic()
        session.send(Element("iq", ns.CLIENT,
                             {"type": "get", "id": iq_id, "from": session.jid.domain,
                              "to": str(session.jid)},
                             [Element("ping", ns.PING)]))
        try:
            reply = await asyncio.wait_for(answer, self.options.timeout)
        except TimeoutError:
            reply = None
        finally:
            state.pinging = None
        if reply is not None and reply.attrs.get("from") == str(session.jid):
            return
        if session.last_active > sent or session.closed:
            return
        self.ctx.log.info("[%s %s] no answer to a ping in %gs; closing the stream",
                          session.id, session.jid, self.options.timeout)
        await session.close(StreamError("connection-timeout", "no answer to a ping (XEP-0199)"))
