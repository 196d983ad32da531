"""RFC 6121 §8.5 as a table: one row per sub-case of §8.5.1-§8.5.3 (CONFORMANCE.md §10).

Each row gives the stanza (kind, type), the address (bare, or full with a resource that does
or does not match), the account's sessions as (resource, priority, available) and what the RFC
allows. Where the RFC offers a choice ("MUST either (a) … or (b) …") the row lists every
permitted outcome, so the table checks the RFC and not one implementation's pick; the rows
that pin Blether's own choice (most-available delivery, offline storage) say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from blether.core.delivery import (
    Action,
    Bounce,
    Deliver,
    HandleAtServer,
    Ignore,
    MessagePolicy,
    ResourceState,
    StoreOffline,
    UserSnapshot,
    decide,
)


@dataclass(frozen=True)
class Expect:
    """A permitted outcome: an action class, plus the resources or error condition."""

    kind: type
    resources: frozenset[str] = frozenset()
    condition: str = ""

    def matches(self, action: Action) -> bool:
        if not isinstance(action, self.kind):
            return False
        if isinstance(action, Deliver):
            # §8.5.2.1.1: delivery is by resource; order is irrelevant, duplicates are not.
            return (len(action.resources) == len(set(action.resources))
                    and set(action.resources) == self.resources)
        if isinstance(action, Bounce):
            return action.condition == self.condition
        return True


def deliver(*resources: str) -> Expect:
    return Expect(Deliver, frozenset(resources))


IGNORE = Expect(Ignore)
OFFLINE = Expect(StoreOffline)          # XEP-0160 offline storage (the router bounces if refused)
AT_SERVER = Expect(HandleAtServer)
UNAVAILABLE = Expect(Bounce, condition="service-unavailable")

NO_ACCOUNT = UserSnapshot(exists=False)
NO_SESSION = UserSnapshot(exists=True)


def user(*sessions: tuple[str, int, bool]) -> UserSnapshot:
    return UserSnapshot(True, tuple(ResourceState(r, p, a) for r, p, a in sessions))


# Sessions used below: (resource, priority, available). "Connected" = bound, no initial
# presence yet (RFC 6121 §1.3 "connected resource" vs "available resource").
ONE = user(("a", 1, True))
ONE_ZERO = user(("a", 0, True))
ONE_NEG = user(("a", -1, True))
TWO_NEG = user(("a", -1, True), ("b", -5, True))
POS_AND_NEG = user(("a", 1, True), ("n", -1, True))
SAME_PRIO = user(("a", 1, True), ("b", 1, True))
DIFF_PRIO = user(("a", 3, True), ("b", 1, True), ("z", 0, True), ("n", -1, True))
CONNECTED_ONLY = user(("c", 5, False))
AVAILABLE_AND_CONNECTED = user(("a", 0, True), ("c", 9, False))


@dataclass(frozen=True)
class Row:
    section: str
    kind: str
    type: str
    resource: str | None           # None: to the bare JID
    user: UserSnapshot
    allowed: tuple[Expect, ...]
    policy: MessagePolicy = "most_available"
    note: str = ""


MESSAGE_TYPES = ("normal", "chat", "groupchat", "headline")

ROWS: list[Row] = [
    # §8.5.1 — no such user. Message: MUST ignore or service-unavailable; IQ: MUST return
    # service-unavailable; presence: SHOULD ignore. Never an error in reply to an error.
    *[Row("8.5.1", "message", t, res, NO_ACCOUNT, (IGNORE, UNAVAILABLE))
      for t in MESSAGE_TYPES for res in (None, "r")],
    *[Row("8.5.1", "message", "error", res, NO_ACCOUNT, (IGNORE,)) for res in (None, "r")],
    *[Row("8.5.1", "presence", t, res, NO_ACCOUNT, (IGNORE,))
      for t in ("available", "unavailable") for res in (None, "r")],
    *[Row("8.5.1", "iq", t, res, NO_ACCOUNT, (UNAVAILABLE,))
      for t in ("get", "set") for res in (None, "r")],
    *[Row("8.5.1", "iq", t, res, NO_ACCOUNT, (IGNORE,), note="RFC 6120 §8.2.3: never answered")
      for t in ("result", "error") for res in (None, "r")],

    # §8.5.2.1.1 — bare JID, at least one available resource. normal and chat: one
    # non-negative resource → it; several → "most available" (a) or all non-negative (b);
    # never a negative-priority resource; only negative ones → as if none available.
    *[row for t in ("normal", "chat") for row in (
        Row("8.5.2.1.1", "message", t, None, ONE, (deliver("a"),)),
        Row("8.5.2.1.1", "message", t, None, ONE_ZERO, (deliver("a"),)),
        Row("8.5.2.1.1", "message", t, None, POS_AND_NEG, (deliver("a"),),
            note="never to the negative-priority resource"),
        Row("8.5.2.1.1", "message", t, None, SAME_PRIO,
            (deliver("a"), deliver("b"), deliver("a", "b"))),
        Row("8.5.2.1.1", "message", t, None, DIFF_PRIO, (deliver("a"),),
            note="Blether's (a): highest priority is most available"),
        Row("8.5.2.1.1", "message", t, None, DIFF_PRIO, (deliver("a", "b", "z"),),
            policy="all_non_negative", note="(b): all non-negative, still not 'n'"),
        Row("8.5.2.1.1", "message", t, None, ONE_NEG, (OFFLINE, UNAVAILABLE),
            note="only a negative resource: handled as in §8.5.2.2"),
        Row("8.5.2.1.1", "message", t, None, TWO_NEG, (OFFLINE, UNAVAILABLE)),
        Row("8.5.2.1.1", "message", t, None, AVAILABLE_AND_CONNECTED, (deliver("a"),),
            note="a connected (not available) resource is no target"),
    )],
    # groupchat: MUST NOT deliver, MUST return an error (SHOULD be service-unavailable).
    *[Row("8.5.2.1.1", "message", "groupchat", None, u, (UNAVAILABLE,))
      for u in (ONE, ONE_NEG, SAME_PRIO, DIFF_PRIO)],
    # headline: only negative → silently ignore; otherwise all non-negative resources.
    Row("8.5.2.1.1", "message", "headline", None, ONE, (deliver("a"),)),
    Row("8.5.2.1.1", "message", "headline", None, ONE_NEG, (IGNORE,)),
    Row("8.5.2.1.1", "message", "headline", None, TWO_NEG, (IGNORE,)),
    Row("8.5.2.1.1", "message", "headline", None, DIFF_PRIO, (deliver("a", "b", "z"),)),
    Row("8.5.2.1.1", "message", "headline", None, SAME_PRIO, (deliver("a", "b"),)),
    # error: silently ignore.
    *[Row("8.5.2.1.1", "message", "error", None, u, (IGNORE,)) for u in (ONE, DIFF_PRIO)],
    # RFC 6121 §5.2.2: an unknown type is handled as normal.
    Row("5.2.2", "message", "x-unknown", None, DIFF_PRIO, (deliver("a"),)),
    Row("5.2.2", "message", "x-unknown", None, NO_SESSION, (OFFLINE, UNAVAILABLE)),

    # §8.5.2.1.2 — presence to the bare JID: every available resource (priority irrelevant),
    # not a connected-only one.
    *[Row("8.5.2.1.2", "presence", t, None, u, (deliver(*want),))
      for t in ("available", "unavailable")
      for u, want in ((ONE, ("a",)), (ONE_NEG, ("a",)), (DIFF_PRIO, ("a", "b", "z", "n")),
                      (AVAILABLE_AND_CONNECTED, ("a",)))],

    # §8.5.2.1.3 — IQ to the bare JID: the server answers on the user's behalf.
    *[Row("8.5.2.1.3", "iq", t, None, u, (AT_SERVER,))
      for t in ("get", "set") for u in (ONE, DIFF_PRIO)],

    # §8.5.2.2.1 — bare JID, no available resource: normal/chat → offline or
    # service-unavailable; groupchat → error; headline and error → silently ignore.
    *[Row("8.5.2.2.1", "message", t, None, u, (OFFLINE, UNAVAILABLE))
      for t in ("normal", "chat") for u in (NO_SESSION, CONNECTED_ONLY)],
    *[Row("8.5.2.2.1", "message", "groupchat", None, u, (UNAVAILABLE,))
      for u in (NO_SESSION, CONNECTED_ONLY)],
    *[Row("8.5.2.2.1", "message", t, None, u, (IGNORE,))
      for t in ("headline", "error") for u in (NO_SESSION, CONNECTED_ONLY)],
    # §8.5.2.2.2 — presence (no type / unavailable): SHOULD silently ignore, not store.
    *[Row("8.5.2.2.2", "presence", t, None, u, (IGNORE,))
      for t in ("available", "unavailable") for u in (NO_SESSION, CONNECTED_ONLY)],
    # §8.5.2.2.3 — IQ: the server answers on the user's behalf.
    *[Row("8.5.2.2.3", "iq", t, None, NO_SESSION, (AT_SERVER,)) for t in ("get", "set")],

    # §8.5.3.1 — full JID that matches a connected or available resource: deliver, whatever
    # the kind and type, whatever its priority.
    *[Row("8.5.3.1", k, t, "a", u, (deliver("a"),))
      for k, types in (("message", (*MESSAGE_TYPES, "error")),
                       ("presence", ("available", "unavailable")),
                       ("iq", ("get", "set", "result", "error")))
      for t in types for u in (ONE, ONE_NEG, DIFF_PRIO)],
    *[Row("8.5.3.1", k, t, "c", CONNECTED_ONLY, (deliver("c"),))
      for k, t in (("message", "chat"), ("iq", "get"), ("presence", "available"))],

    # §8.5.3.2.1 — full JID, no matching resource. normal, groupchat, headline: ignore or
    # error; error: silently ignore; chat: as if to the bare JID.
    *[Row("8.5.3.2.1", "message", t, "gone", u, (IGNORE, UNAVAILABLE))
      for t in ("normal", "groupchat", "headline") for u in (NO_SESSION, ONE, DIFF_PRIO)],
    *[Row("8.5.3.2.1", "message", "error", "gone", u, (IGNORE,))
      for u in (NO_SESSION, ONE, DIFF_PRIO)],
    Row("8.5.3.2.1", "message", "chat", "gone", NO_SESSION, (OFFLINE, UNAVAILABLE)),
    Row("8.5.3.2.1", "message", "chat", "gone", CONNECTED_ONLY, (OFFLINE, UNAVAILABLE)),
    Row("8.5.3.2.1", "message", "chat", "gone", ONE, (deliver("a"),)),
    Row("8.5.3.2.1", "message", "chat", "gone", ONE_ZERO, (deliver("a"),)),
    Row("8.5.3.2.1", "message", "chat", "gone", POS_AND_NEG, (deliver("a"),)),
    Row("8.5.3.2.1", "message", "chat", "gone", SAME_PRIO,
        (deliver("a"), deliver("b"), deliver("a", "b"))),
    Row("8.5.3.2.1", "message", "chat", "gone", DIFF_PRIO, (deliver("a"),),
        note="Blether's (a): most available"),
    Row("8.5.3.2.1", "message", "chat", "gone", ONE_NEG, (OFFLINE, UNAVAILABLE),
        note="all negative: SHOULD be handled as with no available resource"),
    # §8.5.3.2.2 — presence (no type / unavailable): MUST silently ignore.
    *[Row("8.5.3.2.2", "presence", t, "gone", u, (IGNORE,))
      for t in ("available", "unavailable") for u in (NO_SESSION, ONE)],
    # §8.5.3.2.3 — IQ get/set: service-unavailable; result/error: never answered.
    *[Row("8.5.3.2.3", "iq", t, "gone", u, (UNAVAILABLE,))
      for t in ("get", "set") for u in (NO_SESSION, ONE)],
    *[Row("8.5.3.2.3", "iq", t, "gone", u, (IGNORE,))
      for t in ("result", "error") for u in (NO_SESSION, ONE)],
]


def _describe(row: Row) -> str:
    to = "bare" if row.resource is None else f"full:{row.resource}"
    sessions = ",".join(f"{r.resource}{r.priority:+d}{'' if r.available else '(conn)'}"
                        for r in row.user.resources) or ("none" if row.user.exists
                                                          else "no-account")
    policy = "" if row.policy == "most_available" else f"-{row.policy}"
    return f"§{row.section}-{row.kind}-{row.type}-{to}-[{sessions}]{policy}"


@pytest.mark.parametrize("row", ROWS, ids=_describe)
def test_rfc6121_8_5(row: Row) -> None:
    action = decide(row.kind, row.type, row.resource, row.user, row.policy)
    assert any(e.matches(action) for e in row.allowed), (
        f"§{row.section} {row.note}: got {action!r}, RFC allows {row.allowed!r}")


def test_table_covers_every_subsection() -> None:
    covered = {r.section for r in ROWS}
    assert {"8.5.1", "8.5.2.1.1", "8.5.2.1.2", "8.5.2.1.3", "8.5.2.2.1", "8.5.2.2.2",
            "8.5.2.2.3", "8.5.3.1", "8.5.3.2.1", "8.5.3.2.2", "8.5.3.2.3"} <= covered


def test_blether_stores_offline_rather_than_bouncing() -> None:
    """Blether's choice in §8.5.2.2.1: offline storage (XEP-0160), not an immediate error."""
    assert decide("message", "chat", None, NO_SESSION) == StoreOffline()
    assert decide("message", "normal", None, ONE_NEG) == StoreOffline()
