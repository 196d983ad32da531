"""Accounts' credentials (salted SCRAM keys only, never a password) and brute-force limits.

PBKDF2 runs in a worker thread so a login never stalls the event loop (DESIGN.md §5).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import deque

import scramp

from blether.storage.api import AccountStore, ScramCredentials

SCRAM_ITERATIONS = 10000          # SECURITY.md: ≥ 10 000 (XEP-0438)
HASHED_MECHANISMS = ("SCRAM-SHA-1", "SCRAM-SHA-256")


def make_credentials_sync(password: str, iterations: int = SCRAM_ITERATIONS,
                          salt: bytes | None = None) -> list[ScramCredentials]:
    out = []
    for mech in HASHED_MECHANISMS:
        m = scramp.ScramMechanism(mech)
        s, stored, server, i = m.make_auth_info(password, iteration_count=iterations, salt=salt)
        out.append(ScramCredentials(mech, s, i, stored, server))
    return out


async def make_credentials(password: str,
                           iterations: int = SCRAM_ITERATIONS) -> list[ScramCredentials]:
    return await asyncio.to_thread(make_credentials_sync, password, iterations)


def _derive_stored_key(mechanism: str, password: str, creds: ScramCredentials) -> bytes:
    m = scramp.ScramMechanism(mechanism)
    _salt, stored, _server, _i = m.make_auth_info(password, iteration_count=creds.iterations,
                                                  salt=creds.salt)
    return bytes(stored)


class Authenticator:
    """Checks passwords against stored SCRAM keys; creates and changes credentials."""

    def __init__(self, accounts: AccountStore, iterations: int = SCRAM_ITERATIONS) -> None:
        self.accounts = accounts
        self.iterations = iterations

    async def create_account(self, user: str, password: str) -> None:
        await self.accounts.create(user, await make_credentials(password, self.iterations))

    async def set_password(self, user: str, password: str) -> None:
        await self.accounts.set_credentials(user, await make_credentials(password,
                                                                        self.iterations))

    async def verify_password(self, user: str, password: str) -> bool:
        creds = await self.accounts.get_credentials(user, "SCRAM-SHA-256")
        mech = "SCRAM-SHA-256"
        if creds is None:
            creds = await self.accounts.get_credentials(user, "SCRAM-SHA-1")
            mech = "SCRAM-SHA-1"
        if creds is None:
            return False
        try:
            derived = await asyncio.to_thread(_derive_stored_key, mech, password, creds)
        except scramp.ScramException:
            return False
        return hmac.compare_digest(derived, creds.stored_key)


class AuthFailureLimiter:
    """Per-IP authentication failure counting (SECURITY.md: 10 per 10 min → 15 min ban).

    Checked before any password hashing so a brute-forcer cannot burn our CPU.
    """

    def __init__(self, max_failures: int, window: float, ban_time: float) -> None:
        self.max_failures = max_failures
        self.window = window
        self.ban_time = ban_time
        self._failures: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def is_banned(self, ip: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        until = self._banned_until.get(ip)
        if until is None:
            return False
        if now >= until:
            del self._banned_until[ip]
            self._failures.pop(ip, None)
            return False
        return True

    def failure(self, ip: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        q = self._failures.setdefault(ip, deque())
        q.append(now)
        while q and q[0] < now - self.window:
            q.popleft()
        if len(q) >= self.max_failures:
            self._banned_until[ip] = now + self.ban_time

    def success(self, ip: str) -> None:
        self._failures.pop(ip, None)
