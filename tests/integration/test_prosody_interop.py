"""Federation with Prosody (Debian's 0.12) as the other server: messages and a mutual
subscription both ways, authenticated with Server Dialback (self-signed certificates) and with
certificates (SASL EXTERNAL, XEP-0178, both servers trusting a test CA).

Prosody runs as a subprocess with its own config file on 127.0.0.3. It has no static route
table, so it finds a.test through DNS: its resolver (libunbound, `unbound = {…}` in the config)
gets a local zone — an SRV record `_xmpp-server._tcp.a.test` pointing at Blether's s2s port and
a hosts file for a.test's address — and never asks a real DNS server. Blether finds p.test
through its override table. Skipped when Prosody is not installed (`apt-get install prosody`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from blether.transport.tls import make_self_signed
from integration.harness import (
    CertificateAuthority,
    Client,
    ServerProcess,
    expect_push,
    free_port_on,
    full,
    go_online,
)

if shutil.which("prosody") is None and os.environ.get("BLETHER_REQUIRE_PROSODY"):
    # CI (.ci/run) installs Prosody and sets this: there the test must run, never skip.
    raise RuntimeError("BLETHER_REQUIRE_PROSODY is set but prosody is not installed")
pytestmark = pytest.mark.skipif(shutil.which("prosody") is None,
                                reason="Prosody is not installed (apt-get install prosody)")

PROSODY_HOST = "127.0.0.3"

PROSODY_CONFIG = """
pidfile = "{root}/prosody.pid"
data_path = "{root}/data"
log = {{ debug = "{root}/prosody.log" }}
run_as_root = true
daemonize = false
interfaces = {{ "{host}" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
modules_enabled = {{ "roster", "saslauth", "tls", "dialback", "disco", "ping", "posix" }}
authentication = "internal_plain"
s2s_require_encryption = true
s2s_secure_auth = {secure_auth}
unbound = {{
    resolvconf = false;
    hoststxt = "{root}/hosts";
    options = {{
        ["local-zone:"] = "test. static";
        ["local-data:"] = "_xmpp-server._tcp.a.test. 60 IN SRV 0 0 {blether_s2s} a.test.";
    }};
}}
VirtualHost "p.test"
ssl = {{ certificate = "{cert}"; key = "{key}"; {cafile} }}
"""


@dataclass
class Endpoint:
    """What harness.Client.login needs to reach a server."""

    bind: str
    port: int
    tls_port: int


class Prosody:
    def __init__(self, root: Path, blether_s2s: int, *, secure_auth: bool,
                 cert: Path, key: Path, cafile: Path | None) -> None:
        self.root = root
        self.c2s = free_port_on(PROSODY_HOST)
        self.s2s = free_port_on(PROSODY_HOST)
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "hosts").write_text("127.0.0.1 a.test\n")
        self.config = root / "prosody.cfg.lua"
        self.config.write_text(PROSODY_CONFIG.format(
            root=root, host=PROSODY_HOST, c2s=self.c2s, s2s=self.s2s,
            secure_auth="true" if secure_auth else "false", blether_s2s=blether_s2s,
            cert=cert, key=key, cafile=f'cafile = "{cafile}";' if cafile else ""))
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = Endpoint(PROSODY_HOST, self.c2s, self.c2s)

    def register(self, user: str, password: str = "secret") -> str:
        subprocess.run(["prosodyctl", "--config", str(self.config), "register", user, "p.test",
                        password], check=True, capture_output=True, timeout=60)
        return f"{user}@p.test"

    def start(self) -> None:
        out = open(self.root / "stdout.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(["prosody", "-F", "--config", str(self.config)],
                                     stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, "HOME": str(self.root)})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prosody exited early:\n{self.log()[-3000:]}")
            try:
                with socket.create_connection((PROSODY_HOST, self.s2s), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"prosody did not start:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        path = self.root / "prosody.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Pair:
    mode: str
    blether: ServerProcess
    prosody: Prosody


@pytest.fixture(scope="module", params=["dialback", "certificates"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Pair]:
    mode = request.param
    root = Path(tmp_path_factory.mktemp(f"prosody-{mode}"))
    blether_s2s = free_port_on("127.0.0.1")
    tls = extra = ""
    cafile: Path | None = None
    if mode == "certificates":
        ca = CertificateAuthority(root / "ca")
        (ac, ak), (pc, pk) = ca.issue("a.test"), ca.issue("p.test")
        cafile = ca.path
        tls = f'[tls]\ncertificates = {{ "a.test" = ["{ac}", "{ak}"] }}\n'
        extra = f'ca_file = "{ca.path}"\ntrusted_domains = ["p.test"]\n'
    else:
        pc, pk = root / "p.test.crt", root / "p.test.key"
        make_self_signed("p.test", pc, pk)
    prosody = Prosody(root / "prosody", blether_s2s, secure_auth=mode == "certificates",
                      cert=pc, key=pk, cafile=cafile)
    config = (f'hosts = ["a.test"]\n{tls}[module_options.s2s]\nbind = ["127.0.0.1"]\n'
              f"port = {blether_s2s}\nconnect_timeout = 10\n"
              f'overrides = {{ "p.test" = "{PROSODY_HOST}:{prosody.s2s}" }}\n{extra}')
    blether = ServerProcess(root / "blether", ("a.test",), config, bind="127.0.0.1")
    blether.start()
    try:
        prosody.start()
        yield Pair(mode, blether, prosody)
    finally:
        prosody.stop()
        code = blether.stop()
        log = blether.log()
        assert "Traceback" not in log, f"the server logged a traceback:\n{log[-5000:]}"
        assert code == 0, f"server exited with {code}:\n{log[-3000:]}"


@pytest.fixture
async def login() -> AsyncIterator[Any]:
    clients: list[Client] = []

    async def _login(server: Any, jid: str, *, direct_tls: bool = False) -> Client:
        client = Client(jid)
        clients.append(client)
        assert await client.login(server, direct_tls=direct_tls), f"{jid} could not log in"
        await go_online(client)
        return client

    yield _login
    for c in clients:
        await c.close()


async def test_messages_both_ways(pair: Pair, login: Any) -> None:
    (a_jid,) = pair.blether.new_users(1)
    p_jid = pair.prosody.register(f"pm{pair.mode[0]}")
    # Blether's clients use direct TLS (see test_s2s.py); Prosody's use STARTTLS.
    alice = await login(pair.blether, a_jid, direct_tls=True)
    pat = await login(pair.prosody.endpoint, p_jid)
    await alice.send_xml(f"<message to='{p_jid}' type='chat' id='bp'><body>to Prosody</body>"
                         "</message>")
    await pat.expect(f"<message from='{full(alice)}' type='chat' id='bp'><body>to Prosody"
                     "</body></message>", timeout=20)
    await pat.send_xml(f"<message to='{a_jid}' type='chat' id='pb'><body>to Blether</body>"
                       "</message>")
    await alice.expect(f"<message from='{full(pat)}' type='chat' id='pb'><body>to Blether"
                       "</body></message>", timeout=20)
    _check_authentication(pair)


async def test_mutual_subscription_both_ways(pair: Pair, login: Any) -> None:
    (a_jid,) = pair.blether.new_users(1)
    p_jid = pair.prosody.register(f"ps{pair.mode[0]}")
    alice = await login(pair.blether, a_jid, direct_tls=True)
    pat = await login(pair.prosody.endpoint, p_jid)
    # Blether user asks, Prosody user approves.
    await alice.send_xml(f"<presence to='{p_jid}' type='subscribe'/>")
    await pat.expect(f"<presence from='{a_jid}' type='subscribe'/>", timeout=20)
    await pat.send_xml(f"<presence to='{a_jid}' type='subscribed'/>")
    await alice.expect(f"<presence from='{p_jid}' type='subscribed'/>", timeout=20)
    await expect_push(alice, p_jid, subscription="to", ask=None)
    await alice.expect(f"<presence from='{full(pat)}'/>", timeout=20)
    # Prosody user asks, Blether user approves.
    await pat.send_xml(f"<presence to='{a_jid}' type='subscribe'/>")
    await alice.expect(f"<presence from='{p_jid}' type='subscribe'/>", timeout=20)
    await alice.send_xml(f"<presence to='{p_jid}' type='subscribed'/>")
    await expect_push(alice, p_jid, subscription="both")
    await expect_push(pat, a_jid, subscription="both", timeout=20)
    await pat.expect(f"<presence from='{full(alice)}'/>", timeout=20)
    # Presence flows both ways now.
    await pat.send_xml("<presence><show>dnd</show></presence>")
    await alice.expect(f"<presence from='{full(pat)}'><show>dnd</show></presence>", timeout=20)
    _check_authentication(pair)


def _check_authentication(pair: Pair) -> None:
    """Both directions authenticated the way the scenario says."""
    log = pair.blether.log()
    if pair.mode == "dialback":
        assert "[s2s-out a.test→p.test] ready (dialback)" in log, log[-3000:]
        assert "p.test authenticated for a.test with dialback" in log, log[-3000:]
    else:
        assert "[s2s-out a.test→p.test] ready (EXTERNAL)" in log, log[-3000:]
        assert "p.test authenticated with SASL EXTERNAL" in log, log[-3000:]
