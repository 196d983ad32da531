"""`--install`: put Prosody and ejabberd on a Debian machine without their services running.

The packages' services would start at install time and hold 5222/5269; the benchmark runs
its own instances on free ports instead. A `policy-rc.d` that exits 101 tells the package
scripts not to start anything; it is removed afterwards unless it was there before.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

POLICY = Path("/usr/sbin/policy-rc.d")
PACKAGES = {"prosody": "prosody", "ejabberd": "ejabberd"}


def installed(package: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", package],
                         capture_output=True, text=True)
    return out.returncode == 0 and "install ok installed" in out.stdout


def install(servers: list[str], log: Callable[[str], None] = print) -> None:
    wanted = [PACKAGES[s] for s in servers if s in PACKAGES and not installed(PACKAGES[s])]
    if not wanted:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise SystemExit(f"--install needs root and apt-get; install {' '.join(wanted)} by hand")
    ours = not POLICY.exists()
    if ours:
        POLICY.write_text("#!/bin/sh\n# bench/servers/install.py: do not start services\n"
                          "exit 101\n")
        POLICY.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", *wanted], check=True, env=env)
    finally:
        if ours:
            POLICY.unlink(missing_ok=True)
    listeners = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
    strays = [line for line in listeners.splitlines()
              if any(f":{p} " in line for p in (5222, 5269))
              and ("lua" in line or "beam" in line)]
    if strays:
        log("packaged Prosody/ejabberd services are listening (stop them: "
            "systemctl stop prosody ejabberd):\n" + "\n".join(strays))
