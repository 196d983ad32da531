"""A server under test: its own config and data in a work directory, free loopback ports, a
subprocess pinned to one CPU with `taskset`, stopped with SIGTERM."""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from string import Template
from typing import Any, ClassVar

from bench.loadgen.xmpp import Target

TEMPLATES = Path(__file__).parent / "templates"


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def render(template: str, dest: Path, **values: object) -> Path:
    text = Template((TEMPLATES / template).read_text()).substitute(
        {k: str(v) for k, v in values.items()})
    dest.write_text(text)
    return dest


def wait_for_port(ip: str, port: int, proc: subprocess.Popen[bytes], log: Path,
                  timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail(log)}")
        try:
            with socket.create_connection((ip, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {ip}:{port} within {timeout:.0f} s:\n"
                       f"{tail(log)}")


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


class Server(abc.ABC):
    """Subclasses fill in config files, account creation and how to start the process."""

    name: ClassVar[str]

    def __init__(self, workdir: Path, cert: Path, key: Path, cpu: int | None,
                 domain: str = "localhost", ip: str = "127.0.0.1") -> None:
        self.dir = workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = cert
        self.key = key
        self.cpu = cpu
        self.domain = domain
        self.ip = ip
        self.c2s_port = free_port(ip)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "console.log"
        self._pid: int | None = None
        self.starts = 0

    # -- what subclasses provide ----------------------------------------------------------
    @abc.abstractmethod
    def configure(self) -> None:
        """Write the configuration (once)."""

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The command that runs the server in the foreground."""

    @abc.abstractmethod
    async def create_accounts(self, users: list[str], password: str) -> None:
        """Create accounts (the server is running); users that exist already are skipped."""

    @abc.abstractmethod
    def version(self) -> str: ...

    @abc.abstractmethod
    def settings(self) -> dict[str, str]:
        """The settings that matter for a fair comparison, for the report."""

    def find_pid(self) -> int:
        """The process to measure (with its descendants); by default the one started."""
        assert self.proc is not None
        return self.proc.pid

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def popen_options(self) -> dict[str, Any]:
        """Extra subprocess.Popen arguments (e.g. the user to run as)."""
        return {}

    def fingerprint(self) -> str | None:
        """Identifies the code that ran (recorded with every result), if it can change."""
        return None

    @staticmethod
    def available() -> str | None:
        """None if the server can run here, else why not."""
        return None

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def target(self) -> Target:
        return Target(self.ip, self.c2s_port, self.domain)

    @property
    def pid(self) -> int:
        if self._pid is None:
            self._pid = self.find_pid()
        return self._pid

    def start(self) -> None:
        cmd = self.command()
        if self.cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(self.cpu), *cmd]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env(), cwd=self.dir,
                                     **self.popen_options())
        self._pid = None
        self.starts += 1
        wait_for_port(self.ip, self.c2s_port, self.proc, self.log_path)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._pid = None
