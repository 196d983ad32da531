"""XEP-0050: Ad-Hoc Commands — the execution protocol, independent of any particular command.

A command is either single-stage (no form: executing it completes it at once) or two-stage
(executing returns a form with status 'executing' and a sessionid; submitting the form with
action execute/complete/next completes it; action cancel ends it with status 'canceled').
Sessions (§4.3) belong to one requester full JID, expire after `timeout` seconds and are
capped per requester; a finished session's id is never reused (ids are random).
"""

from __future__ import annotations

import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from blether import ns
from blether.core.iq import IqRequest
from blether.errors import StanzaError
from blether.features.admin import dataforms
from blether.jid import JID
from blether.xml.element import Element

ACTIONS = frozenset({"execute", "cancel", "prev", "next", "complete"})


def command_error(condition: str, specific: str | None, text: str | None = None) -> StanzaError:
    """A §4.6 error: general condition plus the commands-namespace specific one."""
    app = Element(specific, ns.COMMANDS) if specific else None
    return StanzaError(condition, text, app=app)


def bad_payload(text: str) -> StanzaError:
    return command_error("bad-request", "bad-payload", text)


@dataclass(slots=True)
class Completed:
    """What a finished command returns: an optional result form and notes (§4.4)."""

    form: Element | None = None
    notes: Sequence[tuple[str, str]] = field(default_factory=tuple)   # (type, text)


class Command(ABC):
    """One command node. `form()` None means single-stage."""

    node: str
    name: str

    def form(self) -> Element | None:
        return None

    @abstractmethod
    async def run(self, values: dict[str, list[str]], req: IqRequest) -> Completed:
        """Carry the command out; raise StanzaError (e.g. `bad_payload`) to refuse."""


@dataclass(slots=True)
class CommandSession:
    id: str
    node: str
    requester: JID
    expires: float


class SessionTable:
    def __init__(self, timeout: float = 600.0, max_per_requester: int = 16) -> None:
        self.timeout = timeout
        self.max_per_requester = max_per_requester
        self._sessions: dict[str, CommandSession] = {}

    def open(self, node: str, requester: JID, now: float | None = None) -> CommandSession:
        now = time.monotonic() if now is None else now
        self._expire(now)
        if sum(1 for s in self._sessions.values() if s.requester == requester) \
                >= self.max_per_requester:
            raise StanzaError("resource-constraint", "too many command sessions open")
        short = node.rsplit("#", 1)[-1]
        session = CommandSession(f"{short}:{secrets.token_urlsafe(12)}", node, requester,
                                 now + self.timeout)
        self._sessions[session.id] = session
        return session

    def get(self, sid: str, node: str, requester: JID,
            now: float | None = None) -> CommandSession:
        now = time.monotonic() if now is None else now
        self._expire(now)
        session = self._sessions.get(sid)
        if session is None or session.requester != requester:
            # §4.6: a sessionid that is not (or no longer) active for this requester.
            raise command_error("not-allowed", "session-expired", "no such command session")
        if session.node != node:
            raise command_error("bad-request", "bad-sessionid", "session of another command")
        return session

    def close(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _expire(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[sid]


def reply(req: IqRequest, node: str, sid: str, status: str,
          *children: Element) -> Element:
    cmd = Element("command", ns.COMMANDS, {"node": node, "sessionid": sid, "status": status},
                  list(children))
    return req.result(cmd)


async def execute(req: IqRequest, command: Command, table: SessionTable) -> Element:
    """Run one request of the §3.4 flow for an authorised requester."""
    el = req.payload
    action = el.attrs.get("action", "execute")
    if action not in ACTIONS:
        raise command_error("bad-request", "malformed-action", f"unknown action {action!r}")
    sid = el.attrs.get("sessionid")
    if sid is None:
        if action in ("cancel", "prev"):
            raise command_error("bad-request", "bad-action", "no session to " + action)
        form = command.form()
        if form is None:
            return _completed(req, command.node, f"{command.node.rsplit('#', 1)[-1]}:"
                              f"{secrets.token_urlsafe(12)}", await command.run({}, req))
        session = table.open(command.node, req.sender)
        actions = Element("actions", ns.COMMANDS, {"execute": "complete"},
                          [Element("complete", ns.COMMANDS)])
        return reply(req, command.node, session.id, "executing", actions, form)
    session = table.get(sid, command.node, req.sender)
    if action == "cancel":
        table.close(sid)
        return reply(req, command.node, sid, "canceled")
    if action == "prev":
        raise command_error("bad-request", "bad-action", "there is no previous stage")
    x = dataforms.find(el)
    if x is None or x.attrs.get("type") not in ("submit", "cancel"):
        # §4.4.1: a submitted x:data form (type 'cancel' is treated as 'submit').
        raise bad_payload("submit the form")
    values = dataforms.values(x)
    form_type = dataforms.single(values, "FORM_TYPE")
    expected = command.form()
    expected_type = dataforms.single(dataforms.values(expected), "FORM_TYPE") \
        if expected is not None else ""
    if form_type and expected_type and form_type != expected_type:
        raise bad_payload(f"FORM_TYPE must be {expected_type}")
    table.close(sid)   # a refused submission ends the session too; the client starts over
    return _completed(req, command.node, sid, await command.run(values, req))


def _completed(req: IqRequest, node: str, sid: str, done: Completed) -> Element:
    children: list[Element] = [Element("note", ns.COMMANDS, {"type": t}, [text])
                               for t, text in done.notes]
    if done.form is not None:
        children.append(done.form)
    return reply(req, node, sid, "completed", *children)
