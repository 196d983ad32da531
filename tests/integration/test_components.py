"""External components (XEP-0114) against a real server: the example components
(examples/echo_component.py, examples/maildrop_gateway.py) run as separate processes, clients
are real slixmpp clients, and raw-socket components check what the server refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.message
import email.policy
import email.utils
import signal
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.harness import Client, RawComponent, ServerProcess, free_port, ns

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"
SECRETS = {"echo.localhost": "s3cret", "gateway.localhost": "g4teway", "raw.localhost": "r4w"}


@pytest.fixture(scope="module")
def component_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, component_port: int
           ) -> Iterator[ServerProcess]:
    """The module's server, with the component listener configured (replaces conftest's)."""
    table = ", ".join(f'"{d}" = "{s}"' for d, s in SECRETS.items())
    proc = ServerProcess(Path(tmp_path_factory.mktemp("blether")), config_text=(
        f"[module_options.component]\nport = {component_port}\ncomponents = {{ {table} }}\n"))
    proc.start()
    yield proc
    code = proc.stop()
    log = proc.log()
    assert "Traceback" not in log, f"the server logged a traceback:\n{log[-5000:]}"
    assert code == 0, f"server exited with {code}:\n{log[-3000:]}"


def component_args(domain: str, port: int, secret: str | None = None) -> list[str]:
    return ["--jid", domain, "--secret", secret or SECRETS[domain], "--server", "127.0.0.1",
            "--port", str(port)]


@contextlib.asynccontextmanager
async def running(script: str, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """An example component as a separate process, stopped with SIGTERM (then it must exit
    0 without a traceback)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / script), *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    out = (await proc.stdout.read()).decode() if proc.stdout else ""
    assert proc.returncode == 0, f"{script} exited with {proc.returncode}:\n{out}"
    assert "Traceback" not in out, out


async def disco_items(client: Client) -> list[str]:
    reply = await client.query(f"<iq type='get' id='items' to='localhost'>"
                               f"<query xmlns='{DISCO_ITEMS}'/></iq>")
    assert reply.get("type") == "result", ET.tostring(reply, encoding="unicode")
    return [i.get("jid", "") for i in reply.iter(ns("item", DISCO_ITEMS))]


