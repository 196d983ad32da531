"""Prosody (Debian package) under test, with its own config, data and pid file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.servers.base import Server, render


def package_version(package: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                             capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


class ProsodyServer(Server):
    name = "prosody"
    TEMPLATE_USER = "benchtemplate"

    @staticmethod
    def available() -> str | None:
        if shutil.which("prosody") is None or shutil.which("prosodyctl") is None:
            return "prosody is not installed (apt-get install prosody)"
        return None

    def configure(self) -> None:
        (self.dir / "data").mkdir(exist_ok=True)
        (self.dir / "certs").mkdir(exist_ok=True)
        self.config_path = render("prosody.cfg.lua", self.dir / "prosody.cfg.lua",
                                  dir=self.dir, domain=self.domain, ip=self.ip,
                                  c2s_port=self.c2s_port, certfile=self.cert, keyfile=self.key)

    def command(self) -> list[str]:
        return ["prosody", "--config", str(self.config_path), "-F"]

    @property
    def accounts_dir(self) -> Path:
        # mod_storage_internal's layout: data/<host>/accounts/<user>.dat (names made only of
        # letters and digits need no escaping).
        return self.dir / "data" / self.domain / "accounts"

    async def create_accounts(self, users: list[str], password: str) -> None:
        # `prosodyctl register` makes one account with SCRAM keys (internal_hashed); the
        # other benchmark accounts get a copy of its credential record (the record does not
        # name its user), as one prosodyctl process per account would take an hour at
        # scale 1. A login costs the server the same whatever the salt.
        template = self.accounts_dir / f"{self.TEMPLATE_USER}.dat"
        if not template.exists():
            subprocess.run(["prosodyctl", "--config", str(self.config_path), "register",
                            self.TEMPLATE_USER, self.domain, password],
                           check=True, capture_output=True, timeout=60)
        record = template.read_bytes()
        for user in users:
            path = self.accounts_dir / f"{user}.dat"
            if not path.exists():
                path.write_bytes(record)

    def version(self) -> str:
        try:
            lua = subprocess.run(["lua5.4", "-v"], capture_output=True, text=True,
                                 timeout=10).stdout.split()[1]
        except (OSError, IndexError):
            lua = "?"
        return f"{package_version('prosody')} (Debian), Lua {lua}, net.server_epoll"

    def settings(self) -> dict[str, str]:
        return {
            "config": "bench/servers/templates/prosody.cfg.lua",
            "logging": "warn",
            "rate limits": "none (mod_limits not loaded)",
            "password storage": "internal_hashed: SCRAM-SHA-1 keys, 10000 iterations",
            "TLS": "STARTTLS offered, not required (c2s_require_encryption = false)",
            "offline quota": "none (mod_offline has no limit)",
            "TCP": "network_settings = { nagle = false } (TCP_NODELAY, as the others)",
        }
