"""RFC 6121 §8.5 message delivery against the real server: bare / full / unknown-full JID,
by no resource / negative-priority only / one / several resources, by every message type.

For each case the sender sends one message of each type, then a "sync" message to each of
the recipient's resources and a ping to the server; as the server processes a stream's
stanzas in order (RFC 6120 §10.1), once those arrive everything before them has been decided.
Offline storage is observed by logging in one more resource afterwards. Where the RFC allows
a choice, the expectation names Blether's (most-available delivery, offline storage, an error
for normal/groupchat to an unknown resource).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import pytest

from integration.harness import Client, ServerProcess, ns

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
TYPES = ("normal", "chat", "groupchat", "headline", "error")

# The recipient's resources: name -> priority.
CONFIGS: dict[str, dict[str, int]] = {
    "no-resource": {},
    "negative-only": {"neg": -1},
    "one": {"one": 0},
    "several": {"high": 5, "low": 1, "neg": -1},
}
# Which resource a "full" case addresses (not the most available one, to show a full JID
# goes exactly where it says, negative priority or not, §8.5.3.1).
FULL_TARGET = {"negative-only": "neg", "one": "one", "several": "low"}


@dataclass
class Outcome:
    delivered: dict[str, set[str]] = field(default_factory=dict)   # type -> resources
    errors: dict[str, str] = field(default_factory=dict)           # type -> condition
    stored: set[str] = field(default_factory=set)                  # types kept offline


def expected(to: str, config: str) -> Outcome:
    """The RFC 6121 §8.5 table for this case, with Blether's choices where it offers some."""
    res = CONFIGS[config]
    non_negative = {r for r, p in res.items() if p >= 0}
    most = {r for r in non_negative if res[r] == max((res[n] for n in non_negative),
                                                     default=0)}
    out = Outcome()

    def as_bare(mtype: str) -> None:
        if mtype in ("normal", "chat"):
            if most:
                out.delivered[mtype] = most                     # §8.5.2.1.1 (a)
            else:
                out.stored.add(mtype)                           # §8.5.2.2.1 / XEP-0160
        elif mtype == "groupchat":
            out.errors[mtype] = "service-unavailable"           # §8.5.2.1.1, §8.5.2.2.1
        elif mtype == "headline" and non_negative:
            out.delivered[mtype] = non_negative                 # all non-negative
        # headline with no non-negative resource, error: silently ignored

    for mtype in TYPES:
        if to == "bare":
            as_bare(mtype)
        elif to == "full":
            out.delivered[mtype] = {FULL_TARGET[config]}        # §8.5.3.1: any type
        elif mtype == "chat":                                   # §8.5.3.2.1: chat as bare
            as_bare(mtype)
        elif mtype in ("normal", "groupchat"):
            out.errors[mtype] = "service-unavailable"           # §8.5.3.2.1 (b)
        # headline (Blether ignores) and error (MUST ignore) to an unknown resource
    return out


def condition(el: ET.Element) -> str:
    err = el.find(ns("error"))
    assert err is not None
    return next(c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{STANZAS}}}"))


async def online(connect: Any, jid: str, resource: str, priority: int) -> Client:
    client = await connect(jid, resource=resource)
    await client.send_xml(f"<presence><priority>{priority}</priority></presence>")
    await client.expect(f"<presence from='{client.boundjid}'/>")   # processed
    return client


async def sync_and_collect(sender: Client,
                           clients: dict[str, Client]) -> dict[str, list[ET.Element]]:
    """Sync every recipient resource; return the messages each got before the sync."""
    for name, client in clients.items():
        await sender.send_xml(f"<message to='{client.boundjid}' type='chat' id='sync-{name}'>"
                              "<body>sync</body></message>")
    got: dict[str, list[ET.Element]] = {}
    for name, client in clients.items():
        await client.expect(f"<message id='sync-{name}'/>")
        got[name] = [e for e in client.drain() if e.tag == ns("message")]
    return got


CASES = [(to, config) for to in ("bare", "full", "unknown-full") for config in CONFIGS
         if not (to == "full" and config == "no-resource")]


@pytest.mark.parametrize(("to", "config"), CASES, ids=[f"{t}-{c}" for t, c in CASES])
async def test_message_delivery_matrix(server: ServerProcess, connect: Any, to: str,
                                       config: str) -> None:
    sender_jid, rcpt = server.new_users(2)
    sender = await connect(sender_jid, resource="s")
    clients = {name: await online(connect, rcpt, name, prio)
               for name, prio in CONFIGS[config].items()}
    target = {"bare": rcpt, "full": f"{rcpt}/{FULL_TARGET.get(config)}",
              "unknown-full": f"{rcpt}/not-online"}[to]
    want = expected(to, config)

    for mtype in TYPES:
        error = ("<error type='cancel'><undefined-condition "
                 "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
                 if mtype == "error" else "")
        await sender.send_xml(f"<message to='{target}' type='{mtype}' id='{mtype}'>"
                              f"<body>{mtype}</body>{error}</message>")
    got = await sync_and_collect(sender, clients)
    await sender.query("<iq type='get' id='ping' to='localhost'><ping xmlns='urn:xmpp:ping'/>"
                       "</iq>")

    delivered: dict[str, set[str]] = {}
    for name, messages in got.items():
        for m in messages:
            delivered.setdefault(m.get("id", ""), set()).add(name)
            assert m.get("to") == target, "RFC 6121 §8.5.2.1.1: 'to' is never rewritten"
            assert m.get("from") == str(sender.boundjid)
    assert delivered == want.delivered

    errors = {e.get("id", ""): condition(e) for e in sender.drain()
              if e.tag == ns("message") and e.get("type") == "error"}
    assert errors == want.errors

    # Offline storage: a new non-negative resource gets what was stored (XEP-0160).
    late = await online(connect, rcpt, "late", 0)
    stored = await sync_and_collect(sender, {"late": late})
    assert {m.get("id") for m in stored["late"]} == want.stored
    for m in stored["late"]:
        assert m.get("to") == target and m.find(ns("delay", "urn:xmpp:delay")) is not None
