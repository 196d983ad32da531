"""IQ dispatch (RFC 6120 §8.2.3): exactly one result or error for every get/set.

Handlers are registered per (type, payload namespace, target). A handler returns the reply
stanza or raises StanzaError; an unexpected exception becomes internal-server-error and a log
line. Unknown payloads get service-unavailable (RFC 6120 §8.4). Results and errors addressed
to the server are matched against requests the server itself sent (`IqTracker`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from blether.core.session import Session
from blether.errors import StanzaError
from blether.jid import JID
from blether.stanza import error_reply, iq_result
from blether.xml.element import Element

log = logging.getLogger(__name__)


class Target(Enum):
    HOST = "host"        # addressed to the server's domain
    ACCOUNT = "account"  # addressed to an account's bare JID (or no 'to': the sender's own)


@dataclass(frozen=True, slots=True)
class IqRequest:
    stanza: Element
    payload: Element
    sender: JID
    to: JID                    # the domain (HOST) or the account's bare JID (ACCOUNT)
    session: Session | None    # the sender's local session, if it is one of ours

    @property
    def type(self) -> str:
        return self.stanza.attrs["type"]

    @property
    def is_self(self) -> bool:
        """The sender is the account itself (RFC 6121 §2.1.5 'from' checks)."""
        return self.sender.bare == self.to

    def result(self, *children: Element) -> Element:
        return iq_result(self.stanza, *children)


IqHandler = Callable[[IqRequest], Awaitable[Element]]


class IqTracker:
    """Correlates responses to IQs the server sent (pings to idle clients, s2s queries).

    A response counts only if it comes from the entity the request was sent to, so nobody
    else can answer on a client's behalf by guessing an id.
    """

    def __init__(self) -> None:
        self._pending: dict[str, tuple[asyncio.Future[Element], str | None]] = {}
        self._ids = itertools.count(1)

    def new_id(self) -> str:
        return f"blether-{next(self._ids)}"

    def expect(self, iq_id: str, expected_from: str | None = None) -> asyncio.Future[Element]:
        fut: asyncio.Future[Element] = asyncio.get_running_loop().create_future()
        self._pending[iq_id] = (fut, expected_from)
        fut.add_done_callback(lambda _f: self._pending.pop(iq_id, None))
        return fut

    def resolve(self, stanza: Element) -> bool:
        entry = self._pending.get(stanza.attrs.get("id", ""))
        if entry is None:
            return False
        fut, expected_from = entry
        if fut.done() or (expected_from is not None
                          and stanza.attrs.get("from") != expected_from):
            return False
        fut.set_result(stanza)
        return True


class IqDispatcher:
    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str, Target], tuple[IqHandler, object]] = {}
        self.tracker = IqTracker()

    def register(self, type: str, xmlns: str, target: Target, handler: IqHandler,
                 owner: object = None) -> None:
        if type not in ("get", "set"):
            raise ValueError("IQ handlers are registered for get or set")
        key = (type, xmlns, target)
        if key in self._handlers:
            raise ValueError(f"an IQ handler for {key} is already registered")
        self._handlers[key] = (handler, owner)

    def remove_owner(self, owner: object) -> None:
        for key in [k for k, (_h, o) in self._handlers.items() if o is owner]:
            del self._handlers[key]

    def handles(self, xmlns: str, target: Target) -> bool:
        return any(k[1] == xmlns and k[2] is target for k in self._handlers)

    async def dispatch(self, stanza: Element, sender: JID, to: JID, target: Target,
                       session: Session | None) -> Element | None:
        """Return the single reply to a get/set, or None for a result/error."""
        iq_type = stanza.attrs.get("type")
        if iq_type not in ("get", "set"):
            self.tracker.resolve(stanza)
            return None
        payload = stanza.elements()
        if len(payload) != 1:
            return error_reply(stanza, StanzaError("bad-request", "IQ must have one child"))
        entry = self._handlers.get((iq_type, payload[0].xmlns, target))
        if entry is None:
            return error_reply(stanza, StanzaError("service-unavailable"))
        request = IqRequest(stanza, payload[0], sender, to, session)
        try:
            reply = await entry[0](request)
        except StanzaError as exc:
            return error_reply(stanza, exc)
        except Exception:
            log.exception("IQ handler for %s %s failed (from %s)", iq_type, payload[0].xmlns,
                          sender)
            return error_reply(stanza, StanzaError("internal-server-error"))
        if reply.name != "iq" or reply.attrs.get("type") not in ("result", "error"):
            log.error("IQ handler for %s returned a non-reply; answering with an error",
                      payload[0].xmlns)
            return error_reply(stanza, StanzaError("internal-server-error"))
        return reply
