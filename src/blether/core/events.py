"""The core's hooks and the events they carry (DESIGN.md §4 HookBus)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from blether.core.hooks import Hook
from blether.core.session import Session
from blether.jid import JID
from blether.xml.element import Element


@dataclass(slots=True)
class FromSession:
    """A stanza a local client sent, 'from' already stamped, before it is routed."""

    session: Session
    stanza: Element
    to: JID | None


@dataclass(slots=True)
class ToAccount:
    """A stanza for a local account (from anywhere), before RFC 6121 §8.5 delivery."""

    stanza: Element
    to: JID
    sender: JID


@dataclass(slots=True)
class ToHost:
    """A message or presence addressed to a hosted domain itself."""

    stanza: Element
    to: JID
    sender: JID


@dataclass(slots=True)
class ToRemote:
    """A stanza for a domain this server does not host (federation picks it up)."""

    stanza: Element
    to: JID
    sender: JID


@dataclass(slots=True)
class SessionEvent:
    session: Session


@dataclass(slots=True)
class SessionEnded:
    session: Session
    reason: str          # "closed" (clean </stream:stream>), "error", "dropped", "replaced"…


@dataclass(slots=True)
class StreamFeatures:
    """Collects stream features; `authenticated` tells pre- from post-SASL."""

    authenticated: bool
    secure: bool
    host: str
    features: list[Element] = field(default_factory=list)


@dataclass(slots=True)
class FromAccount:
    """A stanza leaving a local account (sent by a client, or by the server on the account's
    behalf, e.g. a presence broadcast or a probe answer), before it is routed.

    `session` is the client session that sent it, when a client did (not when the server
    sends on the account's behalf): a veto then answers that client (XEP-0191 §3.3)."""

    stanza: Element
    to: JID
    sender: JID
    session: Session | None = None


# A client sent a stanza ('from' stamped). Features claim what they own (presence broadcast,
# subscriptions…) by returning True; otherwise the router routes it.
@dataclass(slots=True)
class PreAuthIq:
    """An IQ from a client that has not authenticated yet (XEP-0077 in-band registration).

    `reply` writes a stanza straight to that connection (there is no JID to route to).
    """

    stanza: Element
    ip: str
    domain: str
    secure: bool
    reply: Callable[[Element], None]


STANZA_FROM_SESSION: Hook[FromSession] = Hook("stanza-from-session")
# Every stanza leaving a local account passes here (privacy/blocking may veto with True).
STANZA_FROM_ACCOUNT: Hook[FromAccount] = Hook("stanza-from-account")
STANZA_TO_ACCOUNT: Hook[ToAccount] = Hook("stanza-to-account")
MESSAGE_OFFLINE: Hook[ToAccount] = Hook("message-offline")
STANZA_TO_HOST: Hook[ToHost] = Hook("stanza-to-host")
ROUTE_REMOTE: Hook[ToRemote] = Hook("route-remote")
SESSION_BOUND: Hook[SessionEvent] = Hook("session-bound")
# The session sent initial presence (RFC 6121 §4.2): pending subscription requests and offline
# messages are delivered now. Fired by the presence feature after its broadcast and probes.
SESSION_AVAILABLE: Hook[SessionEvent] = Hook("session-available")
# The session became unavailable (explicit unavailable presence, or the stream ended).
SESSION_UNAVAILABLE: Hook[SessionEvent] = Hook("session-unavailable")
SESSION_ENDED: Hook[SessionEnded] = Hook("session-ended")
COLLECT_FEATURES: Hook[StreamFeatures] = Hook("collect-features")
@dataclass(slots=True)
class AccountEvent:
    """An account was created or removed (in-band registration, admin commands)."""

    user: JID            # bare JID
    origin: str          # "in-band" (XEP-0077), "admin" (XEP-0133)


ACCOUNT_CREATED: Hook[AccountEvent] = Hook("account-created")
ACCOUNT_REMOVED: Hook[AccountEvent] = Hook("account-removed")
SERVER_STOPPING: Hook[None] = Hook("server-stopping")
# An <iq/> before SASL success. Unclaimed get/set IQs are answered with service-unavailable.
PRE_AUTH_IQ: Hook[PreAuthIq] = Hook("pre-auth-iq")
