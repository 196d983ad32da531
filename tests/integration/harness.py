"""A real Blether server in a subprocess on free ports, and real slixmpp clients over TCP.

Scenario tests read like the RFC examples: `await alice.send("<presence to='…' type='subscribe'/>")`
then `await bob.expect("<presence from='…' type='subscribe'/>")`, where the expected XML is a
mask: its attributes and children must be present in the received stanza (extra ones allowed).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher.base import MatcherBase

BLETHER = [sys.executable, "-m", "blether.cli"]
CLIENT_NS = "jabber:client"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`blether serve` on free ports with its own data directory."""

    def __init__(self, data_dir: Path, domains: tuple[str, ...] = ("localhost",),
                 config_text: str | None = None, bind: str = "127.0.0.1") -> None:
        self.data_dir = data_dir
        self.domains = domains
        self.domain = domains[0]
        self.bind = bind
        self.port = free_port()
        self.tls_port = free_port()
        self.config_path: Path | None = None
        if config_text is not None:
            self.config_path = data_dir / "blether.toml"
            data_dir.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text(config_text)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        self._users = itertools.count(1)

    def common_args(self) -> list[str]:
        args = ["--data-dir", str(self.data_dir)]
        if self.config_path is not None:
            args += ["--config", str(self.config_path)]
        return args

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [*BLETHER, "serve", *self.common_args(), "--bind", self.bind,
                "--c2s-port", str(self.port), "--tls-port", str(self.tls_port),
                "--log-level", "debug"]
        for d in self.domains:
            args += ["--domain", d]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "COLUMNS": "200"})
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

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*BLETHER, *args, *self.common_args()], input=stdin,
                              capture_output=True, text=True, timeout=60)

    def add_user(self, jid: str, password: str = "secret") -> str:
        r = self.cli("user", "add", jid, stdin=password + "\n")
        if r.returncode != 0:
            raise RuntimeError(f"user add failed: {r.stderr}")
        return jid

    def new_users(self, count: int, prefix: str = "u", password: str = "secret",
                  domain: str | None = None) -> list[str]:
        """Create fresh accounts (in parallel, through the CLI, while the server runs)."""
        jids = [f"{prefix}{next(self._users)}@{domain or self.domain}" for _ in range(count)]
        procs = [subprocess.Popen([*BLETHER, "user", "add", j, *self.common_args()],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for j in jids]
        for p in procs:
            _out, err = p.communicate(password + "\n", timeout=60)
            if p.returncode != 0:
                raise RuntimeError(f"user add failed: {err}")
        return jids


class _MatchAll(MatcherBase):
    def match(self, xml: Any) -> bool:
        return True


def parse_mask(xml: str) -> ET.Element:
    """Parse expected XML with jabber:client as the default namespace."""
    wrapper = ET.fromstring(f"<wrapper xmlns='{CLIENT_NS}'>{xml}</wrapper>")
    return wrapper[0]


def matches(el: ET.Element, mask: ET.Element) -> bool:
    """True if `el` has the mask's tag, attributes, text (if given) and children."""
    if el.tag != mask.tag:
        return False
    for k, v in mask.attrib.items():
        if el.attrib.get(k) != v:
            return False
    if mask.text and mask.text.strip() and (el.text or "").strip() != mask.text.strip():
        return False
    return all(any(matches(c, m) for c in el) for m in mask)


def absent(el: ET.Element, tag: str) -> bool:
    return el.find(tag) is None


class Client(slixmpp.ClientXMPP):
    """A slixmpp client that records every stanza it receives, for expect()."""

    def __init__(self, jid: str, password: str = "secret", **kw: Any) -> None:
        super().__init__(jid, password, **kw)
        self.received: asyncio.Queue[ET.Element] = asyncio.Queue()
        self.backlog: list[ET.Element] = []
        self.register_handler(Callback("record-all", _MatchAll(None), self._record))
        self.add_event_handler("session_start", self._started)
        self.add_event_handler("failed_auth", self._failed)
        self.add_event_handler("disconnected", self._disconnected)
        self.add_event_handler("stream_error", self._stream_error)
        self.session_started: asyncio.Future[bool] = asyncio.get_event_loop().create_future()
        self.stream_errors: list[Any] = []
        self.roster.auto_authorize = None  # tests drive subscriptions explicitly
        self.roster.auto_subscribe = False
        # The test server uses a self-signed certificate.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE

    def _record(self, stanza: Any) -> None:
        if stanza.xml.tag.startswith("{jabber:client}"):  # stanzas only, not negotiation
            self.received.put_nowait(stanza.xml)

    def _started(self, _event: Any) -> None:
        if not self.session_started.done():
            self.session_started.set_result(True)

    def _failed(self, _event: Any) -> None:
        if not self.session_started.done():
            self.session_started.set_result(False)

    def _stream_error(self, err: Any) -> None:
        self.stream_errors.append(err)

    def _disconnected(self, _event: Any) -> None:
        if not self.session_started.done():
            self.session_started.set_result(False)

    async def login(self, server: ServerProcess, *, direct_tls: bool = False,
                    timeout: float = 15.0) -> bool:
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        self.connect(server.bind, server.tls_port if direct_tls else server.port)
        return await asyncio.wait_for(self.session_started, timeout)

    async def send_xml(self, xml: str) -> None:
        self.send_raw(xml)

    async def expect(self, mask_xml: str | None = None, *,
                     where: Callable[[ET.Element], bool] | None = None,
                     timeout: float = 5.0) -> ET.Element:
        """Wait for a received stanza matching the mask (earlier non-matching ones are kept)."""
        mask = parse_mask(mask_xml) if mask_xml else None

        def ok(el: ET.Element) -> bool:
            return (mask is None or matches(el, mask)) and (where is None or where(el))

        for i, el in enumerate(self.backlog):
            if ok(el):
                return self.backlog.pop(i)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                got = [ET.tostring(e, encoding="unicode") for e in self.backlog]
                raise AssertionError(f"{self.boundjid}: no stanza matching {mask_xml!r}; "
                                     f"received instead: {got}")
            try:
                el = await asyncio.wait_for(self.received.get(), remaining)
            except TimeoutError:
                continue
            if ok(el):
                return el
            self.backlog.append(el)

    async def expect_nothing(self, mask_xml: str | None = None, *,
                             where: Callable[[ET.Element], bool] | None = None,
                             wait: float = 0.5) -> None:
        with contextlib.suppress(AssertionError):
            el = await self.expect(mask_xml, where=where, timeout=wait)
            raise AssertionError(f"unexpected stanza: {ET.tostring(el, encoding='unicode')}")

    async def query(self, xml: str, timeout: float = 5.0) -> ET.Element:
        """Send an IQ (with an id attribute) and wait for its result or error."""
        iq_id = parse_mask(xml).attrib["id"]
        self.send_raw(xml)
        return await self.expect(where=lambda e: e.tag == f"{{{CLIENT_NS}}}iq"
                                 and e.attrib.get("id") == iq_id
                                 and e.attrib.get("type") in ("result", "error"),
                                 timeout=timeout)

    def drain(self) -> list[ET.Element]:
        out = list(self.backlog)
        self.backlog.clear()
        while not self.received.empty():
            out.append(self.received.get_nowait())
        return out

    async def close(self) -> None:
        self.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.disconnected, 5)

    def abort(self) -> None:
        """Drop the TCP connection without closing the stream (an abrupt disconnect)."""
        if self.transport is not None:
            self.transport.abort()


def ns(tag: str, namespace: str = CLIENT_NS) -> str:
    return f"{{{namespace}}}{tag}"
