"""What the benchmark measures: the server's CPU time and memory from /proc, the generator's own
CPU time, and latency percentiles.

CPU time (utime + stime of the server's process tree, all threads, from /proc/<pid>/stat) is
the robust figure on a shared machine: it does not depend on what else runs, unlike wall-clock
throughput. The generator reports its own CPU share so a reader can see it was never the
bottleneck.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def children(pid: int) -> list[int]:
    """Direct children of `pid` (all its threads), from /proc/<pid>/task/*/children."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                out += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
    except OSError:
        return []
    return out


def process_tree(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += children(pid)
    return pids


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the given processes (every thread, dead threads included)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            statm = Path(f"/proc/{pid}/statm").read_text().split()
        except OSError:
            continue
        total += int(statm[1]) * PAGE
    return total


def self_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class WindowResult:
    wall: float
    server_cpu: float
    loadgen_cpu: float

    @property
    def loadgen_share(self) -> float:
        """The generator's CPU use as a fraction of one core over the window."""
        return self.loadgen_cpu / self.wall if self.wall > 0 else 0.0


class Window:
    """A measured interval: wall time, the server tree's CPU time, the generator's CPU time."""

    def __init__(self, server_pid: int) -> None:
        self.pids = process_tree(server_pid)
        self.t0 = time.perf_counter()
        self.cpu0 = cpu_seconds(self.pids)
        self.self0 = self_cpu_seconds()

    def stop(self) -> WindowResult:
        return WindowResult(time.perf_counter() - self.t0, cpu_seconds(self.pids) - self.cpu0,
                            self_cpu_seconds() - self.self0)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (0 if empty)."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def latency_summary(samples_ns: list[int], prefix: str = "latency") -> dict[str, float]:
    values = sorted(s / 1e6 for s in samples_ns)
    return {
        f"{prefix}_p50_ms": round(percentile(values, 50), 3),
        f"{prefix}_p99_ms": round(percentile(values, 99), 3),
        f"{prefix}_max_ms": round(values[-1], 3) if values else 0.0,
    }


def window_summary(w: WindowResult) -> dict[str, float]:
    return {
        "wall_s": round(w.wall, 3),
        "server_cpu_s": round(w.server_cpu, 3),
        "server_cpu_share": round(w.server_cpu / w.wall, 3) if w.wall else 0.0,
        "loadgen_cpu_share": round(w.loadgen_share, 3),
    }
