"""What every scenario gets: the server under test, the sizes for this run, a logger."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bench.loadgen.metrics import Window
from bench.loadgen.xmpp import Target

PASSWORD = "bench-secret-1"


class ServerHandle(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def target(self) -> Target: ...

    @property
    def pid(self) -> int:
        """The process whose tree is measured (beam.smp for ejabberd, lua for Prosody)."""
        ...


@dataclass(frozen=True)
class Params:
    """Scenario sizes. Scale 1.0 is the issue's specification; `--scale 0.01` is a smoke run."""

    scale: float
    pairs: int
    window: int
    duration: float
    warmup: float
    latency_rate: float
    logins: int
    login_concurrency: int
    idle_sessions: int
    fanout_contacts: int
    fanout_changes: int
    offline_messages: int
    capacity_sessions: int
    settle: float                # seconds to let a server settle (memory, stored messages)

    @classmethod
    def from_scale(cls, scale: float) -> Params:
        def n(full: int, least: int) -> int:
            return max(least, round(full * scale))

        return cls(
            scale=scale,
            pairs=n(100, 1),
            window=10,
            duration=max(0.5, 20.0 * scale),
            warmup=min(2.0, max(0.2, 20.0 * scale / 10)),
            latency_rate=max(20.0, 1000.0 * scale),
            logins=n(2000, 10),
            login_concurrency=min(50, n(2000, 10)),
            idle_sessions=n(10000, 20),
            fanout_contacts=n(200, 3),
            fanout_changes=50 if scale >= 0.1 else 5,
            offline_messages=n(10000, 50),
            capacity_sessions=n(100000, 50),
            settle=3.0 if scale >= 0.1 else 0.3,
        )

    # -- the accounts each scenario uses (created once per server) ----------------------
    @property
    def pool_size(self) -> int:
        return max(2 * self.pairs, self.logins, self.idle_sessions)

    def pool(self, count: int) -> list[str]:
        return [f"u{i}" for i in range(count)]

    def fanout_users(self) -> tuple[str, list[str]]:
        return "fanhub", [f"fan{i}" for i in range(1, self.fanout_contacts + 1)]

    def all_users(self, with_capacity: bool = False) -> list[str]:
        hub, contacts = self.fanout_users()
        size = max(self.pool_size, self.capacity_sessions if with_capacity else 0)
        return [*self.pool(size), hub, *contacts, "offrecv", "offsend"]


@dataclass
class Context:
    server: ServerHandle
    params: Params
    log: Callable[[str], None]
    password: str = PASSWORD
    # Called when the scenario opens its first measured window (the driver starts the
    # profiler there, so set-up work such as logins stays out of the profile).
    on_first_window: Callable[[], None] | None = None

    def window(self) -> Window:
        if self.on_first_window is not None:
            hook, self.on_first_window = self.on_first_window, None
            hook()
        return Window(self.server.pid)
