"""RFC 6121 Appendix A (subscription states) and §3.4 (pre-approval) as a pure rule table.

The nine states of A.1 are what one roster item looks like from the user's side: the
subscription (none/to/from/both), "Pending Out" (our request is unanswered: ask='subscribe')
and "Pending In" (the contact's request is unanswered; kept server-side as a stored request,
never shown in the roster). §3.4 adds a flag, *pre-approved* ('approved' on the item), which
only makes sense while the contact has no subscription and no pending request.

`transition(direction, kind, status)` answers, for one subscription stanza crossing the
user's server, what A.2 (outbound: sent by the user) or A.3 (inbound: sent by the contact)
says: the new state and whether the stanza is routed to the contact (outbound) or delivered
to the user (inbound). Everything the server then does is derived from that pair, in
`Outcome`: roster push (the visible item changed), auto-reply `subscribed` (§3.1.3 rule 2),
presence to send to the contact when it gains or loses access to the user's presence
(§3.1.5, §3.2.2, §3.3.3), the stored request to keep or drop (§3.1.3 rule 4).

No I/O here: the roster feature reads the item and the pending flag, asks this module, and
carries the outcome out. tests/unit/features/test_subscription_table.py checks every state x
event against the RFC's tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class State(Enum):
    """RFC 6121 A.1: the defined subscription states, named as in the RFC."""

    NONE = "None"
    NONE_PENDING_OUT = "None + Pending Out"
    NONE_PENDING_IN = "None + Pending In"
    NONE_PENDING_OUT_IN = "None + Pending Out/In"
    TO = "To"
    TO_PENDING_IN = "To + Pending In"
    FROM = "From"
    FROM_PENDING_OUT = "From + Pending Out"
    BOTH = "Both"

    @property
    def subscription(self) -> str:
        """The roster item's 'subscription' attribute in this state."""
        return self.value.split(" ")[0].lower()

    @property
    def pending_out(self) -> bool:
        return "Pending Out" in self.value

    @property
    def pending_in(self) -> bool:
        return "Pending In" in self.value or "Out/In" in self.value

    @property
    def has_from(self) -> bool:
        """The contact receives the user's presence."""
        return self.subscription in ("from", "both")

    @property
    def has_to(self) -> bool:
        """The user receives the contact's presence."""
        return self.subscription in ("to", "both")

    @classmethod
    def of(cls, subscription: str, pending_out: bool, pending_in: bool) -> State:
        """The state of an item. Flags that A.1 does not allow with this subscription (a
        stale ask='subscribe' on 'to'/'both', a stored request from a 'from' contact) are
        dropped: the subscription itself is what the contact's server agreed to."""
        out = pending_out and subscription in ("none", "from")
        inn = pending_in and subscription in ("none", "to")
        for state in cls:
            if (state.subscription, state.pending_out, state.pending_in) == (subscription, out,
                                                                             inn):
                return state
        raise ValueError(f"unknown subscription {subscription!r}")


class Kind(Enum):
    SUBSCRIBE = "subscribe"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBE = "unsubscribe"
    UNSUBSCRIBED = "unsubscribed"


class Direction(Enum):
    OUTBOUND = "outbound"   # A.2: sent by the user, processed by the user's server
    INBOUND = "inbound"     # A.3: sent by the contact, arriving at the user's server


@dataclass(frozen=True, slots=True)
class Status:
    """A state plus the §3.4 pre-approval flag."""

    state: State
    approved: bool = False

    @property
    def visible(self) -> tuple[str, bool, bool]:
        """What a roster item shows of this status: subscription, ask, approved (Pending In
        is never shown, RFC 6121 §2.1.2.5)."""
        return self.state.subscription, self.state.pending_out, self.approved


S = State
SAME: None = None  # "no state change" in the tables below, as the RFC writes it

