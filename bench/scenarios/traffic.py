"""Scenarios 1 and 2: one-to-one chat traffic between pairs of online users.

* throughput — every user of `pairs` pairs sends chat messages to its partner's full JID,
  keeping `window` messages in flight (a delivery releases the next send): delivered
  messages/s, end-to-end latency p50/p99 and the server's CPU µs per delivered message over
  `duration` seconds, after `warmup` seconds not measured.
* latency — the same sessions, but a fixed total rate (`latency_rate` messages/s spread
  round-robin over the senders): p50/p99/max of the end-to-end latency of the messages sent
  in the measured window.

Messages are pre-serialized byte templates; the receiving side scans raw bytes for the token in
the body (tokens.py) and never parses XML.
"""

from __future__ import annotations

import asyncio
import time

from bench.loadgen.metrics import Window, WindowResult, latency_summary, window_summary
from bench.loadgen.sessions import close_all, login_many
from bench.loadgen.tokens import TokenScanner
from bench.loadgen.xmpp import XMPPConnection
from bench.scenarios.base import Context

BODY = b" The quick brown fox jumps over the lazy dog."


class Sender:
    """Writes pre-serialized chat messages to one partner."""

    __slots__ = ("conn", "in_flight", "index", "sent", "seq", "template")

    def __init__(self, conn: XMPPConnection, index: int, to: str) -> None:
        self.conn = conn
        self.index = index
        self.template = (b"<message to='" + to.encode() + b"' type='chat' id='m%d'><body>"
                         b"#%d:%d:%d#" + BODY + b"</body></message>")
        self.seq = 0
        self.sent = 0
        self.in_flight = 0

    def send(self, n: int) -> None:
        now = time.perf_counter_ns()
        tpl, idx, seq = self.template, self.index, self.seq
        parts = []
        for _ in range(n):
            seq += 1
            parts.append(tpl % (seq, idx, seq, now))
        self.seq = seq
        self.sent += n
        self.in_flight += n
        transport = self.conn.transport
        if transport is not None and not transport.is_closing():
            transport.write(b"".join(parts))


class Traffic:
    """Shared state of a traffic run: what was delivered, and the latencies measured."""

    def __init__(self) -> None:
        self.senders: list[Sender] = []
        self.windowed = 0            # refill this many per delivery (0: fixed-rate mode)
        self.measuring = False
        self.window_start_ns = 0
        self.window_end_ns = 0
        self.by_send_time = False    # fixed rate: measure messages *sent* in the window
        self.delivered = 0
        self.delivered_in_window = 0
        self.latencies: list[int] = []

    def receiver(self) -> TokenScanner:
        def on_tokens(tokens: list[tuple[int, int, int]]) -> None:
            now = time.perf_counter_ns()
            n = len(tokens)
            self.delivered += n
            if self.measuring and not self.by_send_time:
                self.delivered_in_window += n
                self.latencies += [now - t for _a, _b, t in tokens]
            elif self.by_send_time:
                start, end = self.window_start_ns, self.window_end_ns or now
                for _a, _b, t in tokens:
                    if start <= t < end:
                        self.delivered_in_window += 1
                        self.latencies.append(now - t)
            # All tokens on one connection come from its partner: release it in one write.
            sender = self.senders[tokens[0][0]]
            sender.in_flight -= n
            if self.windowed:
                sender.send(n)

        return TokenScanner(on_tokens)

    @property
    def in_flight(self) -> int:
        return sum(s.in_flight for s in self.senders)

    async def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


async def _setup(ctx: Context, starttls: bool) -> tuple[Traffic, list[XMPPConnection]]:
    p = ctx.params
    users = ctx.params.pool(2 * p.pairs)
    batch = await login_many(ctx.server.target, users, ctx.password, starttls=starttls,
                             concurrency=50)
    if batch.failures:
        raise RuntimeError(f"{len(batch.failures)} logins failed: {batch.failures[:3]}")
    conns = batch.ok
    traffic = Traffic()
    for i, conn in enumerate(conns):
        partner = conns[i ^ 1]  # pairs (0, 1), (2, 3), …
        traffic.senders.append(Sender(conn, i, partner.jid))
    for conn in conns:
        conn.use_sink(traffic.receiver().feed)
    return traffic, conns


async def throughput(ctx: Context, starttls: bool = False) -> dict[str, object]:
    p = ctx.params
    traffic, conns = await _setup(ctx, starttls)
    ctx.log(f"{len(conns)} sessions online; {p.window} in flight per sender")
    traffic.windowed = p.window
    for s in traffic.senders:
        s.send(p.window)
    await asyncio.sleep(p.warmup)
    window = ctx.window()
    traffic.measuring = True
    await asyncio.sleep(p.duration)
    traffic.measuring = False
    measured = window.stop()
    traffic.windowed = 0
    await traffic.drain(15.0)
    sent = sum(s.sent for s in traffic.senders)
    delivered = traffic.delivered_in_window
    await close_all(conns)
    return {
        "sessions": len(conns),
        "delivered": delivered,
        "msgs_per_s": round(delivered / measured.wall, 1),
        "cpu_us_per_msg": round(measured.server_cpu / delivered * 1e6, 2) if delivered else None,
        **latency_summary(traffic.latencies),
        **window_summary(measured),
        "lost": sent - traffic.delivered,
    }


async def throughput_tls(ctx: Context) -> dict[str, object]:
    return await throughput(ctx, starttls=True)


async def latency(ctx: Context) -> dict[str, object]:
    p = ctx.params
    traffic, conns = await _setup(ctx, starttls=False)
    traffic.by_send_time = True
    rate = p.latency_rate
    senders = traffic.senders
    ctx.log(f"{len(conns)} sessions online; {rate:.0f} messages/s")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sent = 0
    window: Window | None = None
    measured: WindowResult | None = None
    while True:
        elapsed = loop.time() - t0
        if window is None and elapsed >= p.warmup:
            window = ctx.window()
            traffic.window_start_ns = time.perf_counter_ns()
        if elapsed >= p.warmup + p.duration:
            traffic.window_end_ns = time.perf_counter_ns()
            assert window is not None
            measured = window.stop()
            break
        due = int(elapsed * rate) - sent
        for _ in range(due):
            senders[sent % len(senders)].send(1)
            sent += 1
        await asyncio.sleep(0.001)  # libuv timers tick in ms: shorter would spin
    await traffic.drain(15.0)
    assert measured is not None
    total_sent = sum(s.sent for s in senders)
    await close_all(conns)
    delivered = traffic.delivered_in_window
    return {
        "sessions": len(conns),
        "rate_msgs_per_s": rate,
        "delivered": delivered,
        **latency_summary(traffic.latencies),
        "cpu_us_per_msg": round(measured.server_cpu / delivered * 1e6, 2) if delivered else None,
        **window_summary(measured),
        "lost": total_sent - traffic.delivered,
    }
