"""RFC 6121 §8.5: what the server does with a stanza addressed to one of its accounts.

A pure function over (stanza kind, type, addressed resource, snapshot of the account's
sessions); the router carries the returned actions out. It is tested as a table, one row per
sub-case of §8.5.1-§8.5.3. Presence subscription types and probes never reach it: the roster and
presence features own them (RFC 6121 §3, §4.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MessagePolicy = Literal["most_available", "all_non_negative"]


@dataclass(frozen=True, slots=True)
class ResourceState:
    resource: str
    priority: int
    available: bool


@dataclass(frozen=True, slots=True)
class UserSnapshot:
    exists: bool
    resources: tuple[ResourceState, ...] = ()


@dataclass(frozen=True, slots=True)
class Deliver:
    resources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoreOffline:
    """Offer to offline storage (XEP-0160); the router bounces if nobody stores it."""


@dataclass(frozen=True, slots=True)
class HandleAtServer:
    """The server answers on behalf of the account (IQ to a bare JID, RFC 6121 §8.5.2.1.3)."""


@dataclass(frozen=True, slots=True)
class Bounce:
    condition: str


@dataclass(frozen=True, slots=True)
class Ignore:
    reason: str


Action = Deliver | StoreOffline | HandleAtServer | Bounce | Ignore


def _non_negative(user: UserSnapshot) -> list[ResourceState]:
    return [r for r in user.resources if r.available and r.priority >= 0]


def _message_to_bare(mtype: str, user: UserSnapshot, policy: MessagePolicy) -> Action:
    if mtype == "error":
        return Ignore("error message to bare JID")  # §8.5.2.1.1/§8.5.2.2.1: never error on error
    if mtype == "groupchat":
        return Bounce("service-unavailable")       # §8.5.2.1.1: MUST NOT deliver groupchat
    targets = _non_negative(user)
    if mtype == "headline":
        if not targets:
            return Ignore("headline with no non-negative resource")
        return Deliver(tuple(r.resource for r in targets))
    # normal, chat, and unknown types (treated as normal, RFC 6121 §5.2.2)
    if not targets:
        return StoreOffline()
    if policy == "most_available":
        top = max(r.priority for r in targets)
        targets = [r for r in targets if r.priority == top]
    return Deliver(tuple(r.resource for r in targets))


def decide(kind: str, stype: str, resource: str | None, user: UserSnapshot,
           policy: MessagePolicy = "most_available") -> Action:
    """Decide delivery of a stanza of `kind` (message/presence/iq) and effective type `stype`
    addressed to an account, to its bare JID (`resource` None) or to a full JID."""
    if not user.exists:  # §8.5.1
        if kind == "iq":
            if stype in ("get", "set"):
                return Bounce("service-unavailable")
            return Ignore("IQ response to unknown account")
        if kind == "message" and stype != "error":
            return Bounce("service-unavailable")
        return Ignore("no such account")

    if resource is not None:
        match = next((r for r in user.resources if r.resource == resource), None)
        if match is not None:  # §8.5.3.1: deliver whatever it is
            return Deliver((resource,))
        # §8.5.3.2: no such resource
        if kind == "message":
            if stype == "chat":
                return _message_to_bare("chat", user, policy)
            if stype in ("error", "headline"):
                return Ignore(f"{stype} message to unavailable resource")
            return Bounce("service-unavailable")
        if kind == "iq":
            if stype in ("get", "set"):
                return Bounce("service-unavailable")
            return Ignore("IQ response to unavailable resource")
        return Ignore("presence to unavailable resource")

    # §8.5.2: bare JID
    if kind == "message":
        return _message_to_bare(stype, user, policy)
    if kind == "iq":
        return HandleAtServer()
    # presence available/unavailable: all available resources (§8.5.2.1.2)
    targets = tuple(r.resource for r in user.resources if r.available)
    if not targets:
        return Ignore("presence to account with no available resource")
    return Deliver(targets)
