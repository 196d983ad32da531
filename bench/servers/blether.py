"""Blether under test: `blether serve` with the benchmark's TOML configuration."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from bench.servers.base import Server, free_port, render

REPO = Path(__file__).resolve().parents[2]


class BletherServer(Server):
    name = "blether"

    def configure(self) -> None:
        self.data = self.dir / "data"
        self.data.mkdir(exist_ok=True)
        self.tls_port = free_port(self.ip)
        self.config_path = render("blether.toml", self.dir / "blether.toml",
                                  domain=self.domain, ip=self.ip, c2s_port=self.c2s_port,
                                  tls_port=self.tls_port, certfile=self.cert, keyfile=self.key)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "blether.cli", "serve", "--config", str(self.config_path),
                "--data-dir", str(self.data), "--log-level", "warning"]

    async def create_accounts(self, users: list[str], password: str) -> None:
        # The code path of `blether user add` (Authenticator → accounts.create), in one
        # process: one CLI process per account would take hours for 100 000 accounts. The
        # SCRAM keys are derived once and shared (same salt) by every benchmark account;
        # a login costs the server the same whatever the salt.
        from blether.config import load_config
        from blether.core.auth import make_credentials_sync
        from blether.storage import open_storage

        cfg = load_config(self.config_path, {"data_dir": str(self.data)})
        storage = await open_storage(cfg.storage_url)
        try:
            existing = set(await storage.accounts.list(self.domain))
            todo = [f"{u}@{self.domain}" for u in users if f"{u}@{self.domain}" not in existing]
            if todo:
                credentials = make_credentials_sync(password)
                for jid in todo:
                    await storage.accounts.create(jid, credentials)
        finally:
            await storage.close()

    def fingerprint(self) -> str | None:
        # The source tree may change between scenarios of a long run (others edit src/):
        # each result records which code it measured.
        digest = hashlib.sha256()
        for path in sorted((REPO / "src" / "blether").rglob("*.py")):
            digest.update(path.read_bytes())
        return digest.hexdigest()[:12]

    def version(self) -> str:
        from blether import __version__

        try:
            rev = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            rev = ""
        py = ".".join(map(str, sys.version_info[:3]))
        return f"{__version__} ({rev or 'no git'}), CPython {py}, uvloop"

    def settings(self) -> dict[str, str]:
        return {
            "config": "bench/servers/templates/blether.toml",
            "logging": "warning",
            "rate limits": "none (limits.c2s_read_rate = 0, limits.connection_rate_per_ip = 0, "
                           "roster.subscribe_rate = 0)",
            "connections per IP": "200000",
            "password storage": "SCRAM-SHA-1 + SCRAM-SHA-256 keys, 10000 iterations (SQLite)",
            "TLS": "STARTTLS offered, not required; EC P-256 certificate",
            "offline quota": "1000000",
        }
