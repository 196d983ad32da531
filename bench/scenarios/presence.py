"""Scenario 5: presence fan-out (RFC 6121 §4.4 subsequent presence broadcast).

A hub account with `fanout_contacts` mutual ('both') contacts, all online and available,
changes its presence `fanout_changes` times, one after the other; each change carries a token
in its <status/>. Reported: the time until every contact has a change (p50 and max over the
changes), and the server's CPU µs per delivered presence over all changes.

The rosters are built over the protocol (RFC 6121 §3.1: subscribe → subscribed both ways), the
same way on every server, and only when the hub's roster does not already show them all.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET

from bench.loadgen.metrics import latency_summary, window_summary
from bench.loadgen.sessions import close_all, login_many
from bench.loadgen.tokens import TokenScanner
from bench.loadgen.xmpp import XMPPConnection, login
from bench.scenarios.base import Context
from bench.scenarios.helpers import PRESENCE, ROSTER_ITEM, Dispatcher, bare

ROSTER_QUERY = "<query xmlns='jabber:iq:roster'/>"


async def _mutual_count(hub: Dispatcher, contacts: set[str]) -> int:
    result = await hub.query(ROSTER_QUERY)
    return sum(1 for item in result.iterfind(ROSTER_ITEM)
               if item.get("jid") in contacts and item.get("subscription") == "both")


async def _build_rosters(ctx: Context, hub: Dispatcher, hub_bare: str,
                         contact_jids: list[str]) -> None:
    wanted = set(contact_jids)
    have = await _mutual_count(hub, wanted)
    if have == len(wanted):
        return
    ctx.log(f"building rosters: {have}/{len(wanted)} mutual so far")
    hub.conn.send(b"".join(f"<presence to='{c}' type='subscribe'/>".encode()
                           for c in contact_jids))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        have = await _mutual_count(hub, wanted)
        if have == len(wanted):
            return
    raise RuntimeError(f"only {have} of {len(wanted)} subscriptions became mutual")


async def fanout(ctx: Context) -> dict[str, object]:
    p = ctx.params
    target = ctx.server.target
    hub_user, contact_users = p.fanout_users()
    hub_bare = f"{hub_user}@{target.domain}"
    contact_jids = [f"{u}@{target.domain}" for u in contact_users]

    def contact_reacts(conn: XMPPConnection, el: ET.Element) -> None:
        # A contact approves the hub's request and asks back (RFC 6121 §3.1.3, §3.1.2).
        if el.tag == PRESENCE and el.get("type") == "subscribe" and bare(
                el.get("from")) == hub_bare:
            conn.send(f"<presence to='{hub_bare}' type='subscribed'/>"
                      f"<presence to='{hub_bare}' type='subscribe'/>".encode())

    batch = await login_many(
        target, contact_users, ctx.password, concurrency=50, other=contact_reacts,
        after_login=lambda c: c.handle_elements(lambda el: contact_reacts(c, el)))
    if batch.failures:
        raise RuntimeError(f"{len(batch.failures)} contact logins failed: {batch.failures[:3]}")
    contacts = batch.ok

    wanted = set(contact_jids)

    def hub_reacts(conn: XMPPConnection, el: ET.Element) -> None:
        if el.tag == PRESENCE and el.get("type") == "subscribe" and bare(
                el.get("from")) in wanted:
            conn.send(f"<presence to='{bare(el.get('from'))}' type='subscribed'/>".encode())

    hub_conn = await login(target, hub_user, ctx.password, other=hub_reacts)
    hub = Dispatcher(hub_conn, lambda el: hub_reacts(hub_conn, el))
    await _build_rosters(ctx, hub, hub_bare, contact_jids)
    await asyncio.sleep(p.settle)  # let the probes' answers and initial presences settle

    n_contacts = len(contacts)
    arrivals = [0] * p.fanout_changes
    completion_ns: list[int] = []
    all_arrived = asyncio.Event()

    def on_tokens(tokens: list[tuple[int, int, int]]) -> None:
        now = time.perf_counter_ns()
        for change, _zero, sent in tokens:
            if change < len(arrivals):
                arrivals[change] += 1
                if arrivals[change] == n_contacts:
                    completion_ns.append(now - sent)
                    all_arrived.set()

    for conn in contacts:
        conn.use_sink(TokenScanner(on_tokens).feed)
    hub_conn.use_sink(None)

    window = ctx.window()
    incomplete = 0
    for change in range(p.fanout_changes):
        all_arrived.clear()
        hub_conn.send(b"<presence><status>#%d:0:%d# benchmark presence %d</status></presence>"
                      % (change, time.perf_counter_ns(), change))
        try:
            await asyncio.wait_for(all_arrived.wait(), 30.0)
        except TimeoutError:
            incomplete += 1
    measured = window.stop()
    delivered = sum(arrivals)
    await close_all([*contacts, hub_conn])
    summary = latency_summary(completion_ns, "all_have_it")
    return {
        "contacts": n_contacts,
        "changes": p.fanout_changes,
        "delivered": delivered,
        "incomplete_changes": incomplete,
        **summary,
        "cpu_us_per_presence": round(measured.server_cpu / delivered * 1e6, 2)
        if delivered else None,
        **window_summary(measured),
    }
