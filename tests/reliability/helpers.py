"""Helpers for the reliability tests: servers with their own configuration, raw clients from
chosen loopback source addresses, bulk accounts, and the server's resident memory.

Per-IP limits (connections, authentication failures, registrations) are tested from distinct
127.0.0.0/8 source addresses, so one test's ban or cap never leaks into another.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from blether.core.auth import make_credentials_sync
from blether.storage import AccountExists, open_storage
from integration.harness import BLETHER, ServerProcess
from integration.rawclient import NO_FEDERATION, RawClient

__all__ = ["NO_FEDERATION", "Clients", "QuietServer", "connect_from", "create_accounts",
           "rss_kib", "source_ips"]

_next_ip = itertools.count(10)


def source_ips(n: int = 1) -> list[str]:
    """Fresh loopback source addresses (127.0.<a>.<b>), never the same twice in a run."""
    out = []
    for _ in range(n):
        i = next(_next_ip)
        out.append(f"127.0.{i // 250}.{i % 250 + 2}")
    return out


def rss_kib(pid: int) -> int:
    """Resident set size of a process (Linux /proc), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


async def create_accounts(data_dir: Path, jids: Sequence[str], password: str = "secret"
                          ) -> None:
    """Create many accounts straight in the server's database before it starts.

    The CLI hashes each password separately (10 000 PBKDF2 rounds, plus a Python start-up per
    account); for thousands of test accounts one set of SCRAM keys (4096 rounds, scramp's
    minimum) is computed once and shared — fine for test data, never for real accounts.
    """
    creds = make_credentials_sync(password, 4096)
    data_dir.mkdir(parents=True, exist_ok=True)
    storage = await open_storage(f"sqlite:///{(data_dir / 'blether.db').resolve()}")
    try:
        for jid in jids:
            with contextlib.suppress(AccountExists):
                await storage.accounts.create(jid, creds)
    finally:
        await storage.close()


async def connect_from(server: ServerProcess, source: str = "127.0.0.1",
                       direct_tls: bool = False) -> RawClient:
    """A raw TCP connection to the c2s port from the given loopback source address."""
    from integration.rawclient import client_context

    ctx = client_context() if direct_tls else None
    port = server.tls_port if direct_tls else server.port
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        server.bind, port, ssl=ctx, server_hostname=server.domain if ctx else None,
        local_addr=(source, 0)), 10)
    return RawClient(reader, writer, server.domain)


class Clients:
    """Raw clients opened by one test (from any source address), all closed at its end."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.opened: list[RawClient] = []

    async def connect(self, source: str = "127.0.0.1") -> RawClient:
        c = await connect_from(self.server, source)
        self.opened.append(c)
        return c

    async def secured(self, source: str = "127.0.0.1") -> RawClient:
        """STARTTLS done, post-TLS features read: ready for SASL (and pre-auth stanzas)."""
        c = await self.connect(source)
        await c.open_stream()
        await c.starttls()
        return c

    async def login(self, jid: str, password: str = "secret", source: str = "127.0.0.1",
                    resource: str | None = None) -> RawClient:
        c = await self.secured(source)
        final = await c.sasl_scram(jid.split("@", 1)[0], password)
        assert final.name == "success", f"{jid} could not log in: {final!r}"
        await c.open_stream()
        await c.bind(resource)
        return c

    async def close(self) -> None:
        for c in self.opened:
            await c.close()


class QuietServer(ServerProcess):
    """A ServerProcess logging at info level (debug logs every stanza: too much for a soak),
    optionally through a pipe, so that a file-size limit imposed on the server (the disk-full
    test) does not stop its logging: the test process writes the log file."""

    def __init__(self, *args: object, pipe: bool = False, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.pipe = pipe

    def start(self, timeout: float = 30.0) -> None:
        args = [*BLETHER, "serve", *self.common_args(), "--bind", self.bind,
                "--c2s-port", str(self.port), "--tls-port", str(self.tls_port),
                "--log-level", "info", "--domain", self.domain]
        env = {**os.environ, "COLUMNS": "200"}
        if self.pipe:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, env=env)
            threading.Thread(target=self._copy_log, daemon=True).start()
        else:
            log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                with socket.create_connection((self.bind, self.tls_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def _copy_log(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log_path, "ab") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
