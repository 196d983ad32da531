"""ejabberd (Debian package) under test: `ejabberdctl … foreground` with its own config dir,
spool (Mnesia) dir, log dir and Erlang node name. The measured process is beam.smp.

Started by root, `ejabberdctl` would `su` to the `ejabberd` user, and PAM would then reset
the open-files limit to 1024 (ejabberd stops accepting at ~1000 sessions). So we start
`ejabberdctl` as that user ourselves (setuid, no PAM): it inherits our raised
RLIMIT_NOFILE. The work directory is handed to that user. Accounts are created with
ejabberd's own `register` command through mod_http_api on a loopback HTTP port (one
`ejabberdctl register` per account starts an Erlang node: about a second per account).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import pwd
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.loadgen.metrics import comm, process_tree
from bench.servers.base import Server, free_port, render, wait_for_port
from bench.servers.prosody import package_version

USER = "ejabberd"


class EjabberdServer(Server):
    name = "ejabberd"

    @staticmethod
    def available() -> str | None:
        if shutil.which("ejabberdctl") is None:
            return "ejabberd is not installed (apt-get install ejabberd)"
        return None

    def configure(self) -> None:
        self.http_port = free_port(self.ip)
        # Mnesia's schema belongs to a node name: keep the same name for a reused work dir.
        node_file = self.dir / "node"
        if not node_file.exists():
            node_file.write_text(f"bench{os.getpid()}@localhost")
        self.node = node_file.read_text().strip()
        for sub in ("spool", "logs"):
            (self.dir / sub).mkdir(exist_ok=True)
        # ejabberd wants certificate and key in one PEM file.
        self.pem = self.dir / "cert.pem"
        self.pem.write_bytes(Path(self.cert).read_bytes() + Path(self.key).read_bytes())
        render("ejabberd.yml", self.dir / "ejabberd.yml", domain=self.domain, ip=self.ip,
               c2s_port=self.c2s_port, http_port=self.http_port, certfile=self.pem)
        render("ejabberdctl.cfg", self.dir / "ejabberdctl.cfg", dir=self.dir)
        if Path("/etc/ejabberd/inetrc").exists():
            shutil.copy("/etc/ejabberd/inetrc", self.dir / "inetrc")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(USER)
            for path in [self.dir, *self.dir.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)
            for parent in self.dir.parents:  # the ejabberd user must reach its directory
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o011)

    def popen_options(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam(USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def env(self) -> dict[str, str]:
        # Erlang keeps its distribution cookie in $HOME.
        env = super().env()
        if os.geteuid() == 0:
            env["HOME"] = pwd.getpwnam(USER).pw_dir
        return env

    def command(self) -> list[str]:
        d = self.dir
        return ["ejabberdctl", "--config-dir", str(d), "--ctl-config", str(d / "ejabberdctl.cfg"),
                "--config", str(d / "ejabberd.yml"), "--spool", str(d / "spool"),
                "--logs", str(d / "logs"), "--node", self.node, "foreground"]

    def start(self) -> None:
        super().start()
        assert self.proc is not None
        wait_for_port(self.ip, self.http_port, self.proc, self.log_path)

    def find_pid(self) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for pid in process_tree(self.proc.pid):
                if comm(pid) == "beam.smp":
                    return pid
            time.sleep(0.1)
        raise RuntimeError("no beam.smp process under ejabberdctl")

    def _api(self, conn: http.client.HTTPConnection, command: str,
             args: dict[str, str]) -> object:
        conn.request("POST", f"/api/{command}", json.dumps(args),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"ejabberd API {command}: {resp.status} {body[:200]!r}")
        return json.loads(body)

    async def create_accounts(self, users: list[str], password: str) -> None:
        def existing() -> set[str]:
            conn = http.client.HTTPConnection(self.ip, self.http_port, timeout=60)
            found = self._api(conn, "registered_users", {"host": self.domain})
            conn.close()
            return set(found) if isinstance(found, list) else set()

        have = await asyncio.to_thread(existing)
        todo = [u for u in users if u not in have]
        chunks = [todo[i::4] for i in range(4)]

        def register(names: list[str]) -> None:
            conn = http.client.HTTPConnection(self.ip, self.http_port, timeout=60)
            for user in names:
                self._api(conn, "register", {"user": user, "host": self.domain,
                                             "password": password})
            conn.close()

        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(4) as pool:
            await asyncio.gather(*(loop.run_in_executor(pool, register, c) for c in chunks))

    def version(self) -> str:
        try:
            otp = subprocess.run(["erl", "-noshell", "-eval",
                                  "io:format(\"~s\", [erlang:system_info(otp_release)]), "
                                  "halt()."], capture_output=True, text=True,
                                 timeout=30).stdout.strip()
        except OSError:
            otp = "?"
        return f"{package_version('ejabberd')} (Debian), Erlang/OTP {otp}"

    def settings(self) -> dict[str, str]:
        return {
            "config": "bench/servers/templates/ejabberd.yml",
            "logging": "warning",
            "rate limits": "none (c2s shaper: none; max_fsm_queue 1000000; "
                           "max_stanza_size 1 MiB)",
            "password storage": "auth_password_format: scram, auth_scram_hash: sha "
                                "(SCRAM-SHA-1 keys, 4096 iterations) in Mnesia",
            "TLS": "STARTTLS offered, not required (starttls_required: false)",
            "offline quota": "max_user_offline_messages: 1000000",
            "VM": "Debian's ejabberdctl defaults (+K true); ERTS starts 2 schedulers (the "
                  "machine's CPUs), both confined to the server's CPU by taskset",
            "user": "started as the ejabberd user (setuid, no PAM) with the driver's "
                    "open-files limit",
        }
