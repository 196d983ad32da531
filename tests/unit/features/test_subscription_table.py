"""RFC 6121 Appendix A, checked cell by cell: every state x every subscription stanza, both ways.

The expected values are the RFC's own tables (A.2.1-A.2.4 for outbound stanzas, A.3.1-A.3.4
for inbound ones), transcribed below in the RFC's layout and parsed, so a mistake in the
implementation's table and a mistake here would have to be the same mistake in two different
forms. §3.4 (pre-approval) and the actions the RFC text attaches to transitions (roster push,
auto-reply, presence after approval/cancellation, stored requests) are checked on top.
"""

from __future__ import annotations

import itertools

import pytest

from blether.features.roster.subscription import (
    Direction,
    Kind,
    Outcome,
    State,
    Status,
    transition,
)

# -- the RFC's tables ---------------------------------------------------------------------

A_2_1_OUTBOUND_SUBSCRIBE = """
   | "None"                  |  yes   |  "None + Pending Out"      |
   | "None + Pending Out"    |  yes   |  no state change           |
   | "None + Pending In"     |  yes   |  "None + Pending Out/In"   |
   | "None + Pending Out/In" |  yes   |  no state change           |
   | "To"                    |  yes   |  no state change           |
   | "To + Pending In"       |  yes   |  no state change           |
   | "From"                  |  yes   |  "From + Pending Out"      |
   | "From + Pending Out"    |  yes   |  no state change           |
   | "Both"                  |  yes   |  no state change           |
"""

A_2_2_OUTBOUND_UNSUBSCRIBE = """
   | "None"                  |  yes   |  no state change           |
   | "None + Pending Out"    |  yes   |  "None"                    |
   | "None + Pending In"     |  yes   |  no state change           |
   | "None + Pending Out/In" |  yes   |  "None + Pending In"       |
   | "To"                    |  yes   |  "None"                    |
   | "To + Pending In"       |  yes   |  "None + Pending In"       |
   | "From"                  |  yes   |  no state change           |
   | "From + Pending Out"    |  yes   |  "From"                    |
   | "Both"                  |  yes   |  "From"                    |
"""

A_2_3_OUTBOUND_SUBSCRIBED = """
   | "None"                  |  no    |  no state change [1]       |
   | "None + Pending Out"    |  no    |  no state change [1]       |
   | "None + Pending In"     |  yes   |  "From"                    |
   | "None + Pending Out/In" |  yes   |  "From + Pending Out"      |
   | "To"                    |  no    |  no state change [1]       |
   | "To + Pending In"       |  yes   |  "Both"                    |
   | "From"                  |  no    |  no state change           |
   | "From + Pending Out"    |  no    |  no state change           |
   | "Both"                  |  no    |  no state change           |
"""

A_2_4_OUTBOUND_UNSUBSCRIBED = """
   | "None"                  |  no    |  no state change [1]       |
   | "None + Pending Out"    |  no    |  no state change [1]       |
   | "None + Pending In"     |  yes   |  "None"                    |
   | "None + Pending Out/In" |  yes   |  "None + Pending Out"      |
   | "To"                    |  no    |  no state change [1]       |
   | "To + Pending In"       |  yes   |  "To"                      |
   | "From"                  |  yes   |  "None"                    |
   | "From + Pending Out"    |  yes   |  "None + Pending Out"      |
   | "Both"                  |  yes   |  "To"                      |
"""

A_3_1_INBOUND_SUBSCRIBE = """
   | "None"                  |  yes   |  "None + Pending In"       |
   | "None + Pending Out"    |  yes   |  "None + Pending Out/In"   |
   | "None + Pending In"     |  no    |  no state change           |
   | "None + Pending Out/In" |  no    |  no state change           |
   | "To"                    |  yes   |  "To + Pending In"         |
   | "To + Pending In"       |  no    |  no state change           |
   | "From"                  |  no *  |  no state change           |
   | "From + Pending Out"    |  no *  |  no state change           |
   | "Both"                  |  no *  |  no state change           |
"""

