"""Profiling Blether during a scenario with py-spy, and a summary of the samples.

`python -m bench.run --servers blether --scenarios throughput --profile DIR` attaches
`py-spy record --gil` to the server from the first measured window of each scenario and
writes DIR/<scenario>.txt (collapsed stacks) and DIR/<scenario>-summary.txt: functions by
self time (the leaf of each sample) and by inclusive time. Only samples of the thread holding
the GIL are kept, so idle waits (epoll, the SQLite threads' queues) do not count; work done
without the GIL (OpenSSL, SQLite's C code) is not seen. py-spy pauses the server for each
sample (its `--nonblocking` mode tears stacks on a busy process), so a profiled run's CPU
figures are a little higher than an unprofiled run's. py-spy is not a
dependency of the project: `pip install py-spy` into the venv to use this.

    python -m bench.profile DIR/throughput.txt      # print the summary again
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


def find_py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    """py-spy attached to a pid until stopped."""

    def __init__(self, pid: int, output: Path, rate: int = 200) -> None:
        exe = find_py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.output = output
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--rate", str(rate), "--gil",
             "--nolineno", "--format", "raw", "--output", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> str:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self.output.exists():
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            return f"py-spy wrote nothing: {err[-500:]}"
        return summarize(self.output)


def _frame(raw: str) -> str:
    # py-spy raw frames look like "function (path/to/module.py)".
    name, _, where = raw.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    if "/src/" in where:
        where = where.split("/src/", 1)[1]
    return f"{name} ({where})"


def summarize(path: Path, top: int = 30) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
    if total == 0:
        return "no samples"
    out = [f"{total} samples", "", "self time (the function itself, excluding callees):"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in self_time.most_common(top)]
    out += ["", "inclusive time (the function and everything it calls):"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(summarize(Path(arg)))