async def wait_listed(client: Client, domain: str, listed: bool = True,
                      timeout: float = 20.0) -> None:
    """Wait until the server's disco#items does (or no longer does) list `domain`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (domain in await disco_items(client)) != listed:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{domain} {'never' if listed else 'still'} listed")
        await asyncio.sleep(0.1)


def error_condition(el: ET.Element) -> str | None:
    err = el.find(ns("error"))
    if err is None:
        return None
    return next((c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{STANZA_ERRORS}}}")
                 and not c.tag.endswith("}text")), None)


# -- the echo component ----------------------------------------------------------------------------

async def test_echo_component_answers_and_is_listed_while_connected(
        server: ServerProcess, connect: Any, component_port: int) -> None:
    (alice,) = server.new_users(1)
    a = await connect(alice)
    assert "echo.localhost" not in await disco_items(a)
    async with running("echo_component.py", *component_args("echo.localhost", component_port)):
        await wait_listed(a, "echo.localhost")
        await a.send_xml("<message to='echo.localhost' type='chat' id='e1'>"
                         "<body>hello</body></message>")
        await a.expect("<message from='echo.localhost' type='chat'>"
                       "<body>Echo: hello</body></message>")
        # Any JID at the component's domain reaches it; the answer comes from that JID.
        await a.send_xml("<message to='anyone@echo.localhost' type='chat' id='e2'>"
                         "<body>again</body></message>")
        await a.expect("<message from='anyone@echo.localhost' type='chat'>"
                       "<body>Echo: again</body></message>")
        info = await a.query(f"<iq type='get' id='i1' to='echo.localhost'>"
                             f"<query xmlns='{DISCO_INFO}'/></iq>")
        assert info.get("type") == "result"
        identities = [(i.get("category"), i.get("type"), i.get("name"))
                      for i in info.iter(ns("identity", DISCO_INFO))]
        assert identities == [("component", "generic", "Echo")]
    # Stopped: no longer listed, and a message is answered "try again later".
    await wait_listed(a, "echo.localhost", listed=False)
    await a.send_xml("<message to='echo.localhost' type='chat' id='e3'><body>x</body></message>")
    err = await a.expect("<message from='echo.localhost' type='error' id='e3'/>")
    assert error_condition(err) == "remote-server-timeout"


async def test_echo_component_with_a_wrong_secret_exits_1(server: ServerProcess,
                                                          component_port: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "echo_component.py"),
        *component_args("echo.localhost", component_port, "not-the-secret"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1, out.decode()
    assert "not-authorized" in out.decode()


# -- the handshake and the address rules, from a raw component ------------------------------------

async def test_wrong_secret_is_a_not_authorized_stream_error(component_port: int) -> None:
    c = await RawComponent.connect(component_port)
    try:
        head = await c.open("raw.localhost")
        assert head.attrs["from"] == "raw.localhost" and head.attrs.get("id")
        await c.handshake("wrong")
        assert await c.stream_error() == "not-authorized"
    finally:
        await c.close()


async def test_a_second_connection_for_a_component_gets_conflict(component_port: int) -> None:
    first = await RawComponent.connect(component_port)
    second = await RawComponent.connect(component_port)
    try:
        await first.login("raw.localhost", SECRETS["raw.localhost"])
        await second.open("raw.localhost")
        await second.handshake(SECRETS["raw.localhost"])
        assert await second.stream_error() == "conflict"
    finally:
        await first.close()
        await second.close()


async def test_a_raw_component_exchanges_stanzas_with_a_client(
        server: ServerProcess, connect: Any, component_port: int) -> None:
    (alice,) = server.new_users(1)
    a = await connect(alice)
    c = await RawComponent.connect(component_port)
    try:
        await c.login("raw.localhost", SECRETS["raw.localhost"])
        await a.send_xml("<message to='bot@raw.localhost' type='chat' id='r1'>"
                         "<body>ping</body></message>")
        msg = await c.stanza(lambda e: e.name == "message")
        assert msg.attrs["from"] == str(a.boundjid) and msg.attrs["id"] == "r1"
        await c.send(f"<message from='bot@raw.localhost' to='{a.boundjid}' type='chat' "
                     "id='r2'><body>pong</body></message>")
        await a.expect("<message from='bot@raw.localhost' type='chat' id='r2'>"
                       "<body>pong</body></message>")
    finally:
        await c.close()


async def test_a_forged_from_is_an_invalid_from_stream_error(
        server: ServerProcess, connect: Any, component_port: int) -> None:
    alice, evil = server.new_users(2)
    a = await connect(alice)
    c = await RawComponent.connect(component_port)
    try:
        await c.login("raw.localhost", SECRETS["raw.localhost"])
        await c.send(f"<message from='{evil}' to='{alice}' type='chat'>"
                     "<body>it is me, really</body></message>")
        assert await c.stream_error() == "invalid-from"
        await a.expect_nothing("<message type='chat'/>")
    finally:
        await c.close()


# -- the mail-drop gateway ------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def gateway(client: Client, maildir: Path, port: int) -> AsyncIterator[None]:
    async with running("maildrop_gateway.py", *component_args("gateway.localhost", port),
                       "--maildir", str(maildir), "--poll", "0.2"):
        await wait_listed(client, "gateway.localhost")
        yield


async def wait_files(directory: Path, timeout: float = 10.0) -> list[Path]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        files = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
        if files:
            return files
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"nothing appeared in {directory}")
        await asyncio.sleep(0.05)


async def test_a_message_to_the_gateway_becomes_a_mail_file(
        server: ServerProcess, connect: Any, component_port: int, tmp_path: Path) -> None:
    (alice,) = server.new_users(1)
    a = await connect(alice)
    maildir = tmp_path / "maildrop"
    async with gateway(a, maildir, component_port):
        await a.send_xml("<message to='bob%example.org@gateway.localhost' type='chat' id='m1'>"
                         "<subject>Lunch</subject><body>Meet at noon?\nAt the usual place."
                         "</body></message>")
        (path,) = await wait_files(maildir / "new")
        mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert mail["From"] == alice
        assert mail["To"] == "bob@example.org"
        assert mail["Subject"] == "Lunch"
        assert mail["Date"] and email.utils.parsedate_to_datetime(mail["Date"])
        assert mail["Message-ID"].endswith("@gateway.localhost>")
        assert mail.get_content().rstrip("\n") == "Meet at noon?\nAt the usual place."
        assert list((maildir / "tmp").iterdir()) == []       # moved from tmp/, not left there
        # Not a gateway address (no %): refused, nothing written.
        await a.send_xml("<message to='gateway.localhost' type='chat' id='m2'>"
                         "<body>hello?</body></message>")
        err = await a.expect("<message from='gateway.localhost' type='error' id='m2'/>")
        assert error_condition(err) == "jid-malformed"
        assert len(list((maildir / "new").iterdir())) == 1


async def test_a_mail_dropped_in_the_outbox_reaches_the_client(
        server: ServerProcess, connect: Any, component_port: int, tmp_path: Path) -> None:
    (alice,) = server.new_users(1)
    a = await connect(alice)
    # Available, so that a message to the bare JID is delivered now (RFC 6121 §8.5.2.1.1).
    await a.send_xml("<presence/>")
    await a.expect(f"<presence from='{a.boundjid}'/>")
    maildir = tmp_path / "maildrop"
    async with gateway(a, maildir, component_port):
        mail = email.message.EmailMessage()
        mail["From"] = "Carol <carol@example.org>"
        mail["To"] = alice
        mail["Subject"] = "Re: Lunch"
        mail.set_content("Yes, see you there.")
        # Delivered the Maildir way: written in tmp/, then moved into new/.
        tmp, new = maildir / "outbox" / "tmp" / "1.mail", maildir / "outbox" / "new" / "1.mail"
        tmp.write_bytes(mail.as_bytes())
        tmp.rename(new)
        got = await a.expect("<message from='carol%example.org@gateway.localhost' type='chat'>"
                             "<body>Yes, see you there.</body></message>", timeout=10)
        assert got.findtext(ns("subject")) == "Re: Lunch"
        (done,) = await wait_files(maildir / "outbox" / "cur")
        assert done.name == "1.mail:2,S"
        assert not new.exists()
        # A mail without a usable recipient is not sent; it is put aside flagged T(rashed).
        del mail["To"]
        tmp, new = maildir / "outbox" / "tmp" / "2.mail", maildir / "outbox" / "new" / "2.mail"
        tmp.write_bytes(mail.as_bytes())
        tmp.rename(new)
        deadline = asyncio.get_running_loop().time() + 10
        while not (maildir / "outbox" / "cur" / "2.mail:2,T").exists():
            assert asyncio.get_running_loop().time() < deadline, "the bad mail was not moved"
            await asyncio.sleep(0.05)
        await a.expect_nothing("<message from='carol%example.org@gateway.localhost'/>")
