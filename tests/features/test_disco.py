"""XEP-0030 service discovery (host and accounts, §8 access rules, nodes), XEP-0128 extended
info and XEP-0157 contact addresses, in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from blether import ns
from blether.core.disco import DiscoItem, Identity
from blether.core.iq import IqRequest, Target
from blether.core.module import Module
from blether.core.modules import ModuleError
from blether.features import DEFAULT_MODULES
from blether.features.disco import SERVERINFO, DiscoInfo, item_host
from blether.storage import RosterItem
from blether.xml.element import Element
from features.services_kit import Kit, condition

INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
DATA = "jabber:x:data"

# Features that name a protocol carried in IQs: advertising one promises a handler. (Other
# features, such as caps or msgoffline, describe behaviour; their module declares them.)
IQ_PROTOCOLS = frozenset({
    ns.DISCO_INFO, ns.DISCO_ITEMS, ns.PING, ns.VERSION, ns.TIME, ns.LAST, ns.ROSTER,
    ns.BLOCKING, ns.VCARD, ns.PRIVATE, ns.REGISTER, ns.COMMANDS,
})


def info_get(to: str | None, node: str | None = None, iq_id: str = "info1") -> str:
    to_attr = f" to='{to}'" if to else ""
    node_attr = f" node='{node}'" if node is not None else ""
    return f"<iq type='get' id='{iq_id}'{to_attr}><query xmlns='{INFO}'{node_attr}/></iq>"


def items_get(to: str | None, node: str | None = None, iq_id: str = "items1") -> str:
    to_attr = f" to='{to}'" if to else ""
    node_attr = f" node='{node}'" if node is not None else ""
    return f"<iq type='get' id='{iq_id}'{to_attr}><query xmlns='{ITEMS}'{node_attr}/></iq>"


def identities(reply: Element) -> set[tuple[str, str, str]]:
    query = reply.find("query", INFO)
    assert query is not None, reply
    return {(i.attrs["category"], i.attrs["type"], i.attrs.get("name", ""))
            for i in query.find_all("identity", INFO)}


def features(reply: Element) -> list[str]:
    query = reply.find("query", INFO)
    assert query is not None, reply
    return [f.attrs["var"] for f in query.find_all("feature", INFO)]


def item_jids(reply: Element) -> list[str]:
    assert reply.attrs["type"] == "result", reply
    query = reply.find("query", ITEMS)
    assert query is not None, reply
    return [i.attrs["jid"] for i in query.find_all("item", ITEMS)]


def form_fields(form: Element) -> dict[str, list[str]]:
    return {f.attrs["var"]: [v.text for v in f.find_all("value", DATA)]
            for f in form.find_all("field", DATA)}


@pytest.fixture
async def kit() -> AsyncIterator[Kit]:
    k = await Kit.create(["disco", "ping", "version"])
    yield k
    await k.close()


# -- the hosted domain (§3.1, §4.1) --------------------------------------------------------
async def test_host_info_is_the_registry(kit: Kit) -> None:
    alice = await kit.login("alice@localhost/pc")
    reply = await kit.query(alice, info_get("localhost"))
    assert reply.attrs["type"] == "result" and reply.attrs["from"] == "localhost"
    assert identities(reply) == {("server", "im", "Blether")}
    assert sorted(features(reply)) == sorted(kit.s.disco.host_features)
    assert set(features(reply)) == {INFO, ITEMS, "urn:xmpp:ping", "jabber:iq:version"}


async def test_a_feature_is_listed_while_its_module_is_loaded(kit: Kit) -> None:
    alice = await kit.login("alice@localhost/pc")
    ping = kit.module("ping")
    kit.s.disco.add_host_feature("urn:example:extra", owner=ping)
    kit.s.disco.add_host_identity(Identity("pubsub", "service", "Extra"), owner=ping)
    reply = await kit.query(alice, info_get("localhost", iq_id="a"))
    assert "urn:example:extra" in features(reply)
    assert ("pubsub", "service", "Extra") in identities(reply)
    kit.s.disco.remove_owner(ping)
    reply = await kit.query(alice, info_get("localhost", iq_id="b"))
    assert "urn:example:extra" not in features(reply)
    assert "urn:xmpp:ping" not in features(reply)
    assert identities(reply) == {("server", "im", "Blether")}


async def test_server_name_option() -> None:
    kit = await Kit.create(["disco"], {"disco": {"name": "Example IM"}})
    try:
        alice = await kit.login("alice@localhost/pc")
        assert identities(await kit.query(alice, info_get("localhost"))) == \
            {("server", "im", "Example IM")}
    finally:
        await kit.close()


async def test_host_items_list_the_registry_items(kit: Kit) -> None:
    alice = await kit.login("alice@localhost/pc")
    assert item_jids(await kit.query(alice, items_get("localhost", iq_id="e"))) == []
    kit.s.disco.add_item(DiscoItem("conference.localhost", "Chatrooms"), owner=kit.module("ping"))
    reply = await kit.query(alice, items_get("localhost"))
    query = reply.find("query", ITEMS)
    assert query is not None
    [item] = query.find_all("item", ITEMS)
    assert item.attrs == {"jid": "conference.localhost", "name": "Chatrooms"}


async def test_items_go_under_their_own_host() -> None:
    kit = await Kit.create(["disco"], hosts=("a.example", "b.example"))
    try:
        for jid in ("muc.a.example", "muc.b.example", "proxy.elsewhere.org"):
            kit.s.disco.add_item(DiscoItem(jid), owner=kit.module("disco"))
        alice = await kit.login("alice@a.example/pc")
        assert item_jids(await kit.query(alice, items_get("a.example", iq_id="a"))) == [
            "muc.a.example", "proxy.elsewhere.org"]
        assert item_jids(await kit.query(alice, items_get("b.example", iq_id="b"))) == [
            "muc.b.example", "proxy.elsewhere.org"]
    finally:
        await kit.close()


def test_item_host() -> None:
    hosts = frozenset({"example.org", "chat.example.org"})
    assert item_host("muc.example.org", hosts) == "example.org"
    assert item_host("muc.chat.example.org", hosts) == "chat.example.org"
    assert item_host("example.org", hosts) == "example.org"
    assert item_host("room@muc.example.org/nick", hosts) == "example.org"
    assert item_host("example.com", hosts) is None
    assert item_host("not a jid@@", hosts) is None


# -- nodes (§3.2, §4.2) --------------------------------------------------------------------
class CommandsNode:
    """A provider such as ad-hoc commands registers for its node."""

    NODE = "http://jabber.org/protocol/commands"

    async def node_info(self, req: IqRequest, node: str) -> DiscoInfo | None:
        if node != self.NODE:
            return None
        return DiscoInfo((Identity("automation", "command-list"),), (INFO,))

    async def node_items(self, req: IqRequest, node: str) -> list[DiscoItem] | None:
        if node != self.NODE:
            return None
        return [DiscoItem(str(req.to), "Uptime", "uptime")]


async def test_unknown_node_is_item_not_found(kit: Kit) -> None:
    alice = await kit.login("alice@localhost/pc")
    for query in (info_get("localhost", "no-such-node"), items_get("localhost", "no-such-node")):
        reply = await kit.query(alice, query)
        assert reply.attrs["type"] == "error" and condition(reply) == "item-not-found"


async def test_empty_node_attribute_means_no_node(kit: Kit) -> None:
    alice = await kit.login("alice@localhost/pc")
    reply = await kit.query(alice, info_get("localhost", ""))
    assert reply.attrs["type"] == "result" and INFO in features(reply)


async def test_node_providers_answer_and_the_node_is_mirrored(kit: Kit) -> None:
    disco = kit.module("disco")
    provider = CommandsNode()
    disco.add_node_provider(Target.HOST, provider, owner=provider)
    alice = await kit.login("alice@localhost/pc")
    reply = await kit.query(alice, info_get("localhost", CommandsNode.NODE))
    query = reply.find("query", INFO)
    assert query is not None and query.attrs["node"] == CommandsNode.NODE
    assert identities(reply) == {("automation", "command-list", "")}
    reply = await kit.query(alice, items_get("localhost", CommandsNode.NODE))
    query = reply.find("query", ITEMS)
    assert query is not None and query.attrs["node"] == CommandsNode.NODE
    [item] = query.find_all("item", ITEMS)
    assert item.attrs == {"jid": "localhost", "name": "Uptime", "node": "uptime"}
    # Host providers do not answer for accounts.
    reply = await kit.query(alice, info_get(None, CommandsNode.NODE, iq_id="acct"))
    assert condition(reply) == "item-not-found"
    disco.remove_node_providers(provider)
    reply = await kit.query(alice, info_get("localhost", CommandsNode.NODE, iq_id="gone"))
    assert condition(reply) == "item-not-found"


# -- XEP-0128 and XEP-0157 -----------------------------------------------------------------
async def test_extension_forms_are_appended_to_host_info(kit: Kit) -> None:
    form = Element("x", DATA, {"type": "result"}, [
        Element("field", DATA, {"var": "FORM_TYPE", "type": "hidden"},
                [Element("value", DATA, None, ["urn:example:info"])]),
        Element("field", DATA, {"var": "motd"}, [Element("value", DATA, None, ["hello"])]),
    ])
    kit.s.disco.add_extension("urn:example:info", form, owner=kit.module("ping"))
    alice = await kit.login("alice@localhost/pc")
    reply = await kit.query(alice, info_get("localhost"))
    query = reply.find("query", INFO)
    assert query is not None
    forms = query.find_all("x", DATA)
    assert [form_fields(f)["FORM_TYPE"] for f in forms] == [["urn:example:info"]]
    # Not on accounts: extended info describes the entity it belongs to (XEP-0128 §2).
    reply = await kit.query(alice, info_get(None, iq_id="own"))
    own = reply.find("query", INFO)
    assert own is not None and own.find("x", DATA) is None


async def test_contact_addresses() -> None:
    kit = await Kit.create(["disco"], {"disco": {
        "abuse_addresses": ["mailto:abuse@localhost", "xmpp:abuse@localhost"],
        "admin_addresses": ["mailto:xmpp@localhost"],
        "status_addresses": ["https://status.localhost"],
    }})
    try:
        alice = await kit.login("alice@localhost/pc")
        reply = await kit.query(alice, info_get("localhost"))
        query = reply.find("query", INFO)
        assert query is not None
        [form] = query.find_all("x", DATA)
        assert form.attrs["type"] == "result"
        fields = {f.attrs["var"]: f for f in form.find_all("field", DATA)}
        assert fields["FORM_TYPE"].attrs["type"] == "hidden"
        assert form_fields(form) == {
            "FORM_TYPE": [SERVERINFO],
            "abuse-addresses": ["mailto:abuse@localhost", "xmpp:abuse@localhost"],
            "admin-addresses": ["mailto:xmpp@localhost"],
            "status-addresses": ["https://status.localhost"],
        }
    finally:
        await kit.close()


async def test_admin_addresses_default_to_the_admins() -> None:
    kit = await Kit.create(["disco"], admins=["root@localhost"])
    try:
        alice = await kit.login("alice@localhost/pc")
        query = (await kit.query(alice, info_get("localhost"))).find("query", INFO)
        assert query is not None
        [form] = query.find_all("x", DATA)
        assert form_fields(form) == {"FORM_TYPE": [SERVERINFO],
                                     "admin-addresses": ["xmpp:root@localhost"]}
    finally:
        await kit.close()
    kit = await Kit.create(["disco"], {"disco": {"admin_addresses": []}},
                           admins=["root@localhost"])
    try:
        alice = await kit.login("alice@localhost/pc")
        query = (await kit.query(alice, info_get("localhost"))).find("query", INFO)
        assert query is not None and query.find("x", DATA) is None
    finally:
        await kit.close()


async def test_addresses_must_be_uris() -> None:
    with pytest.raises(ModuleError, match="support_addresses"):
        await Kit.create(["disco"], {"disco": {"support_addresses": ["support at example"]}})
    with pytest.raises(ModuleError, match="unknown_addresses"):
        await Kit.create(["disco"], {"disco": {"unknown_addresses": []}})


# -- accounts (§3.1 "bare JID", §8) --------------------------------------------------------
async def subscribe(kit: Kit, user: str, contact: str, subscription: str) -> None:
    await kit.s.storage.roster.put(user, RosterItem(contact, subscription=subscription))


async def test_account_info_for_the_account_itself(kit: Kit) -> None:
    alice = await kit.login("alice@localhost/pc")
    for stanza in (info_get(None), info_get("alice@localhost")):
        reply = await kit.query(alice, stanza)
        assert reply.attrs["type"] == "result"
        assert identities(reply) == {("account", "registered", "")}
        assert sorted(features(reply)) == sorted(kit.s.disco.account_features)
        assert {INFO, ITEMS, "urn:xmpp:ping"} <= set(features(reply))
        assert "jabber:iq:version" not in features(reply)   # the server's, not the account's


@pytest.mark.parametrize("subscription", ["from", "both"])
async def test_account_info_for_a_contact_allowed_to_see_presence(
        kit: Kit, subscription: str) -> None:
    await kit.account("juliet@localhost")
    await subscribe(kit, "juliet@localhost", "romeo@localhost", subscription)
    romeo = await kit.login("romeo@localhost/orchard")
    reply = await kit.query(romeo, info_get("juliet@localhost"))
    assert reply.attrs["type"] == "result" and reply.attrs["from"] == "juliet@localhost"
    assert ("account", "registered", "") in identities(reply)


@pytest.mark.parametrize("subscription", [None, "none", "to"])
async def test_account_info_refused_to_others(kit: Kit, subscription: str | None) -> None:
    await kit.account("juliet@localhost")
    if subscription is not None:
        await subscribe(kit, "juliet@localhost", "romeo@localhost", subscription)
    romeo = await kit.login("romeo@localhost/orchard")
    for node in (None, "http://jabber.org/protocol/commands"):
        reply = await kit.query(romeo, info_get("juliet@localhost", node))
        assert reply.attrs["type"] == "error"
        assert condition(reply) == "service-unavailable"   # §8 rule 1, node or not


async def test_missing_account_looks_like_a_refused_one(kit: Kit) -> None:
    romeo = await kit.login("romeo@localhost/orchard")
    reply = await kit.query(romeo, info_get("nobody@localhost"))
    assert condition(reply) == "service-unavailable"


async def test_account_items_list_available_resources(kit: Kit) -> None:
    juliet1 = await kit.login("juliet@localhost/balcony")
    juliet2 = await kit.login("juliet@localhost/chamber")
    await kit.login("juliet@localhost/hidden")   # bound, no initial presence
    juliet1.available = juliet2.available = True
    await subscribe(kit, "juliet@localhost", "romeo@localhost", "both")
    romeo = await kit.login("romeo@localhost/orchard")
    for who, stanza in ((romeo, items_get("juliet@localhost")), (juliet1, items_get(None))):
        assert sorted(item_jids(await kit.query(who, stanza))) == [
            "juliet@localhost/balcony", "juliet@localhost/chamber"]


@pytest.mark.parametrize("subscription", [None, "to"])
async def test_account_items_are_empty_for_others(kit: Kit, subscription: str | None) -> None:
    juliet = await kit.login("juliet@localhost/balcony")
    juliet.available = True
    if subscription is not None:
        await subscribe(kit, "juliet@localhost", "romeo@localhost", subscription)
    romeo = await kit.login("romeo@localhost/orchard")
    assert item_jids(await kit.query(romeo, items_get("juliet@localhost"))) == []  # §8 rule 2
    reply = await kit.query(romeo, items_get("juliet@localhost", "some-node", iq_id="n"))
    assert item_jids(reply) == []
    query = reply.find("query", ITEMS)
    assert query is not None and query.attrs["node"] == "some-node"


async def test_account_nodes(kit: Kit) -> None:
    provider = CommandsNode()
    kit.module("disco").add_node_provider(Target.ACCOUNT, provider, owner=provider)
    alice = await kit.login("alice@localhost/pc")
    reply = await kit.query(alice, info_get(None, CommandsNode.NODE))
    assert identities(reply) == {("automation", "command-list", "")}
    reply = await kit.query(alice, items_get("alice@localhost", CommandsNode.NODE))
    assert item_jids(reply) == ["alice@localhost"]
    reply = await kit.query(alice, info_get(None, "unknown", iq_id="u"))
    assert condition(reply) == "item-not-found"


# -- what is advertised is what is implemented ---------------------------------------------
async def test_every_advertised_feature_is_implemented() -> None:
    """With the default module set: every feature and identity belongs to a loaded module, and
    a feature that names an IQ protocol has a handler for it.

    The handler may sit at the other target: protocols the server runs on the account's behalf
    are advertised on the server's domain (XEP-0191 §3 discovers blocking there, for example).
    """
    # Federation stays off: its listener would take the well-known s2s port.
    options = {"s2s": {"enabled": False}} if "s2s" in DEFAULT_MODULES else {}
    kit = await Kit.create(list(DEFAULT_MODULES), options)
    try:
        s = kit.s
        loaded = set(map(id, s.modules.loaded.values()))
        reg = s.disco
        tables: list[tuple[Target, dict[str, object]]] = [
            (Target.HOST, reg.host_features), (Target.ACCOUNT, reg.account_features)]
        for target, table in tables:
            for var, owner in table.items():
                assert isinstance(owner, Module) and id(owner) in loaded, \
                    f"{var} is advertised at {target.value} by no loaded module"
                if var in IQ_PROTOCOLS:
                    assert s.iq.handles(var, Target.HOST) or s.iq.handles(var, Target.ACCOUNT), \
                        f"{var} is advertised at {target.value} without a handler"
        for table2 in (reg.host_identities, reg.account_identities, reg.items):
            for key, owner in table2.items():
                assert isinstance(owner, Module) and id(owner) in loaded, key
        for form_type, (_form, owner) in reg.extensions.items():
            assert isinstance(owner, Module) and id(owner) in loaded, form_type
    finally:
        await kit.close()


async def test_the_services_of_this_area_advertise_what_they_handle() -> None:
    names = ["disco", "caps", "version", "time", "last", "ping", "keepalive"]
    kit = await Kit.create(names)
    try:
        s = kit.s
        for (_type, xmlns, target), (_handler, owner) in s.iq._handlers.items():
            table = s.disco.host_features if target is Target.HOST else s.disco.account_features
            assert table.get(xmlns) is owner, f"{owner} handles {xmlns} at {target} unadvertised"
        for target in (Target.HOST, Target.ACCOUNT):
            table = s.disco.host_features if target is Target.HOST else s.disco.account_features
            for var in table:
                assert s.iq.handles(var, target) or var == "http://jabber.org/protocol/caps", var
    finally:
        await kit.close()
