"""The example bots (examples/), each run as a separate process against the real server."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from integration.harness import Client, ServerProcess, ns

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ROSTER = "jabber:iq:roster"


def login_args(server: ServerProcess, jid: str) -> list[str]:
    return ["--jid", jid, "--password", "secret", "--server", server.bind,
            "--port", str(server.port), "--insecure"]


async def run_example(script: str, *args: str, stdin: str = "",
                      timeout: float = 60.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / script), *args, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@contextlib.asynccontextmanager
async def running(script: str, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A long-running example, stopped with SIGTERM (it must then exit 0)."""
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


def from_bare(bare: str) -> Any:
    return lambda e: e.get("from", "").split("/")[0] == bare


async def roster_item(client: Client, contact: str) -> ET.Element | None:
    reply = await client.query("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/>"
                               "</iq>")
    return next((i for i in reply.iter(ns("item", ROSTER)) if i.get("jid") == contact), None)


# -- the dictionary bot ------------------------------------------------------------------------

async def test_dictionary_bot(server: ServerProcess, connect: Any, tmp_path: Path) -> None:
    bot, alice = server.new_users(2)
    words = tmp_path / "words.txt"
    words.write_text("# extra words\nkettle: a pot for boiling water\n\n")
    async with running("dictionary_bot.py", *login_args(server, bot), "--dict", str(words)):
        a = await connect(alice)
        await a.send_xml("<presence/>")
        # It accepts subscription requests (and subscribes back).
        await a.send_xml(f"<presence to='{bot}' type='subscribe'/>")
        await a.expect(f"<presence from='{bot}' type='subscribed'/>", timeout=30)
        await a.expect(f"<presence from='{bot}' type='subscribe'/>", timeout=10)

        async def ask(word: str) -> str:
            await a.send_xml(f"<message to='{bot}' type='chat'><body>{word}</body></message>")
            reply = await a.expect("<message type='chat'/>",
                                   where=lambda e: from_bare(bot)(e)
                                   and e.find(ns("body")) is not None, timeout=30)
            return reply.findtext(ns("body")) or ""

        assert await ask("xmpp") == "Extensible Messaging and Presence Protocol"
        assert await ask("XMPP4R") == "Simple XMPP library for ruby"
        assert await ask("kettle") == "a pot for boiling water"          # from --dict
        assert await ask("flibbertigibbet") == "don't know about flibbertigibbet"


async def test_dictionary_bot_rejects_a_bad_dictionary_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("no colon here\n")
    code, out = await run_example("dictionary_bot.py", "--jid", "x@localhost", "--password",
                                  "p", "--dict", str(bad))
    assert code == 2 and "bad.txt:1" in out


async def test_dictionary_bot_wrong_password_exits_1(server: ServerProcess) -> None:
    [bot] = server.new_users(1)
    args = login_args(server, bot)
    args[args.index("secret")] = "wrong"
    code, out = await run_example("dictionary_bot.py", *args)
    assert code == 1 and "authentication failed" in out


# -- the presence-aware notifier ---------------------------------------------------------------

def notifier(server: ServerProcess, jid: str, to: str, wait: float, text: str) -> Any:
    return run_example("presence_notifier.py", *login_args(server, jid), "--to", to,
                       "--wait", str(wait), "--subject", "CVS Watch Alarm", stdin=text)


async def befriend(a: Client, b: Client) -> None:
    """Mutual presence subscription (RFC 6121 §3.1)."""
    a_bare, b_bare = str(a.boundjid.bare), str(b.boundjid.bare)
    for x, y, y_bare, x_bare in ((a, b, b_bare, a_bare), (b, a, a_bare, b_bare)):
        await x.send_xml(f"<presence to='{y_bare}' type='subscribe'/>")
        await y.expect(f"<presence from='{x_bare}' type='subscribe'/>")
        await y.send_xml(f"<presence to='{x_bare}' type='subscribed'/>")
        await x.expect(f"<presence from='{y_bare}' type='subscribed'/>")


def is_message(e: ET.Element) -> bool:
    return e.tag == ns("message") and e.find(ns("body")) is not None