A_3_2_INBOUND_UNSUBSCRIBE = """
   | "None"                  |  no    |  no state change           |
   | "None + Pending Out"    |  no    |  no state change           |
   | "None + Pending In"     |  yes   |  "None"                    |
   | "None + Pending Out/In" |  yes   |  "None + Pending Out"      |
   | "To"                    |  no    |  no state change           |
   | "To + Pending In"       |  yes   |  "To"                      |
   | "From"                  |  yes   |  "None"                    |
   | "From + Pending Out"    |  yes   |  "None + Pending Out"      |
   | "Both"                  |  yes   |  "To"                      |
"""

A_3_3_INBOUND_SUBSCRIBED = """
   | "None"                  |  no    |  no state change           |
   | "None + Pending Out"    |  yes   |  "To"                      |
   | "None + Pending In"     |  no    |  no state change           |
   | "None + Pending Out/In" |  yes   |  "To + Pending In"         |
   | "To"                    |  no    |  no state change           |
   | "To + Pending In"       |  no    |  no state change           |
   | "From"                  |  no    |  no state change           |
   | "From + Pending Out"    |  yes   |  "Both"                    |
   | "Both"                  |  no    |  no state change           |
"""

A_3_4_INBOUND_UNSUBSCRIBED = """
   | "None"                  |  no    |  no state change           |
   | "None + Pending Out"    |  yes   |  "None"                    |
   | "None + Pending In"     |  no    |  no state change           |
   | "None + Pending Out/In" |  yes   |  "None + Pending In"       |
   | "To"                    |  yes   |  "None"                    |
   | "To + Pending In"       |  yes   |  "None + Pending In"       |
   | "From"                  |  no    |  no state change           |
   | "From + Pending Out"    |  yes   |  "From"                    |
   | "Both"                  |  yes   |  "From"                    |
"""

TABLES = {
    (Direction.OUTBOUND, Kind.SUBSCRIBE): A_2_1_OUTBOUND_SUBSCRIBE,
    (Direction.OUTBOUND, Kind.UNSUBSCRIBE): A_2_2_OUTBOUND_UNSUBSCRIBE,
    (Direction.OUTBOUND, Kind.SUBSCRIBED): A_2_3_OUTBOUND_SUBSCRIBED,
    (Direction.OUTBOUND, Kind.UNSUBSCRIBED): A_2_4_OUTBOUND_UNSUBSCRIBED,
    (Direction.INBOUND, Kind.SUBSCRIBE): A_3_1_INBOUND_SUBSCRIBE,
    (Direction.INBOUND, Kind.UNSUBSCRIBE): A_3_2_INBOUND_UNSUBSCRIBE,
    (Direction.INBOUND, Kind.SUBSCRIBED): A_3_3_INBOUND_SUBSCRIBED,
    (Direction.INBOUND, Kind.UNSUBSCRIBED): A_3_4_INBOUND_UNSUBSCRIBED,
}

STATE_NAMES = ["None", "None + Pending Out", "None + Pending In", "None + Pending Out/In",
               "To", "To + Pending In", "From", "From + Pending Out", "Both"]


class Row:
    def __init__(self, line: str) -> None:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        self.state = cells[0].strip('"')
        self.forward = cells[1].split()[0] == "yes"
        self.starred = cells[1].endswith("*")
        self.preapproval_note = cells[2].endswith("[1]")
        new = cells[2].removesuffix("[1]").strip()
        self.new = self.state if new == "no state change" else new.strip('"')


def rows(table: str) -> list[Row]:
    return [Row(line) for line in table.strip().splitlines()]


CELLS = [(d, k, row) for (d, k), table in TABLES.items() for row in rows(table)]


