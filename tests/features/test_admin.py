"""XEP-0050 Ad-Hoc Commands carrying XEP-0133 Service Administration, in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from blether.features.admin.adhoc import SessionTable
from blether.jid import JID
from blether.xml.element import Element
from features.services_kit import FakeSession, Kit, condition

CMD = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin"
X = "jabber:x:data"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
DISCO_INFO = "http://jabber.org/protocol/disco#info"


@pytest.fixture
async def kit() -> AsyncIterator[Kit]:
    k = await Kit.create(["admin", "disco"], admins=["bard@localhost"])
    yield k
    await k.close()


def execute(node: str, iq_id: str = "exec1") -> str:
    return (f"<iq type='set' to='localhost' id='{iq_id}' xml:lang='en'>"
            f"<command xmlns='{CMD}' action='execute' node='{ADMIN}#{node}'/></iq>")


def submit(node: str, sid: str, fields: dict[str, list[str]], iq_id: str = "exec2",
           action: str = "") -> str:
    body = "".join(f"<field var='{var}'>{''.join(f'<value>{v}</value>' for v in values)}"
                   "</field>" for var, values in fields.items())
    act = f" action='{action}'" if action else ""
    return (f"<iq type='set' to='localhost' id='{iq_id}'><command xmlns='{CMD}' "
            f"node='{ADMIN}#{node}' sessionid='{sid}'{act}><x xmlns='{X}' type='submit'>"
            f"<field var='FORM_TYPE'><value>{ADMIN}</value></field>{body}</x></command></iq>")


def command_of(reply: Element) -> Element:
    assert reply.attrs["type"] == "result", reply
    cmd = reply.find("command", CMD)
    assert cmd is not None
    return cmd


def field_values(cmd: Element, var: str) -> list[str]:
    x = cmd.find("x", X)
    assert x is not None
    for f in x.find_all("field", X):
        if f.attrs.get("var") == var:
            return [v.text for v in f.find_all("value", X)]
    raise AssertionError(f"no field {var}")


async def run(kit: Kit, admin: FakeSession, node: str, fields: dict[str, list[str]]) -> Element:
    first = command_of(await kit.query(admin, execute(node)))
    assert first.attrs["status"] == "executing"
    return await kit.query(admin, submit(node, first.attrs["sessionid"], fields))


async def test_commands_feature_and_list_for_admins(kit: Kit) -> None:
    bard = await kit.login("bard@localhost/globe")
    info = await kit.query(bard, f"<iq type='get' to='localhost' id='d1'>"
                                 f"<query xmlns='{DISCO_INFO}'/></iq>")
    assert CMD in [f.attrs["var"] for f in info.find("query", DISCO_INFO).find_all("feature")]  # type: ignore[union-attr]
    reply = await kit.query(bard, f"<iq type='get' to='localhost' id='d2'>"
                                  f"<query xmlns='{DISCO_ITEMS}' node='{CMD}'/></iq>")
    items = reply.find("query", DISCO_ITEMS).find_all("item")  # type: ignore[union-attr]
    nodes = {i.attrs["node"] for i in items}
    assert {f"{ADMIN}#add-user", f"{ADMIN}#delete-user", f"{ADMIN}#change-user-password",
            f"{ADMIN}#get-online-users-list", f"{ADMIN}#announce"} <= nodes
    assert all(i.attrs["jid"] == "localhost" and i.attrs.get("name") for i in items)
    # §2.2: a command node's info: identity automation/command-node and the feature.
    reply = await kit.query(bard, f"<iq type='get' to='localhost' id='d3'>"
                                  f"<query xmlns='{DISCO_INFO}' node='{ADMIN}#add-user'/></iq>")
    query = reply.find("query", DISCO_INFO)
    assert query is not None
    ident = query.find("identity")
    assert ident is not None and (ident.attrs["category"], ident.attrs["type"]) == \
        ("automation", "command-node")
    assert {CMD, X} <= {f.attrs["var"] for f in query.find_all("feature")}


async def test_non_admins_see_no_commands_and_cannot_run_them(kit: Kit) -> None:
    mallory = await kit.login("mallory@localhost/x")
    reply = await kit.query(mallory, f"<iq type='get' to='localhost' id='d2'>"
                                     f"<query xmlns='{DISCO_ITEMS}' node='{CMD}'/></iq>")
    assert reply.find("query", DISCO_ITEMS).find_all("item") == []  # type: ignore[union-attr]
    reply = await kit.query(mallory, f"<iq type='get' to='localhost' id='d3'>"
                                     f"<query xmlns='{DISCO_INFO}' node='{ADMIN}#add-user'/>"
                                     "</iq>")
    assert condition(reply) == "forbidden"
    reply = await kit.query(mallory, execute("add-user"))
    assert condition(reply) == "forbidden"


async def test_add_user(kit: Kit) -> None:
    # XEP-0133 §4.1 flow.
    bard = await kit.login("bard@localhost/globe")
    first = command_of(await kit.query(bard, execute("add-user", "add-user-1")))
    assert first.attrs["status"] == "executing" and first.attrs["node"] == f"{ADMIN}#add-user"
    actions = first.find("actions", CMD)
    assert actions is not None and actions.find("complete", CMD) is not None
    assert field_values(first, "FORM_TYPE") == [ADMIN]
    reply = await kit.query(bard, submit("add-user", first.attrs["sessionid"], {
        "accountjid": ["juliet@localhost"], "password": ["R0m30"],
        "password-verify": ["R0m30"]}, "add-user-2"))
    done = command_of(reply)
    assert done.attrs["status"] == "completed"
    assert done.attrs["sessionid"] == first.attrs["sessionid"]
    assert await kit.s.auth.verify_password("juliet@localhost", "R0m30")


async def test_add_existing_user_is_conflict(kit: Kit) -> None:
    bard = await kit.login("bard@localhost/globe")
    await kit.account("juliet@localhost")
    reply = await run(kit, bard, "add-user", {"accountjid": ["juliet@localhost"],
                                              "password": ["x"], "password-verify": ["x"]})
    assert condition(reply) == "conflict"


@pytest.mark.parametrize("fields", [
    {"accountjid": ["juliet@localhost"], "password": ["a"], "password-verify": ["b"]},
    {"accountjid": ["juliet@elsewhere.example"], "password": ["a"]},
    {"accountjid": ["not a jid@@"], "password": ["a"]},
    {"accountjid": ["juliet@localhost"], "password": [""]},
])
async def test_add_user_bad_payload(kit: Kit, fields: dict[str, list[str]]) -> None:
    bard = await kit.login("bard@localhost/globe")
    reply = await run(kit, bard, "add-user", fields)
    assert condition(reply) == "bad-request"
    assert reply.find("error").find("bad-payload", CMD) is not None  # type: ignore[union-attr]
    assert not await kit.s.storage.accounts.exists("juliet@localhost")


async def test_delete_user_ends_sessions_and_purges(kit: Kit) -> None:
    bard = await kit.login("bard@localhost/globe")
    juliet = await kit.login("juliet@localhost/balcony")
    await kit.s.storage.kv.set("juliet@localhost", "private", "k", "<a xmlns='urn:a'/>")
    reply = await run(kit, bard, "delete-user", {"accountjids": ["juliet@localhost"]})
    assert command_of(reply).attrs["status"] == "completed"
    assert juliet.closed and juliet.close_error is not None
    assert juliet.close_error.condition == "not-authorized"
    assert not await kit.s.storage.accounts.exists("juliet@localhost")
    assert await kit.s.storage.kv.keys("juliet@localhost", "private") == []


async def test_delete_unknown_user_deletes_nothing(kit: Kit) -> None:
    bard = await kit.login("bard@localhost/globe")
    await kit.account("juliet@localhost")
    reply = await run(kit, bard, "delete-user",
                      {"accountjids": ["juliet@localhost", "nobody@localhost"]})
    assert condition(reply) == "item-not-found"
    assert await kit.s.storage.accounts.exists("juliet@localhost")


async def test_change_user_password(kit: Kit) -> None:
    bard = await kit.login("bard@localhost/globe")
    await kit.account("juliet@localhost")
    reply = await run(kit, bard, "change-user-password",
                      {"accountjid": ["juliet@localhost"], "password": ["V3r0n4"]})
    assert command_of(reply).attrs["status"] == "completed"
    assert await kit.s.auth.verify_password("juliet@localhost", "V3r0n4")
    reply = await run(kit, bard, "change-user-password",
                      {"accountjid": ["nobody@localhost"], "password": ["V3r0n4"]})
    assert condition(reply) == "item-not-found"


async def test_online_users_and_counts(kit: Kit) -> None:
    bard = await kit.login("bard@localhost/globe")
    await kit.login("juliet@localhost/balcony")
    await kit.login("juliet@localhost/tomb")
    await kit.account("romeo@localhost")
    done = command_of(await kit.query(bard, execute("get-online-users-list")))
    assert done.attrs["status"] == "completed"
    assert field_values(done, "onlineuserjids") == ["bard@localhost", "juliet@localhost"]
    done = command_of(await kit.query(bard, execute("get-online-users-num")))
    assert field_values(done, "onlineusersnum") == ["2"]
    done = command_of(await kit.query(bard, execute("get-registered-users-num")))
    assert field_values(done, "registeredusersnum") == ["3"]


async def test_announce_reaches_every_session(kit: Kit) -> None:
    bard = await kit.login("bard@localhost/globe")
    juliet = await kit.login("juliet@localhost/balcony")
    romeo = await kit.login("romeo@localhost/orchard")
    reply = await run(kit, bard, "announce", {"announcement": [
        "Attention! This service will be going down for",
        "maintenance in 2 minutes. Please log off now!"]})
    assert command_of(reply).attrs["status"] == "completed"
    for session in (juliet, romeo, bard):
        got = session.take(lambda s: s.name == "message")
        assert len(got) == 1
        msg = got[0]
        assert msg.attrs["type"] == "headline" and msg.attrs["from"] == "localhost"
        assert msg.attrs["to"] == str(session.jid)
        assert msg.find_text("body") == ("Attention! This service will be going down for\n"
                                         "maintenance in 2 minutes. Please log off now!")


async def test_end_user_session(kit: Kit) -> None:
    bard = await kit.login("bard@localhost/globe")
    one = await kit.login("juliet@localhost/balcony")
    two = await kit.login("juliet@localhost/tomb")
    reply = await run(kit, bard, "end-user-session", {"accountjids": ["juliet@localhost/tomb"]})
    assert command_of(reply).attrs["status"] == "completed"
    assert two.closed and not one.closed
    reply = await run(kit, bard, "end-user-session", {"accountjids": ["juliet@localhost"]})
    assert one.closed
    assert await kit.s.storage.accounts.exists("juliet@localhost")


async def test_cancel(kit: Kit) -> None:
    # XEP-0050 §3.4.3.
    bard = await kit.login("bard@localhost/globe")
    first = command_of(await kit.query(bard, execute("add-user")))
    sid = first.attrs["sessionid"]
    reply = await kit.query(bard, f"<iq type='set' to='localhost' id='exec3'>"
                                  f"<command xmlns='{CMD}' sessionid='{sid}' "
                                  f"node='{ADMIN}#add-user' action='cancel'/></iq>")
    assert command_of(reply).attrs["status"] == "canceled"
    # The session is over: submitting to it now is session-expired (§4.6).
    reply = await kit.query(bard, submit("add-user", sid, {"accountjid": ["j@localhost"],
                                                           "password": ["x"]}))
    assert condition(reply) == "not-allowed"
    assert reply.find("error").find("session-expired", CMD) is not None  # type: ignore[union-attr]


async def test_session_belongs_to_its_requester(kit: Kit) -> None:
    bard = await kit.login("bard@localhost/globe")
    bard2 = await kit.login("bard@localhost/other")
    first = command_of(await kit.query(bard, execute("add-user")))
    reply = await kit.query(bard2, submit("add-user", first.attrs["sessionid"],
                                          {"accountjid": ["j@localhost"], "password": ["x"]}))
    assert condition(reply) == "not-allowed"
    reply = await kit.query(bard, submit("delete-user", first.attrs["sessionid"],
                                         {"accountjids": ["j@localhost"]}))
    assert condition(reply) == "bad-request"   # bad-sessionid: another command's session


async def test_malformed_requests(kit: Kit) -> None:
    bard = await kit.login("bard@localhost/globe")
    reply = await kit.query(bard, f"<iq type='set' to='localhost' id='m'>"
                                  f"<command xmlns='{CMD}' node='{ADMIN}#add-user' "
                                  "action='dance'/></iq>")
    assert condition(reply) == "bad-request"
    assert reply.find("error").find("malformed-action", CMD) is not None  # type: ignore[union-attr]
    reply = await kit.query(bard, f"<iq type='set' to='localhost' id='n'>"
                                  f"<command xmlns='{CMD}' node='urn:nope'/></iq>")
    assert condition(reply) == "item-not-found"
    first = command_of(await kit.query(bard, execute("add-user")))
    reply = await kit.query(bard, f"<iq type='set' to='localhost' id='o'>"
                                  f"<command xmlns='{CMD}' node='{ADMIN}#add-user' "
                                  f"sessionid='{first.attrs['sessionid']}'/></iq>")
    assert condition(reply) == "bad-request"   # no form submitted: bad-payload


def test_session_table_expiry_and_cap() -> None:
    table = SessionTable(timeout=10, max_per_requester=2)
    who = JID.parse("bard@localhost/globe")
    a = table.open("n", who, now=0)
    table.open("n", who, now=1)
    with pytest.raises(Exception, match="too many"):
        table.open("n", who, now=2)
    assert table.get(a.id, "n", who, now=9).id == a.id
    with pytest.raises(Exception, match="no such command session"):
        table.get(a.id, "n", who, now=10)
    table.open("n", who, now=12)      # the expired ones made room
    assert len(table) == 1


async def test_no_admins_configured_means_nobody_is_admin() -> None:
    kit = await Kit.create(["admin"])
    try:
        bard = await kit.login("bard@localhost/globe")
        reply = await kit.query(bard, execute("get-online-users-num"))
        assert condition(reply) == "forbidden"
    finally:
        await kit.close()