async def test_notifier_subscription_handshake_then_delivery(
        server: ServerProcess, connect: Any) -> None:
    note, target = server.new_users(2)
    t = await connect(target)
    await t.send_xml("<presence/>")
    # The target asks to see the notifier's presence (stored while it is offline).
    await t.send_xml(f"<presence to='{note}' type='subscribe'/>")
    run = asyncio.ensure_future(notifier(server, note, target, 20, "build 42 failed\n"))
    # The notifier accepts and subscribes back; the target approves.
    await t.expect(f"<presence from='{note}' type='subscribed'/>", timeout=30)
    await t.expect(f"<presence from='{note}' type='subscribe'/>", timeout=10)
    await t.send_xml(f"<presence to='{note}' type='subscribed'/>")
    code, out = await run
    assert code == 0, out
    assert "sent the message" in out
    msg = await t.expect(where=is_message)
    assert from_bare(note)(msg) and msg.get("to") == str(t.boundjid)
    assert msg.findtext(ns("body")) == "build 42 failed"
    assert msg.findtext(ns("subject")) == "CVS Watch Alarm"
    # They are now mutual contacts, on both rosters.
    item = await roster_item(t, note)
    assert item is not None and item.get("subscription") == "both"
    n = await connect(note, resource="check")
    item = await roster_item(n, target)
    assert item is not None and item.get("subscription") == "both"


async def _mutual(server: ServerProcess, connect: Any) -> tuple[str, str, Client]:
    note, target = server.new_users(2)
    n = await connect(note, resource="setup")
    t = await connect(target)
    for c in (n, t):  # available: subscription requests are delivered at once (§3.1.3)
        await c.send_xml("<presence/>")
        await c.expect(f"<presence from='{c.boundjid}'/>")
    await befriend(n, t)
    await n.close()
    return note, target, t


async def test_notifier_delivers_to_available_user(server: ServerProcess,
                                                   connect: Any) -> None:
    note, target, t = await _mutual(server, connect)
    await t.send_xml("<presence><show>chat</show></presence>")
    code, out = await notifier(server, note, target, 20, "the tests pass")
    assert code == 0, out
    msg = await t.expect(where=is_message)
    assert msg.findtext(ns("body")) == "the tests pass"


async def test_notifier_skips_user_in_dnd(server: ServerProcess, connect: Any) -> None:
    note, target, t = await _mutual(server, connect)
    await t.send_xml("<presence><show>dnd</show><status>in a meeting</status></presence>")
    code, out = await notifier(server, note, target, 3, "do not disturb me")
    assert code == 3, out
    assert "dnd" in out and f"{target}" in out
    await t.expect_nothing(where=is_message, wait=1.0)


async def test_notifier_picks_the_resource_not_in_dnd(server: ServerProcess,
                                                      connect: Any) -> None:
    note, target, busy = await _mutual(server, connect)
    await busy.send_xml("<presence><show>dnd</show><priority>10</priority></presence>")
    free = await connect(target, resource="free")
    await free.send_xml("<presence><priority>1</priority></presence>")
    code, out = await notifier(server, note, target, 20, "to the free one")
    assert code == 0, out
    msg = await free.expect(where=is_message)
    assert msg.findtext(ns("body")) == "to the free one"
    await busy.expect_nothing(where=is_message, wait=1.0)


async def test_notifier_skips_offline_user(server: ServerProcess, connect: Any) -> None:
    note, target, t = await _mutual(server, connect)
    await t.close()
    code, out = await notifier(server, note, target, 3, "nobody home")
    assert code == 3, out
    assert "unavailable" in out
    # Nothing was sent, so nothing waits in offline storage either.
    again = await connect(target, resource="later")
    await again.send_xml("<presence/>")
    await again.expect_nothing(where=is_message, wait=1.5)


async def test_notifier_needs_a_message(server: ServerProcess) -> None:
    code, out = await notifier(server, "n@localhost", "t@localhost", 1, "   \n")
    assert code == 2 and "empty" in out