def visible(state_name: str) -> tuple[str, bool]:
    """What the roster item shows in a state, from the RFC's naming (§2.1.2): the
    subscription, and ask='subscribe' for Pending Out. Pending In is never shown."""
    return state_name.split(" ")[0].lower(), "Pending Out" in state_name


def test_every_table_covers_the_nine_states_of_a_1() -> None:
    assert [s.value for s in State] == STATE_NAMES
    for table in TABLES.values():
        assert [r.state for r in rows(table)] == STATE_NAMES
    assert len(CELLS) == 9 * 8


@pytest.mark.parametrize(("direction", "kind", "row"), CELLS,
                         ids=[f"{d.value}-{k.value}-{r.state}" for d, k, r in CELLS])
def test_cell(direction: Direction, kind: Kind, row: Row) -> None:
    """One cell of A.2/A.3, for an item that is not pre-approved."""
    out = transition(direction, kind, Status(State(row.state)))
    assert out.forward is row.forward
    assert out.new.state.value == row.new
    # The item as the client sees it changes exactly when the RFC's visible state does, and
    # that is when a roster push is due (§3.1.2, §3.1.6, §3.2.2, §3.2.3, §3.3.2, §3.3.3).
    assert out.push is (visible(row.state) != visible(row.new) or out.new.approved)
    # A.3.1 "no *": the server auto-replies 'subscribed' to a contact that already has access
    # to the user's presence (§3.1.3 rule 2); nowhere else is anything answered for the user.
    assert out.auto_reply is (Kind.SUBSCRIBED if row.starred else None)
    # Pre-approval (§3.4) is noted only where A.2.3 says so ([1]).
    expect_approved = (direction, kind) == (Direction.OUTBOUND, Kind.SUBSCRIBED) \
        and row.preapproval_note
    assert out.new.approved is expect_approved


@pytest.mark.parametrize(("direction", "kind", "row"), CELLS,
                         ids=[f"{d.value}-{k.value}-{r.state}" for d, k, r in CELLS])
def test_presence_and_stored_request_follow_the_state(direction: Direction, kind: Kind,
                                                      row: Row) -> None:
    out = transition(direction, kind, Status(State(row.state)))
    had_from = row.state.startswith(("From", "Both"))
    has_from = row.new.startswith(("From", "Both"))
    # §3.1.5: after approving, the user's server sends the contact the user's presence.
    assert out.presence_granted is (not had_from and has_from)
    assert out.presence_granted is ((direction, kind) == (Direction.OUTBOUND, Kind.SUBSCRIBED)
                                    and row.forward)
    # §3.2.2 (user cancels) and §3.3.3 (contact unsubscribes): 'unavailable' to the contact.
    assert out.presence_revoked is (had_from and not has_from)
    assert out.presence_revoked is (row.forward and (direction, kind) in {
        (Direction.OUTBOUND, Kind.UNSUBSCRIBED), (Direction.INBOUND, Kind.UNSUBSCRIBE)}
        and had_from)
    # §3.1.3 rule 4: the request is kept until answered and redelivered meanwhile.
    pending_after = "Pending In" in row.new or "Out/In" in row.new
    pending_before = "Pending In" in row.state or "Out/In" in row.state
    assert out.store_request is ((direction, kind) == (Direction.INBOUND, Kind.SUBSCRIBE)
                                 and pending_after)
    assert out.request_answered is (pending_before and not pending_after)


PRE_APPROVED = [State.NONE, State.NONE_PENDING_OUT, State.TO]  # the [1] rows of A.2.3