# A.2.1-A.2.4: outbound stanzas. (route to the contact?, new state or SAME)
OUTBOUND: dict[Kind, dict[State, tuple[bool, State | None]]] = {
    Kind.SUBSCRIBE: {                       # A.2.1: subscribe/unsubscribe are always routed
        S.NONE: (True, S.NONE_PENDING_OUT),  # so the user can resynchronise with the contact
        S.NONE_PENDING_OUT: (True, SAME),
        S.NONE_PENDING_IN: (True, S.NONE_PENDING_OUT_IN),
        S.NONE_PENDING_OUT_IN: (True, SAME),
        S.TO: (True, SAME),
        S.TO_PENDING_IN: (True, SAME),
        S.FROM: (True, S.FROM_PENDING_OUT),
        S.FROM_PENDING_OUT: (True, SAME),
        S.BOTH: (True, SAME),
    },
    Kind.UNSUBSCRIBE: {                     # A.2.2
        S.NONE: (True, SAME),
        S.NONE_PENDING_OUT: (True, S.NONE),
        S.NONE_PENDING_IN: (True, SAME),
        S.NONE_PENDING_OUT_IN: (True, S.NONE_PENDING_IN),
        S.TO: (True, S.NONE),
        S.TO_PENDING_IN: (True, S.NONE_PENDING_IN),
        S.FROM: (True, SAME),
        S.FROM_PENDING_OUT: (True, S.FROM),
        S.BOTH: (True, S.FROM),
    },
    Kind.SUBSCRIBED: {                      # A.2.3 ([1] rows: pre-approval, §3.4)
        S.NONE: (False, SAME),
        S.NONE_PENDING_OUT: (False, SAME),
        S.NONE_PENDING_IN: (True, S.FROM),
        S.NONE_PENDING_OUT_IN: (True, S.FROM_PENDING_OUT),
        S.TO: (False, SAME),
        S.TO_PENDING_IN: (True, S.BOTH),
        S.FROM: (False, SAME),
        S.FROM_PENDING_OUT: (False, SAME),
        S.BOTH: (False, SAME),
    },
    Kind.UNSUBSCRIBED: {                    # A.2.4 ([1] rows: cancel a pre-approval)
        S.NONE: (False, SAME),
        S.NONE_PENDING_OUT: (False, SAME),
        S.NONE_PENDING_IN: (True, S.NONE),
        S.NONE_PENDING_OUT_IN: (True, S.NONE_PENDING_OUT),
        S.TO: (False, SAME),
        S.TO_PENDING_IN: (True, S.TO),
        S.FROM: (True, S.NONE),
        S.FROM_PENDING_OUT: (True, S.NONE_PENDING_OUT),
        S.BOTH: (True, S.TO),
    },
}

# A.3.1-A.3.4: inbound stanzas. (deliver to the user?, new state or SAME)
INBOUND: dict[Kind, dict[State, tuple[bool, State | None]]] = {
    Kind.SUBSCRIBE: {                       # A.3.1 (From/Both: auto-reply 'subscribed')
        S.NONE: (True, S.NONE_PENDING_IN),
        S.NONE_PENDING_OUT: (True, S.NONE_PENDING_OUT_IN),
        S.NONE_PENDING_IN: (False, SAME),
        S.NONE_PENDING_OUT_IN: (False, SAME),
        S.TO: (True, S.TO_PENDING_IN),
        S.TO_PENDING_IN: (False, SAME),
        S.FROM: (False, SAME),
        S.FROM_PENDING_OUT: (False, SAME),
        S.BOTH: (False, SAME),
    },
    Kind.UNSUBSCRIBE: {                     # A.3.2
        S.NONE: (False, SAME),
        S.NONE_PENDING_OUT: (False, SAME),
        S.NONE_PENDING_IN: (True, S.NONE),
        S.NONE_PENDING_OUT_IN: (True, S.NONE_PENDING_OUT),
        S.TO: (False, SAME),
        S.TO_PENDING_IN: (True, S.TO),
        S.FROM: (True, S.NONE),
        S.FROM_PENDING_OUT: (True, S.NONE_PENDING_OUT),
        S.BOTH: (True, S.TO),
    },
    Kind.SUBSCRIBED: {                      # A.3.3
        S.NONE: (False, SAME),
        S.NONE_PENDING_OUT: (True, S.TO),
        S.NONE_PENDING_IN: (False, SAME),
        S.NONE_PENDING_OUT_IN: (True, S.TO_PENDING_IN),
        S.TO: (False, SAME),
        S.TO_PENDING_IN: (False, SAME),
        S.FROM: (False, SAME),
        S.FROM_PENDING_OUT: (True, S.BOTH),
        S.BOTH: (False, SAME),
    },
    Kind.UNSUBSCRIBED: {                    # A.3.4
        S.NONE: (False, SAME),
        S.NONE_PENDING_OUT: (True, S.NONE),
        S.NONE_PENDING_IN: (False, SAME),
        S.NONE_PENDING_OUT_IN: (True, S.NONE_PENDING_IN),
        S.TO: (True, S.NONE),
        S.TO_PENDING_IN: (True, S.NONE_PENDING_IN),
        S.FROM: (False, SAME),
        S.FROM_PENDING_OUT: (True, S.FROM),
        S.BOTH: (True, S.FROM),
    },
}

