"""The benchmark scenarios, by name, in the order `--scenarios all` runs them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.scenarios import logins, offline, presence, traffic
from bench.scenarios.base import Context, Params

Scenario = Callable[[Context], Awaitable[dict[str, object]]]

SCENARIOS: dict[str, Scenario] = {
    "throughput": traffic.throughput,
    "throughput-tls": traffic.throughput_tls,
    "latency": traffic.latency,
    "login": logins.login,
    "idle": logins.idle,
    "idle-tls": logins.idle_tls,
    "fanout": presence.fanout,
    "offline": offline.offline,
    # Not part of "all": 100 000 sessions (needs RLIMIT_NOFILE > 100 000).
    "capacity": logins.capacity,
}

ALL = [name for name in SCENARIOS if name != "capacity"]

__all__ = ["ALL", "SCENARIOS", "Context", "Params", "Scenario"]