@pytest.mark.parametrize("state", PRE_APPROVED, ids=lambda s: s.value)
def test_preapproval_then_request_is_approved_automatically(state: State) -> None:
    """§3.4: a request from a pre-approved contact is approved by the server: 'subscribed'
    goes back, the user's presence follows, the request is not delivered but the roster
    push shows the new subscription; the pre-approval is used up."""
    noted = transition(Direction.OUTBOUND, Kind.SUBSCRIBED, Status(state))
    assert noted.new == Status(state, approved=True) and not noted.forward and noted.push
    out = transition(Direction.INBOUND, Kind.SUBSCRIBE, noted.new)
    approved = {State.NONE: State.FROM, State.NONE_PENDING_OUT: State.FROM_PENDING_OUT,
                State.TO: State.BOTH}[state]
    assert out.new == Status(approved, approved=False)
    assert out.auto_reply is Kind.SUBSCRIBED
    assert not out.forward and out.push and out.presence_granted and out.send_presence
    assert not out.store_request and not out.request_answered


@pytest.mark.parametrize("state", PRE_APPROVED, ids=lambda s: s.value)
def test_unsubscribed_cancels_a_preapproval(state: State) -> None:
    out = transition(Direction.OUTBOUND, Kind.UNSUBSCRIBED, Status(state, approved=True))
    assert out.new == Status(state) and not out.forward and out.push


@pytest.mark.parametrize(("direction", "kind", "state"), [
    (d, k, s) for d, k, s in itertools.product(Direction, Kind, PRE_APPROVED)
    if (d, k) not in {(Direction.INBOUND, Kind.SUBSCRIBE),
                      (Direction.OUTBOUND, Kind.UNSUBSCRIBED)}])
def test_preapproval_survives_other_stanzas(direction: Direction, kind: Kind,
                                            state: State) -> None:
    """Every other cell behaves as in the RFC table and keeps the pre-approval."""
    plain = transition(direction, kind, Status(state))
    out = transition(direction, kind, Status(state, approved=True))
    assert out.new.state is plain.new.state and out.forward is plain.forward
    assert out.new.approved is not (out.new.state.has_from or out.new.state.pending_in)


ALL_STATUSES = [Status(s, a) for s in State for a in (False, True)
                if not (a and (s.has_from or s.pending_in))]


@pytest.mark.parametrize(("direction", "kind", "status"),
                         list(itertools.product(Direction, Kind, ALL_STATUSES)))
def test_invariants(direction: Direction, kind: Kind, status: Status) -> None:
    out = transition(direction, kind, status)
    assert isinstance(out, Outcome) and out.old == status
    # §3.4: 'approved' only while the contact has neither access nor a pending request.
    assert not (out.new.approved and (out.new.state.has_from or out.new.state.pending_in))
    # A.2: subscribe and unsubscribe are routed without exception (resynchronisation).
    if direction is Direction.OUTBOUND and kind in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE):
        assert out.forward
    # A.2/A.3: subscribed/unsubscribed go through only when they change the state.
    if kind in (Kind.SUBSCRIBED, Kind.UNSUBSCRIBED) and direction is Direction.OUTBOUND:
        assert out.forward is (out.old.state is not out.new.state)
    if direction is Direction.INBOUND and kind is not Kind.SUBSCRIBE:
        assert out.forward is out.changed
    # Nobody but the user's own clients is told anything for the user, except the
    # auto-reply; and an inbound stanza never changes the user's side of Pending Out except
    # by answering it.
    if direction is Direction.OUTBOUND:
        assert out.auto_reply is None


@pytest.mark.parametrize(("subscription", "ask", "pending", "expected"), [
    ("none", False, False, State.NONE),
    ("none", True, True, State.NONE_PENDING_OUT_IN),
    ("to", False, True, State.TO_PENDING_IN),
    ("from", True, False, State.FROM_PENDING_OUT),
    ("both", False, False, State.BOTH),
    # Flags A.1 does not allow with the subscription are dropped, never invented.
    ("to", True, False, State.TO),
    ("both", True, True, State.BOTH),
    ("from", False, True, State.FROM),
])
def test_state_of_an_item(subscription: str, ask: bool, pending: bool,
                          expected: State) -> None:
    assert State.of(subscription, ask, pending) is expected


def test_unknown_subscription_is_refused() -> None:
    with pytest.raises(ValueError):
        State.of("remove", False, False)
