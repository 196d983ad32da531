"""Scenario 6: offline messages (RFC 6121 §8.5.2.2.1, XEP-0160).

One account sends `offline_messages` chat messages to another that is offline (pipelined in
chunks, an XEP-0199 ping after each chunk so the sender never runs far ahead of the server);
then the recipient logs in (initial presence triggers the delivery of the stored messages).
Reported: store phase time and CPU per message; delivery phase (from the recipient's TCP
connect until the last stored message arrived) time and CPU.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET

from bench.loadgen.metrics import window_summary
from bench.loadgen.tokens import TOKEN
from bench.loadgen.xmpp import XMPPConnection, login
from bench.scenarios.base import Context
from bench.scenarios.helpers import MESSAGE, Dispatcher

CHUNK = 500
RECIPIENT, SENDER = "offrecv", "offsend"


async def offline(ctx: Context) -> dict[str, object]:
    p = ctx.params
    target = ctx.server.target
    total = p.offline_messages
    # Anything left over from an earlier, interrupted run is delivered and dropped first.
    leftover = await login(target, RECIPIENT, ctx.password)
    await asyncio.sleep(p.settle)
    await leftover.close()

    sender = await login(target, SENDER, ctx.password)
    disp = Dispatcher(sender)
    to = f"{RECIPIENT}@{target.domain}"
    template = (b"<message to='" + to.encode() + b"' type='chat' id='o%d'><body>#%d:0:%d# "
                b"stored while you were away</body></message>")
    window = ctx.window()
    for start in range(0, total, CHUNK):
        now = time.perf_counter_ns()
        sender.send(b"".join(template % (i, i, now)
                             for i in range(start, min(total, start + CHUNK))))
        await disp.ping(target.domain)
    stored = window.stop()
    await sender.close()
    await asyncio.sleep(p.settle)  # servers that store asynchronously get time to finish

    seen: set[int] = set()
    done = asyncio.Event()

    def count(_conn: XMPPConnection | None, el: ET.Element) -> None:
        if el.tag != MESSAGE:
            return
        body = el.findtext("{jabber:client}body") or ""
        m = TOKEN.search(body.encode())
        if m is not None:
            seen.add(int(m.group(1)))
            if len(seen) >= total:
                done.set()

    window = ctx.window()
    recipient = await login(target, RECIPIENT, ctx.password, other=count)
    recipient.handle_elements(lambda el: count(None, el))
    timed_out = False
    try:
        await asyncio.wait_for(done.wait(), max(60.0, total / 100))
    except TimeoutError:
        timed_out = True
    delivered = window.stop()
    await recipient.close()
    n = len(seen)
    return {
        "messages": total,
        "delivered": n,
        "timed_out": timed_out,
        "store_s": round(stored.wall, 3),
        "store_cpu_us_per_msg": round(stored.server_cpu / total * 1e6, 2),
        "delivery_s": round(delivered.wall, 3),
        "delivery_cpu_s": round(delivered.server_cpu, 3),
        "delivery_cpu_us_per_msg": round(delivered.server_cpu / n * 1e6, 2) if n else None,
        **{f"delivery_{k}": v for k, v in window_summary(delivered).items()
           if k == "loadgen_cpu_share"},
    }
