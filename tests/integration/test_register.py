"""XEP-0077 In-Band Registration over real TCP: registering before login (raw client, since
the exchange happens before SASL), password change and account removal (slixmpp clients)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.harness import Client, ServerProcess, ns
from integration.rawclient import RawClient, condition

R = "jabber:iq:register"
ROSTER = "jabber:iq:roster"
ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
FEATURE = "http://jabber.org/features/iq-register"

OPEN = """
[module_options.register]
allow_registration = true
throttle_exempt_ips = ["127.0.0.1", "::1"]
"""
THROTTLED = """
[module_options.register]
allow_registration = true
min_seconds_between_registrations_per_ip = 600
"""


def _serve(tmp: Path, config: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp, config_text=config)
    proc.start()
    yield proc
    code = proc.stop()
    log = proc.log()
    assert "Traceback" not in log, f"the server logged a traceback:\n{log[-5000:]}"
    assert code == 0, f"server exited with {code}:\n{log[-3000:]}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """This module's server has registration on (loopback exempt from the throttle)."""
    yield from _serve(Path(tmp_path_factory.mktemp("register")), OPEN)


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _serve(Path(tmp_path_factory.mktemp("throttled")), THROTTLED)


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The default configuration: registration off."""
    yield from _serve(Path(tmp_path_factory.mktemp("closed")), "")


async def unauthenticated(server: ServerProcess) -> RawClient:
    raw = await RawClient.connect(server.bind, server.port)
    await raw.open_stream()
    await raw.starttls()
    return raw


async def iq(raw: RawClient, text: str, iq_id: str) -> Any:
    await raw.send(text)
    return await raw.stanza(lambda el: el.name == "iq" and el.attrs.get("id") == iq_id)


def register_set(username: str, password: str, iq_id: str = "reg2") -> str:
    return (f"<iq type='set' id='{iq_id}'><query xmlns='{R}'><username>{username}</username>"
            f"<password>{password}</password></query></iq>")


async def stream_error_of(client: Client, timeout: float = 5.0) -> str:
    """The condition of the stream error the client received (waiting for it)."""
    for _ in range(int(timeout / 0.05)):
        if client.stream_errors:
            return str(client.stream_errors[0]["condition"])
        await asyncio.sleep(0.05)
    raise AssertionError("no stream error received")


def error_condition(reply: ET.Element) -> str | None:
    err = reply.find(ns("error"))
    if err is None:
        return None
    conds = [c.tag.split("}")[1] for c in err
             if c.tag.startswith(f"{{{ERR}}}") and not c.tag.endswith("}text")]
    return conds[0] if conds else None


# -- §3.1 registration before authentication ---------------------------------------------
async def test_stream_feature_is_advertised_after_tls(server: ServerProcess) -> None:
    # §7: offered to clients, and here only once the channel is secure (§9).
    raw = await RawClient.connect(server.bind, server.port)
    try:
        features = await raw.open_stream()
        assert features.find("register", FEATURE) is None
        features = await raw.starttls()
        assert features.find("register", FEATURE) is not None
    finally:
        await raw.close()


async def test_register_then_log_in(server: ServerProcess, connect: Any) -> None:
    raw = await unauthenticated(server)
    try:
        reply = await iq(raw, f"<iq type='get' id='reg1' to='localhost'><query xmlns='{R}'/>"
                              "</iq>", "reg1")
        assert reply.attrs["type"] == "result"
        query = reply.find("query", R)
        assert query is not None and query.find("username", R) is not None
        assert query.find("password", R) is not None
        reply = await iq(raw, register_set("bill", "Calliope"), "reg2")
        assert reply.attrs["type"] == "result"
    finally:
        await raw.close()
    bill = await connect("bill@localhost", "Calliope")
    assert bill.boundjid.bare == "bill@localhost"
    assert "bill@localhost" in server.cli("user", "list").stdout.split()


async def test_username_conflict(server: ServerProcess) -> None:
    (taken,) = server.new_users(1)
    raw = await unauthenticated(server)
    try:
        reply = await iq(raw, register_set(taken.split("@")[0], "m1cro$oft"), "reg2")
        assert reply.attrs["type"] == "error" and condition(reply) == "conflict"
    finally:
        await raw.close()


async def test_missing_password_is_not_acceptable(server: ServerProcess) -> None:
    raw = await unauthenticated(server)
    try:
        reply = await iq(raw, f"<iq type='set' id='reg2'><query xmlns='{R}'>"
                              "<username>nopass</username><password/></query></iq>", "reg2")
        assert reply.attrs["type"] == "error" and condition(reply) == "not-acceptable"
    finally:
        await raw.close()


async def test_one_registration_per_ip(throttled: ServerProcess) -> None:
    # SECURITY.md: one per IP per 600 s; ERR(wait, policy-violation) as Prosody.
    for name, expected in (("first", None), ("second", "policy-violation")):
        raw = await unauthenticated(throttled)
        try:
            reply = await iq(raw, register_set(name, "secret"), "reg2")
            assert condition(reply) == expected
            if expected:
                assert reply.find("error").attrs["type"] == "wait"  # type: ignore[union-attr]
        finally:
            await raw.close()
    assert throttled.cli("user", "list").stdout.split() == ["first@localhost"]


async def test_registration_is_off_by_default(closed: ServerProcess) -> None:
    raw = await unauthenticated(closed)
    try:
        assert raw.features is not None and raw.features.find("register", FEATURE) is None
        reply = await iq(raw, f"<iq type='get' id='reg1'><query xmlns='{R}'/></iq>", "reg1")
        assert condition(reply) == "service-unavailable"    # §3.1 MUST
    finally:
        await raw.close()


# -- after authentication ------------------------------------------------------------------
async def test_password_change(server: ServerProcess, connect: Any) -> None:
    # §3.3: the new password works, the old one does not.
    (jid,) = server.new_users(1)
    user = await connect(jid)
    local = jid.split("@")[0]
    reply = await user.query(f"<iq type='set' to='localhost' id='change1'><query xmlns='{R}'>"
                             f"<username>{local}</username><password>newpass</password>"
                             "</query></iq>")
    assert reply.get("type") == "result"
    again = await connect(jid, "newpass")
    assert again.boundjid.bare == jid
    old = Client(jid, "secret")
    try:
        assert not await old.login(server)
    finally:
        await old.close()


async def test_registered_entity_sees_registered(server: ServerProcess, connect: Any) -> None:
    (jid,) = server.new_users(1)
    user = await connect(jid)
    reply = await user.query(f"<iq type='get' id='reg1'><query xmlns='{R}'/></iq>")
    assert reply.find(f"{{{R}}}query/{{{R}}}registered") is not None
    assert reply.findtext(f"{{{R}}}query/{{{R}}}username") == jid.split("@")[0]


async def test_cancel_registration(server: ServerProcess, connect: Any) -> None:
    # §3.2: IQ result, then the <not-authorized/> stream error; the account and its roster
    # are gone (a new account of that name starts empty) and the login fails.
    jid, friend = server.new_users(2)
    user = await connect(jid)
    reply = await user.query(f"<iq type='set' id='r1'><query xmlns='{ROSTER}'>"
                             f"<item jid='{friend}' name='Friend'/></query></iq>")
    assert reply.get("type") == "result"
    other_resource = await connect(jid, resource="second")
    reply = await user.query(f"<iq type='set' id='unreg1'><query xmlns='{R}'><remove/>"
                             "</query></iq>")
    assert reply.get("type") == "result" and reply.get("id") == "unreg1"
    for client in (user, other_resource):
        assert await stream_error_of(client) == "not-authorized"
    assert jid not in server.cli("user", "list").stdout.split()
    gone = Client(jid, "secret")
    try:
        assert not await gone.login(server)
    finally:
        await gone.close()
    server.add_user(jid)                     # the name again, through the CLI
    fresh = await connect(jid)
    roster = await fresh.query(f"<iq type='get' id='r2'><query xmlns='{ROSTER}'/></iq>")
    assert roster.findall(f"{{{ROSTER}}}query/{{{ROSTER}}}item") == []


async def test_messages_to_a_removed_account_bounce(server: ServerProcess,
                                                    connect: Any) -> None:
    jid, friend = server.new_users(2)
    user = await connect(jid)
    await user.query(f"<iq type='set' id='unreg1'><query xmlns='{R}'><remove/></query></iq>")
    assert await stream_error_of(user) == "not-authorized"
    sender = await connect(friend)
    await sender.send_xml(f"<message to='{jid}' id='m1' type='chat'><body>hi</body></message>")
    bounced = await sender.expect(f"<message from='{jid}' id='m1' type='error'/>")
    assert error_condition(bounced) == "service-unavailable"
