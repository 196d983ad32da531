"""Per-IP registration throttle (SECURITY.md "Registration": 1 per IP per 600 s when on).

A slot is taken *before* the account is created, so two concurrent attempts from one address
cannot both pass, and given back if the registration then fails. Entries expire after the
interval, so memory is bounded by the registrations of one interval. Prosody's
mod_register_limits exempts loopback by default; here the allowlist starts empty (so the
throttle can be tested from 127.0.0.1) and is configured with `throttle_exempt_ips`.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RegistrationThrottle:
    def __init__(self, interval: float, exempt: Iterable[str] = ()) -> None:
        self.interval = interval
        self.exempt: list[Network] = [ipaddress.ip_network(n, strict=False) for n in exempt]
        self._last: dict[str, float] = {}

    def is_exempt(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.exempt)

    def acquire(self, ip: str, now: float | None = None) -> float:
        """Take the slot of `ip`: 0.0 on success, else the seconds left to wait."""
        if self.interval <= 0 or self.is_exempt(ip):
            return 0.0
        now = time.monotonic() if now is None else now
        self._expire(now)
        last = self._last.get(ip)
        if last is not None:
            return last + self.interval - now
        self._last[ip] = now
        return 0.0

    def release(self, ip: str) -> None:
        """The registration did not happen after all: free the slot."""
        self._last.pop(ip, None)

    def _expire(self, now: float) -> None:
        stale = [ip for ip, t in self._last.items() if now - t >= self.interval]
        for ip in stale:
            del self._last[ip]
