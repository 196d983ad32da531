"""XEP-0092 Software Version for the server; <os/> only when enabled (XEP-0092 §5)."""

from __future__ import annotations

import platform

import pytest

import blether
from blether.core.modules import ModuleError
from features.services_kit import Kit, condition

VERSION = "jabber:iq:version"
QUERY = f"<iq type='get' id='version_1' to='localhost'><query xmlns='{VERSION}'/></iq>"


async def test_server_version_without_os() -> None:
    kit = await Kit.create(["version"])
    try:
        alice = await kit.login("alice@localhost/pc")
        reply = await kit.query(alice, QUERY)
        assert reply.attrs["type"] == "result" and reply.attrs["from"] == "localhost"
        assert reply.attrs["to"] == "alice@localhost/pc"
        query = reply.find("query", VERSION)
        assert query is not None
        assert query.find_text("name", VERSION) == "Blether"
        assert query.find_text("version", VERSION) == blether.__version__
        assert query.find("os", VERSION) is None
    finally:
        await kit.close()


async def test_os_is_shown_when_enabled() -> None:
    kit = await Kit.create(["version"], {"version": {"show_os": True}})
    try:
        alice = await kit.login("alice@localhost/pc")
        query = (await kit.query(alice, QUERY)).find("query", VERSION)
        assert query is not None
        assert query.find_text("os", VERSION) == f"{platform.system()} {platform.release()}"
    finally:
        await kit.close()


async def test_accounts_do_not_answer_for_their_clients() -> None:
    """RFC 6121 §8.5.2.1.3: an IQ to a bare JID nobody handles is <service-unavailable/>; the
    software version is the client's to tell (at its full JID)."""
    kit = await Kit.create(["version"])
    try:
        alice = await kit.login("alice@localhost/pc")
        await kit.account("bob@localhost")
        for to in ("alice@localhost", "bob@localhost"):
            reply = await kit.query(alice, f"<iq type='get' id='v' to='{to}'>"
                                           f"<query xmlns='{VERSION}'/></iq>")
            assert condition(reply) == "service-unavailable"
    finally:
        await kit.close()


async def test_set_is_not_a_version_request() -> None:
    kit = await Kit.create(["version"])
    try:
        alice = await kit.login("alice@localhost/pc")
        reply = await kit.query(alice, f"<iq type='set' id='s' to='localhost'>"
                                       f"<query xmlns='{VERSION}'/></iq>")
        assert reply.attrs["type"] == "error"
    finally:
        await kit.close()


async def test_options_are_checked() -> None:
    with pytest.raises(ModuleError, match="show_os"):
        await Kit.create(["version"], {"version": {"show_os": "perhaps"}})
