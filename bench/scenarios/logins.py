"""Scenarios 3 and 4: logging in, and holding idle sessions.

* login — `logins` complete logins at concurrency `login_concurrency`: TCP connect, STARTTLS,
  SASL SCRAM-SHA-1, bind, roster get, initial presence (done when the server echoes it,
  RFC 6121 §4.2.2), then a polite close. One unmeasured pass first, so every server has
  loaded what it loads lazily and the generator has its SCRAM SaltedPassword cache filled
  (RFC 5802 §5.1) and spends its CPU on TLS and XML, not PBKDF2. Reports logins/s, p50/p99 of
  the login time and the server's CPU ms per login (the close included).
* idle / idle-tls — `idle_sessions` sessions logged in with initial presence, then held; the
  server's RSS growth divided by the number of sessions is the memory cost of one session.
* capacity — the same with `capacity_sessions` (100 000 at scale 1), over several loopback
  source addresses; needs RLIMIT_NOFILE above that for both processes.
"""

from __future__ import annotations

import asyncio
import resource

from bench.loadgen.metrics import (
    latency_summary,
    process_tree,
    rss_bytes,
    window_summary,
)
from bench.loadgen.sessions import login_many, source_addresses
from bench.loadgen.xmpp import XMPPConnection, ping_responder
from bench.scenarios.base import Context


async def login(ctx: Context) -> dict[str, object]:
    p = ctx.params
    users = p.pool(p.logins)
    target = ctx.server.target
    warm = await login_many(target, users, ctx.password, starttls=True,
                            concurrency=p.login_concurrency, keep=False)
    ctx.log(f"warm-up pass: {len(warm.durations_ns)} logins, {len(warm.failures)} failed")
    window = ctx.window()
    batch = await login_many(target, users, ctx.password, starttls=True,
                             concurrency=p.login_concurrency, keep=False)
    measured = window.stop()
    done = len(batch.durations_ns)
    return {
        "logins": done,
        "failures": len(batch.failures),
        "logins_per_s": round(done / measured.wall, 1),
        **latency_summary(batch.durations_ns, "login"),
        "cpu_ms_per_login": round(measured.server_cpu / done * 1e3, 3) if done else None,
        **window_summary(measured),
        **({"first_failure": batch.failures[0]} if batch.failures else {}),
    }


async def idle(ctx: Context, starttls: bool = False, count: int | None = None
               ) -> dict[str, object]:
    p = ctx.params
    count = count or p.idle_sessions
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 500:
        return {"skipped": f"RLIMIT_NOFILE is {soft}; {count} sessions need more "
                           "(raise the hard limit: ulimit -Hn, or CAP_SYS_RESOURCE)"}
    users = p.pool(count)
    target = ctx.server.target
    # A few logins first so code loaded on first use is not counted as per-session memory.
    await login_many(target, users[:10], ctx.password, starttls=starttls, keep=False)
    await asyncio.sleep(p.settle)
    pids = process_tree(ctx.server.pid)
    rss0 = rss_bytes(pids)
    window = ctx.window()

    def to_sink(conn: XMPPConnection) -> None:
        conn.use_sink(ping_responder(conn))  # idle: answer pings, drop everything else

    batch = await login_many(target, users, ctx.password, starttls=starttls, concurrency=100,
                             after_login=to_sink)
    measured = window.stop()
    await asyncio.sleep(p.settle)
    rss1 = rss_bytes(pids)
    conns = batch.ok
    for conn in conns:
        conn.abort()
    n = len(conns)
    return {
        "sessions": n,
        "failures": len(batch.failures),
        "source_addresses": len(source_addresses(count)),
        "rss_before_mib": round(rss0 / 2**20, 1),
        "rss_after_mib": round(rss1 / 2**20, 1),
        "kib_per_session": round((rss1 - rss0) / n / 1024, 2) if n else None,
        "logins_per_s": round(len(batch.durations_ns) / measured.wall, 1),
        "cpu_ms_per_login": round(measured.server_cpu / n * 1e3, 3) if n else None,
        **({"first_failure": batch.failures[0]} if batch.failures else {}),
    }


async def idle_tls(ctx: Context) -> dict[str, object]:
    return await idle(ctx, starttls=True)


FULL_CAPACITY = 100_000


async def capacity(ctx: Context) -> dict[str, object]:
    result = await idle(ctx, count=ctx.params.capacity_sessions)
    if "rss_after_mib" not in result:
        return result
    n = int(str(result["sessions"]))
    if n >= FULL_CAPACITY:
        result["rss_100k_mib"] = result["rss_after_mib"]
        result["measured_sessions"] = n
    else:
        # Fewer sessions (a smaller --scale, or an open-files limit below 100 000): the growth
        # per session measured at this size, added to the baseline, is the estimate; the
        # figure says so.
        per = float(str(result["kib_per_session"]))
        base = float(str(result["rss_before_mib"]))
        result["rss_100k_mib"] = round(base + per * FULL_CAPACITY / 1024, 1)
        result["measured_sessions"] = n
    result["fits_3_gib"] = float(str(result["rss_100k_mib"])) <= 3 * 1024
    return result
