"""The benchmark driver: every scenario against every server, side by side, in one run.

    python -m bench.run --servers blether,prosody,ejabberd --scenarios all --scale 1.0 \\
        --json bench-results.json

Each server runs as our own subprocess with its own configuration in a work directory, on
free loopback ports, pinned to one CPU (`taskset -c --server-cpu`); this process, the load
generator, pins itself to the other (`--loadgen-cpu`). The same accounts are created on each
server once; then, scenario by scenario, each server is started fresh, measured and stopped,
so no scenario inherits another's memory or caches and servers alternate in time (a noisy
machine disturbs all of them alike). Prints one table and the issue's targets; writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.profile import Profiler
from bench.report import table, targets, targets_text
from bench.scenarios import ALL, SCENARIOS, Context, Params
from bench.servers import SERVERS, Server
from bench.servers.certs import make_certificate
from bench.servers.install import install


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="blether,prosody,ejabberd",
                    help=f"comma-separated, from {', '.join(SERVERS)}")
    ap.add_argument("--scenarios", default="all",
                    help=f"'all' ({', '.join(ALL)}) or a comma-separated list; "
                         "'capacity' (100 000 idle sessions) runs only when named")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="1.0 = the issue's sizes; 0.01 = a smoke run of a few seconds")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--install", action="store_true",
                    help="apt-get install the anchors that are missing (Debian, root), "
                         "without letting their packaged services start")
    ap.add_argument("--workdir", type=Path,
                    help="keep configs, data and logs here (default: a temporary directory, "
                         "removed afterwards unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    ap.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to")
    ap.add_argument("--loadgen-cpu", type=int, default=1, help="CPU the generator pins to")
    ap.add_argument("--no-pin", action="store_true", help="do not pin anything to CPUs")
    ap.add_argument("--no-restart", action="store_true",
                    help="keep each server running across scenarios (faster; for smoke runs)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per scenario")
    ap.add_argument("--max-load", type=float, default=0.0,
                    help="before each scenario, wait until the 1-minute load average is "
                         "below this (0: do not wait); see --max-wait")
    ap.add_argument("--max-wait", type=float, default=300.0,
                    help="seconds to wait for --max-load at most")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="sample Blether with py-spy during each scenario (bench/profile.py); "
                         "the CPU figures of a profiled run include py-spy's small overhead")
    return ap.parse_args(argv)


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def prefixed(name: str) -> Callable[[str], None]:
    return lambda msg: log(f"  {name}: {msg}")


async def wait_quiet(max_load: float, max_wait: float) -> None:
    """Wait (bounded) for the machine to calm down: wall-clock figures need idle CPUs."""
    if max_load <= 0:
        return
    deadline = time.monotonic() + max_wait
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        await asyncio.sleep(5)
    if os.getloadavg()[0] > max_load:
        log(f"load average still {os.getloadavg()[0]:.2f} > {max_load}; going ahead")


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
        if hasattr(platform, "freedesktop_os_release") else platform.system(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
        "rlimit_nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    scenarios = ALL if args.scenarios == "all" else [
        s.strip() for s in args.scenarios.split(",") if s.strip()]
    for n in names:
        if n not in SERVERS:
            raise SystemExit(f"unknown server {n!r} (known: {', '.join(SERVERS)})")
    for s in scenarios:
        if s not in SCENARIOS:
            raise SystemExit(f"unknown scenario {s!r} (known: {', '.join(SCENARIOS)})")
    if args.install:
        install(names, log)
    params = Params.from_scale(args.scale)
    cpu = None if args.no_pin else args.server_cpu
    cert, key = make_certificate(workdir, "localhost")
    servers: list[Server] = []
    unavailable: dict[str, str] = {}
    for n in names:
        why = SERVERS[n].available()
        if why:
            unavailable[n] = why
            log(f"{n}: skipped, {why}")
            continue
        servers.append(SERVERS[n](workdir, cert, key, cpu))

    users = params.all_users(with_capacity="capacity" in scenarios)
    for server in servers:
        server.configure()
        log(f"{server.name}: creating {len(users)} accounts")
        server.start()
        try:
            t0 = time.monotonic()
            await server.create_accounts(users, Context.password)
            log(f"{server.name}: accounts ready in {time.monotonic() - t0:.1f} s")
        finally:
            server.stop()

    results: dict[str, dict[str, dict[str, Any]]] = {}
    codes: dict[str, str | None] = {}
    order = ([(sc, sv) for sv in servers for sc in scenarios] if args.no_restart
             else [(sc, sv) for sc in scenarios for sv in servers])
    try:
        for scenario, server in order:
            await wait_quiet(args.max_load, args.max_wait)
            log(f"{scenario} on {server.name}")
            ctx = Context(server, params, prefixed(server.name))
            try:
                if server.proc is None:
                    server.start()
                    codes[server.name] = server.fingerprint()
                profiler: Profiler | None = None
                if args.profile and server.name == "blether":
                    args.profile.mkdir(parents=True, exist_ok=True)

                    def start_profiler(pid: int = server.pid, name: str = scenario) -> None:
                        nonlocal profiler
                        profiler = Profiler(pid, args.profile / f"{name}.txt")

                    ctx.on_first_window = start_profiler
                try:
                    result = await asyncio.wait_for(SCENARIOS[scenario](ctx), args.timeout)
                finally:
                    if profiler is not None:
                        summary = profiler.stop()
                        (args.profile / f"{scenario}-summary.txt").write_text(summary + "\n")
                        log(f"  profile: {args.profile / f'{scenario}-summary.txt'}")
            except Exception as exc:
                traceback.print_exc()
                result = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                if not args.no_restart or scenario == scenarios[-1]:
                    server.stop()
            result["loadavg_1m"] = round(os.getloadavg()[0], 2)  # how busy the machine was
            if codes.get(server.name):
                result["code"] = codes[server.name]
            results.setdefault(scenario, {})[server.name] = result
            log(f"  {server.name}: {json.dumps(result)}")
    finally:
        for server in servers:
            server.stop()
    results = {sc: results.get(sc, {}) for sc in scenarios}

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *sys.argv[1:]]),
        "scale": args.scale,
        "params": params.__dict__,
        "machine": machine(),
        "profiled": bool(args.profile),
        "restarts": "server kept running across scenarios" if args.no_restart
        else "fresh server process for every scenario",
        "pinning": None if args.no_pin else {"server_cpu": args.server_cpu,
                                             "loadgen_cpu": args.loadgen_cpu},
        "servers": {s.name: {"version": s.version(), "settings": s.settings()}
                    for s in servers},
        "unavailable": unavailable,
        "results": results,
        "targets": targets(results),
    }


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_pin and len(os.sched_getaffinity(0)) < 2:
        log("fewer than 2 CPUs available: not pinning")
        args.no_pin = True
    # SIGTERM unwinds like Ctrl-C, so the servers we started are stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    raise_fd_limit()
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.loadgen_cpu})
    if args.workdir:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="blether-bench-"))
    workdir.chmod(0o755)  # ejabberd runs as its own user and must reach its directory
    try:
        import uvloop

        report = uvloop.run(run(args, workdir))
    except ImportError:
        report = asyncio.run(run(args, workdir))
    finally:
        if not args.workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep or args.workdir:
            log(f"work directory kept: {workdir}")
    servers = list(report["servers"])
    print(f"\nBlether benchmark, {report['date']}, scale {args.scale}")
    for name, info in report["servers"].items():
        print(f"  {name}: {info['version']}")
    print()
    print(table(report["results"], servers))
    print()
    print(targets_text(report["targets"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    failed = any("error" in r for by in report["results"].values() for r in by.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