# §3.4: the states in which an outbound 'subscribed' is a pre-approval (A.2.3 note [1]):
# the contact has neither a subscription nor a pending request.
PRE_APPROVABLE = frozenset({S.NONE, S.NONE_PENDING_OUT, S.TO})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the user's server does with one subscription stanza."""

    direction: Direction
    kind: Kind
    old: Status
    new: Status
    forward: bool                    # outbound: route to the contact; inbound: deliver
    auto_reply: Kind | None = None   # inbound: answer the contact on the user's behalf

    @property
    def changed(self) -> bool:
        return self.old != self.new

    @property
    def push(self) -> bool:
        """A roster push is due: the item as the user's clients see it changed."""
        return self.old.visible != self.new.visible

    @property
    def presence_granted(self) -> bool:
        """The contact just got access to the user's presence (an approval): the server sends
        it the current presence of the user's available resources (§3.1.5)."""
        return not self.old.state.has_from and self.new.state.has_from

    @property
    def presence_revoked(self) -> bool:
        """The contact just lost access to the user's presence (cancelled, §3.2.2, or it
        unsubscribed, §3.3.3): the server sends it 'unavailable' from each available
        resource."""
        return self.old.state.has_from and not self.new.state.has_from

    @property
    def send_presence(self) -> bool:
        """Send the contact the user's current presence: after an approval, and with every
        auto-reply (a resynchronising contact has lost the presence it was owed; Prosody
        does the same)."""
        return self.presence_granted or self.auto_reply is Kind.SUBSCRIBED

    @property
    def store_request(self) -> bool:
        """Keep (or refresh) the contact's request for redelivery at every initial presence
        until the user answers it (§3.1.3 rule 4)."""
        return (self.direction is Direction.INBOUND and self.kind is Kind.SUBSCRIBE
                and self.new.state.pending_in)

    @property
    def request_answered(self) -> bool:
        """The stored request is gone (answered by the user, or withdrawn by the contact)."""
        return self.old.state.pending_in and not self.new.state.pending_in


def transition(direction: Direction, kind: Kind, status: Status) -> Outcome:
    """Apply one subscription stanza to the item's status (RFC 6121 A.2/A.3 and §3.4)."""
    state, approved = status.state, status.approved
    if direction is Direction.OUTBOUND:
        forward, target = OUTBOUND[kind][state]
        new_state = target or state
        if kind is Kind.SUBSCRIBED and state in PRE_APPROVABLE:
            approved = True      # §3.4.1: noted, not routed
        elif kind is Kind.UNSUBSCRIBED and state in PRE_APPROVABLE:
            approved = False     # §3.4: unsubscribed cancels a pre-approval
        return Outcome(direction, kind, status, _status(new_state, approved), forward)

    if kind is Kind.SUBSCRIBE:
        if state.has_from:
            # A.3.1 "no *": the contact already has access; say so again (§3.1.3 rule 2).
            return Outcome(direction, kind, status, status, False, Kind.SUBSCRIBED)
        if approved:
            # §3.4.2: pre-approved, so approve on the user's behalf: the request as if it
            # were recorded (A.3.1), then answered with 'subscribed' (A.2.3). The user learns
            # of it from the roster push, not from the request.
            pending = INBOUND[kind][state][1] or state
            granted = OUTBOUND[Kind.SUBSCRIBED][pending][1] or pending
            return Outcome(direction, kind, status, _status(granted, False), False,
                           Kind.SUBSCRIBED)
    forward, target = INBOUND[kind][state]
    return Outcome(direction, kind, status, _status(target or state, approved), forward)


def _status(state: State, approved: bool) -> Status:
    # Pre-approval is about a future request: meaningless once the contact is subscribed or
    # its request is pending (then 'subscribed' is an ordinary approval).
    return Status(state, approved and not state.has_from and not state.pending_in)
