"""Memory per idle c2s session (docs/performance.md, "Idle memory"): RSS, allocators, tracemalloc.

    .venv/bin/python -m bench.memory_probe --sessions 2000             # RSS, plain and TLS
    .venv/bin/python -m bench.memory_probe --sessions 2000 --stats     # + where RSS went
    .venv/bin/python -m bench.memory_probe --sessions 500 --trace 8    # + tracemalloc top 25

Blether runs in a child process (this module with `--serve`), on uvloop like `blether serve`,
with the benchmark's configuration (bench/servers/templates/blether.toml); the parent logs
`--sessions` sessions in with the bench's load generator (SCRAM-SHA-1, bind, roster get,
initial presence; STARTTLS for `tls`), holds them idle, and reports the child's VmRSS growth
per session and its CPU per login. Before each RSS reading the child runs a full garbage
collection (`--no-gc`: not, as `bench.run` does not).

`--stats`: the child prints, at both readings, pymalloc's arenas and blocks, glibc malloc's
bytes in use and free (holes left by freed memory) and SQLite's memory, so RSS growth can be
told apart from fragmentation and caches. `--trace N`: a second child runs under tracemalloc
(N frames) and the N largest per-session differences are printed by line and by traceback;
tracemalloc's bookkeeping inflates RSS, so the RSS figure comes from the untraced child.

To measure other code, put it first on PYTHONPATH (e.g. a copy of `src` at another version).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import os
import signal
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

from bench.loadgen.metrics import cpu_seconds
from bench.loadgen.sessions import login_many
from bench.loadgen.xmpp import Target, XMPPConnection
from bench.scenarios.base import PASSWORD
from bench.servers.base import wait_for_port
from bench.servers.blether import REPO, BletherServer
from bench.servers.certs import make_certificate

WARM = 10  # logins before the baseline, so code loaded on first use is not counted
SETTLE = 2.0  # seconds between the last login and the reading


def vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# -- the child: the server, optionally under tracemalloc ------------------------------------

class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def allocator_stats() -> str:
    import _sqlite3

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    mi = libc.mallinfo2()
    sqlite = ctypes.CDLL(_sqlite3.__file__)
    sqlite.sqlite3_memory_used.restype = ctypes.c_int64
    return (f"malloc in use {mi.uordblks + mi.hblkhd}, free {mi.fordblks}; "
            f"sqlite {sqlite.sqlite3_memory_used()}")


def serve(config: Path, data: Path, trace: int, dump_dir: Path, collect: bool,
          stats: bool) -> None:
    if trace:
        tracemalloc.start(trace)
    import uvloop

    from blether.app import Server
    from blether.cli import _setup_logging
    from blether.config import load_config

    cfg = load_config(config, {"data_dir": str(data)})
    _setup_logging("warning")

    async def main() -> None:
        server = Server(cfg)
        await server.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        marks = iter(range(1000))

        def mark() -> None:
            n = next(marks)
            found = gc.collect() if collect else 0
            lines = [f"gc: {found} unreachable objects"]
            if stats:
                lines.append(allocator_stats())
            if trace:
                tracemalloc.take_snapshot().dump(str(dump_dir / f"snap{n}"))
            (dump_dir / f"stats{n}").write_text("\n".join(lines))
            if stats:  # pymalloc's own report goes to stderr, the child's log
                sys._debugmallocstats()
            (dump_dir / "ack").write_text("ok")

        loop.add_signal_handler(signal.SIGUSR1, mark)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop()

    uvloop.run(main())


# -- the parent ------------------------------------------------------------------------------

class Child:
    def __init__(self, server: BletherServer, args: argparse.Namespace, trace: int,
                 dump_dir: Path) -> None:
        self.dump_dir = dump_dir
        self.log = dump_dir / "child.log"
        cmd = [sys.executable, "-m", "bench.memory_probe", "--serve", str(server.config_path),
               "--data", str(server.data), "--trace", str(trace), "--dump-dir", str(dump_dir)]
        cmd += ["--no-gc"] if args.no_gc else []
        cmd += ["--stats"] if args.stats else []
        path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=server.dir,
                                         env={**os.environ, "PYTHONPATH": path})
        wait_for_port(server.ip, server.c2s_port, self.proc, self.log)
        self.marks = 0

    async def mark(self) -> str:
        """gc (and a snapshot when tracing) in the child; returns what it reported."""
        ack = self.dump_dir / "ack"
        ack.unlink(missing_ok=True)
        os.kill(self.proc.pid, signal.SIGUSR1)
        for _ in range(600):
            if ack.exists():
                self.marks += 1
                return (self.dump_dir / f"stats{self.marks - 1}").read_text()
            await asyncio.sleep(0.1)
        raise RuntimeError("the child did not answer SIGUSR1")

    def pymalloc(self) -> list[str]:
        """The arena lines of each _debugmallocstats report, in order."""
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines()
                if line.startswith(("# arenas allocated current", "# bytes in allocated",
                                    "# bytes in available"))]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def measure(server: BletherServer, args: argparse.Namespace, tls: bool,
                  trace: int) -> None:
    mode = "tls" if tls else "plain"
    with tempfile.TemporaryDirectory() as tmp:
        child = Child(server, args, trace, Path(tmp))
        try:
            target = Target(server.ip, server.c2s_port, server.domain)
            users = [f"u{i}" for i in range(args.sessions)]
            await login_many(target, users[:WARM], PASSWORD, starttls=tls, keep=False)
            await asyncio.sleep(SETTLE)
            before = await child.mark()
            rss0 = vm_rss(child.proc.pid)
            cpu0 = cpu_seconds([child.proc.pid])

            def to_sink(conn: XMPPConnection) -> None:
                conn.use_sink(None)

            batch = await login_many(target, users, PASSWORD, starttls=tls, concurrency=100,
                                     after_login=to_sink)
            cpu = cpu_seconds([child.proc.pid]) - cpu0
            await asyncio.sleep(SETTLE)
            after = await child.mark()
            rss1 = vm_rss(child.proc.pid)
            n = len(batch.ok)
            what = f" (under tracemalloc, {trace} frames)" if trace else ""
            print(f"{mode}: {n} sessions{what}: RSS {rss0 / 2**20:.1f} → "
                  f"{rss1 / 2**20:.1f} MiB, {(rss1 - rss0) / max(n, 1) / 1024:.2f} KiB/session,"
                  f" {cpu / max(n, 1) * 1e3:.2f} ms CPU/login", flush=True)
            if batch.failures:
                print(f"  {len(batch.failures)} failed; first: {batch.failures[0]}")
            if args.stats:
                print(f"  before: {before.replace(chr(10), '; ')}")
                print(f"  after:  {after.replace(chr(10), '; ')}")
                for line in child.pymalloc():
                    print(f"  pymalloc {line.lstrip('# ')}")
            if trace:
                report_trace(Path(tmp), n, args.top)
            for conn in batch.ok:
                conn.abort()
        finally:
            child.stop()


def report_trace(tmp: Path, n: int, top: int) -> None:
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before = tracemalloc.Snapshot.load(str(tmp / "snap0")).filter_traces(ignore)
    after = tracemalloc.Snapshot.load(str(tmp / "snap1")).filter_traces(ignore)
    diffs = after.compare_to(before, "lineno")
    total = sum(d.size_diff for d in diffs)
    print(f"  tracemalloc: {total / n / 1024:.2f} KiB per session "
          f"({sum(d.count_diff for d in diffs) / n:.1f} blocks)")
    for d in diffs[:top]:
        frame = d.traceback[0]
        print(f"    {d.size_diff / n:8.0f} B {d.count_diff / n:6.2f} blocks  "
              f"{frame.filename}:{frame.lineno}")
    print("  largest by traceback:")
    for d in after.compare_to(before, "traceback")[:max(3, top // 3)]:
        print(f"    {d.size_diff / n:8.0f} B {d.count_diff / n:6.2f} blocks")
        for line in d.traceback.format(limit=6, most_recent_first=True):
            print("       ", line)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        cert, key = make_certificate(workdir, "localhost")
        server = BletherServer(workdir, cert, key, None)
        server.configure()
        await server.create_accounts([f"u{i}" for i in range(args.sessions)], PASSWORD)
        for mode in args.modes.split(","):
            await measure(server, args, mode == "tls", 0)
            if args.trace:
                await measure(server, args, mode == "tls", args.trace)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--modes", default="plain,tls", help="plain, tls or plain,tls")
    ap.add_argument("--trace", type=int, default=0,
                    help="also run under tracemalloc with this many frames")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--stats", action="store_true", help="allocator statistics")
    ap.add_argument("--no-gc", action="store_true", help="no gc.collect() before readings")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dump-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        serve(args.serve, args.data, args.trace, args.dump_dir, not args.no_gc, args.stats)
        return
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
