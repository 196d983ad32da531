"""XEP-0133 Service Administration through XEP-0050 ad-hoc commands, over real TCP with
slixmpp clients; the admin is listed in the configuration file."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.harness import Client, ServerProcess, ns

CMD = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin"
X = "jabber:x:data"
ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(Path(tmp_path_factory.mktemp("admin")),
                         config_text='admins = ["admin@localhost"]\n')
    proc.start()
    proc.add_user("admin@localhost")
    yield proc
    code = proc.stop()
    log = proc.log()
    assert "Traceback" not in log, f"the server logged a traceback:\n{log[-5000:]}"
    assert code == 0, f"server exited with {code}:\n{log[-3000:]}"


def error_condition(reply: ET.Element) -> str | None:
    err = reply.find(ns("error"))
    if err is None:
        return None
    conds = [c.tag.split("}")[1] for c in err
             if c.tag.startswith(f"{{{ERR}}}") and not c.tag.endswith("}text")]
    return conds[0] if conds else None


def command(reply: ET.Element) -> ET.Element:
    assert reply.get("type") == "result", ET.tostring(reply)
    cmd = reply.find(f"{{{CMD}}}command")
    assert cmd is not None
    return cmd


def values(cmd: ET.Element, var: str) -> list[str]:
    for field in cmd.iterfind(f"{{{X}}}x/{{{X}}}field"):
        if field.get("var") == var:
            return [v.text or "" for v in field.iterfind(f"{{{X}}}value")]
    raise AssertionError(f"no field {var} in {ET.tostring(cmd)!r}")


async def run(client: Client, node: str, fields: dict[str, list[str]]) -> ET.Element:
    """Execute a two-stage command (XEP-0133 §4 flows): get the form, submit it."""
    first = command(await client.query(
        f"<iq type='set' to='localhost' id='{node}-1' xml:lang='en'>"
        f"<command xmlns='{CMD}' action='execute' node='{ADMIN}#{node}'/></iq>"))
    assert first.get("status") == "executing"
    body = "".join(f"<field var='{var}'>{''.join(f'<value>{v}</value>' for v in vals)}</field>"
                   for var, vals in fields.items())
    return await client.query(
        f"<iq type='set' to='localhost' id='{node}-2' xml:lang='en'>"
        f"<command xmlns='{CMD}' node='{ADMIN}#{node}' sessionid='{first.get('sessionid')}'>"
        f"<x xmlns='{X}' type='submit'><field type='hidden' var='FORM_TYPE'>"
        f"<value>{ADMIN}</value></field>{body}</x></command></iq>")


async def test_admin_discovers_the_commands(server: ServerProcess, connect: Any) -> None:
    admin = await connect("admin@localhost")
    reply = await admin.query(f"<iq type='get' to='localhost' id='d1'>"
                              f"<query xmlns='{DISCO_ITEMS}' node='{CMD}'/></iq>")
    nodes = {i.get("node") for i in reply.iterfind(f"{{{DISCO_ITEMS}}}query/"
                                                   f"{{{DISCO_ITEMS}}}item")}
    assert {f"{ADMIN}#add-user", f"{ADMIN}#delete-user", f"{ADMIN}#change-user-password",
            f"{ADMIN}#get-online-users-list", f"{ADMIN}#announce"} <= nodes


async def test_normal_user_is_forbidden(server: ServerProcess, connect: Any) -> None:
    (jid,) = server.new_users(1)
    user = await connect(jid)
    reply = await user.query(f"<iq type='set' to='localhost' id='x'><command xmlns='{CMD}' "
                             f"action='execute' node='{ADMIN}#add-user'/></iq>")
    assert reply.get("type") == "error" and error_condition(reply) == "forbidden"
    reply = await user.query(f"<iq type='get' to='localhost' id='d1'>"
                             f"<query xmlns='{DISCO_ITEMS}' node='{CMD}'/></iq>")
    assert reply.findall(f"{{{DISCO_ITEMS}}}query/{{{DISCO_ITEMS}}}item") == []


async def test_add_user_then_log_in(server: ServerProcess, connect: Any) -> None:
    admin = await connect("admin@localhost")
    reply = await run(admin, "add-user", {"accountjid": ["juliet@localhost"],
                                          "password": ["R0m30"], "password-verify": ["R0m30"]})
    assert command(reply).get("status") == "completed"
    juliet = await connect("juliet@localhost", "R0m30")
    assert juliet.boundjid.bare == "juliet@localhost"
    reply = await run(admin, "add-user", {"accountjid": ["juliet@localhost"],
                                          "password": ["x"], "password-verify": ["x"]})
    assert error_condition(reply) == "conflict"


async def test_change_user_password(server: ServerProcess, connect: Any) -> None:
    (jid,) = server.new_users(1)
    admin = await connect("admin@localhost")
    reply = await run(admin, "change-user-password", {"accountjid": [jid],
                                                      "password": ["V3r0n4"]})
    assert command(reply).get("status") == "completed"
    user = await connect(jid, "V3r0n4")
    assert user.boundjid.bare == jid


async def test_delete_user(server: ServerProcess, connect: Any) -> None:
    (jid,) = server.new_users(1)
    victim = await connect(jid)
    admin = await connect("admin@localhost")
    reply = await run(admin, "delete-user", {"accountjids": [jid]})
    assert command(reply).get("status") == "completed"
    for _ in range(100):
        if victim.stream_errors:
            break
        await asyncio.sleep(0.05)
    assert victim.stream_errors and victim.stream_errors[0]["condition"] == "not-authorized"
    assert jid not in server.cli("user", "list").stdout.split()
    gone = Client(jid, "secret")
    try:
        assert not await gone.login(server)
    finally:
        await gone.close()


async def test_online_users_list(server: ServerProcess, connect: Any) -> None:
    a, b = server.new_users(2)
    await connect(a)
    await connect(b)
    admin = await connect("admin@localhost")
    reply = await admin.query(f"<iq type='set' to='localhost' id='o1'><command xmlns='{CMD}' "
                              f"action='execute' node='{ADMIN}#get-online-users-list'/></iq>")
    cmd = command(reply)
    assert cmd.get("status") == "completed"
    online = values(cmd, "onlineuserjids")
    assert {a, b, "admin@localhost"} <= set(online)


async def test_announce(server: ServerProcess, connect: Any) -> None:
    (jid,) = server.new_users(1)
    user = await connect(jid)
    admin = await connect("admin@localhost")
    reply = await run(admin, "announce", {"announcement": [
        "Attention! This service will be going down for maintenance."]})
    assert command(reply).get("status") == "completed"
    msg = await user.expect("<message from='localhost' type='headline'/>")
    assert msg.findtext(ns("body")) == "Attention! This service will be going down for " \
                                       "maintenance."
