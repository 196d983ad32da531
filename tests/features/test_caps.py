"""XEP-0115 Entity Capabilities: the verification string (§5.1, worked examples of §5.2 and
§5.3), the server's caps stream feature (§6.3) and disco#info on node#ver (§6.2)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator

import pytest

from blether.core import events
from blether.core.disco import Identity
from blether.features.caps import DEFAULT_NODE, verification_string, verification_string_input
from blether.xml.element import Element
from features.services_kit import Kit, condition

CAPS = "http://jabber.org/protocol/caps"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DATA = "jabber:x:data"


def field(var: str, *values: str, type_: str | None = None) -> Element:
    attrs = {"var": var}
    if type_:
        attrs["type"] = type_
    return Element("field", DATA, attrs, [Element("value", DATA, None, [v]) for v in values])


def parse_info(query: Element) -> tuple[list[Identity], list[str], list[Element]]:
    """What a receiver hashes (§5.4): the identities, features and forms of a disco#info reply."""
    idents = [Identity(i.attrs["category"], i.attrs["type"], i.attrs.get("name", ""),
                       i.attrs.get("xml:lang", "")) for i in query.find_all("identity", DISCO_INFO)]
    feats = [f.attrs["var"] for f in query.find_all("feature", DISCO_INFO)]
    return idents, feats, query.find_all("x", DATA)


# -- §5.2 and §5.3, byte for byte ----------------------------------------------------------
def test_simple_generation_example() -> None:
    """XEP-0115 §5.2: Exodus 0.9.1."""
    identities = [Identity("client", "pc", "Exodus 0.9.1")]
    features = ["http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items",
                "http://jabber.org/protocol/muc", "http://jabber.org/protocol/caps"]
    assert verification_string_input(identities, features) == (
        "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<"
        "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
        "http://jabber.org/protocol/muc<")
    assert verification_string(identities, features) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def complex_example() -> tuple[list[Identity], list[str], list[Element]]:
    """XEP-0115 §5.3: Psi 0.11 with two localised identities and a softwareinfo form, given in
    a different order from the sorted one so that the sorting is tested too."""
    identities = [Identity("client", "pc", "Psi 0.11", "en"),
                  Identity("client", "pc", "\u03a8 0.11", "el")]
    features = ["http://jabber.org/protocol/muc", "http://jabber.org/protocol/caps",
                "http://jabber.org/protocol/disco#items", "http://jabber.org/protocol/disco#info"]
    form = Element("x", DATA, {"type": "result"}, [
        field("FORM_TYPE", "urn:xmpp:dataforms:softwareinfo", type_="hidden"),
        field("os_version", "10.5.1"),
        field("ip_version", "ipv6", "ipv4", type_="text-multi"),
        field("software_version", "0.11"),
        field("os", "Mac"),
        field("software", "Psi"),
    ])
    return identities, features, [form]


def test_complex_generation_example() -> None:
    identities, features, forms = complex_example()
    assert verification_string_input(identities, features, forms) == (
        "client/pc/el/\u03a8 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<"
        "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
        "http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<"
        "ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<")
    assert verification_string(identities, features, forms) == "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_forms_are_sorted_by_form_type_and_untyped_forms_left_out() -> None:
    identities = [Identity("server", "im")]
    b = Element("x", DATA, {"type": "result"}, [field("FORM_TYPE", "urn:b", type_="hidden"),
                                                 field("k", "2")])
    a = Element("x", DATA, {"type": "result"}, [field("FORM_TYPE", "urn:a", type_="hidden"),
                                                 field("k", "1")])
    # §5.4 step 3.6: a receiver ignores forms whose FORM_TYPE is missing or not hidden.
    untyped = Element("x", DATA, {"type": "result"}, [field("k", "x")])
    visible = Element("x", DATA, {"type": "result"}, [field("FORM_TYPE", "urn:c"),
                                                       field("k", "3")])
    s = verification_string_input(identities, [], [b, untyped, a, visible])
    assert s == "server/im//<urn:a<k<1<urn:b<k<2<"


def test_sorting_is_by_octets_not_by_locale() -> None:
    # "i;octet" (RFC 4790 §9.3): uppercase sorts before lowercase, 'Z' before 'a'.
    s = verification_string_input([Identity("c", "t")], ["urn:a", "urn:Z", "urn:_"])
    assert s == "c/t//<urn:Z<urn:_<urn:a<"


def test_the_hash_is_base64_sha1_of_the_utf8_string() -> None:
    identities, features, forms = complex_example()
    s = verification_string_input(identities, features, forms).encode("utf-8")
    assert verification_string(identities, features, forms) == \
        base64.b64encode(hashlib.sha1(s).digest()).decode()


# -- the server's caps ---------------------------------------------------------------------
@pytest.fixture
async def kit() -> AsyncIterator[Kit]:
    k = await Kit.create(["disco", "caps", "ping", "version"],
                         {"disco": {"admin_addresses": ["mailto:xmpp@localhost"]}})
    yield k
    await k.close()


async def stream_features(kit: Kit, authenticated: bool) -> list[Element]:
    event = events.StreamFeatures(authenticated, True, "localhost")
    await kit.s.hooks.notify(events.COLLECT_FEATURES, event)
    return [f for f in event.features if f.name == "c" and f.xmlns == CAPS]


@pytest.mark.parametrize("authenticated", [False, True])
async def test_stream_feature_carries_the_ver_of_the_host_disco_info(
        kit: Kit, authenticated: bool) -> None:
    [c] = await stream_features(kit, authenticated)
    assert c.attrs["hash"] == "sha-1"
    assert c.attrs["node"] == DEFAULT_NODE
    alice = await kit.login("alice@localhost/pc")
    reply = await kit.query(alice, f"<iq type='get' id='i1' to='localhost'>"
                                   f"<query xmlns='{DISCO_INFO}'/></iq>")
    query = reply.find("query", DISCO_INFO)
    assert query is not None
    idents, feats, forms = parse_info(query)
    assert CAPS in feats            # §7: a caps entity advertises the caps feature
    assert forms, "the XEP-0157 form is part of the hashed info"
    assert c.attrs["ver"] == verification_string(idents, feats, forms)


async def test_node_ver_is_answered_with_the_same_info(kit: Kit) -> None:
    [c] = await stream_features(kit, True)
    node = f"{c.attrs['node']}#{c.attrs['ver']}"
    alice = await kit.login("alice@localhost/pc")
    plain = await kit.query(alice, f"<iq type='get' id='p' to='localhost'>"
                                   f"<query xmlns='{DISCO_INFO}'/></iq>")
    reply = await kit.query(alice, f"<iq type='get' id='n' to='localhost'>"
                                   f"<query xmlns='{DISCO_INFO}' node='{node}'/></iq>")
    assert reply.attrs["type"] == "result"
    query = reply.find("query", DISCO_INFO)
    assert query is not None and query.attrs["node"] == node   # XEP-0030 §3.2: mirrored
    plain_query = plain.find("query", DISCO_INFO)
    assert plain_query is not None
    assert query.children == plain_query.children


async def test_a_stale_or_foreign_ver_is_item_not_found(kit: Kit) -> None:
    alice = await kit.login("alice@localhost/pc")
    for node in (f"{DEFAULT_NODE}#QgayPKawpkPSDYmwT/WM94uAlu0=", "http://psi-im.org#abc"):
        reply = await kit.query(alice, f"<iq type='get' id='x' to='localhost'>"
                                       f"<query xmlns='{DISCO_INFO}' node='{node}'/></iq>")
        assert condition(reply) == "item-not-found"


async def test_ver_follows_the_registry(kit: Kit) -> None:
    [before] = await stream_features(kit, True)
    kit.s.disco.add_host_feature("urn:example:new", owner=kit.module("ping"))
    [after] = await stream_features(kit, True)
    assert before.attrs["ver"] != after.attrs["ver"]
    alice = await kit.login("alice@localhost/pc")
    old = await kit.query(alice, f"<iq type='get' id='o' to='localhost'><query "
                                 f"xmlns='{DISCO_INFO}' node='{DEFAULT_NODE}#{before.attrs['ver']}'"
                                 f"/></iq>")
    assert condition(old) == "item-not-found"


async def test_ver_follows_a_form_changed_in_place(kit: Kit) -> None:
    """The ver is cached; a registered XEP-0128 form edited afterwards still changes it."""
    [before] = await stream_features(kit, True)
    [(form, _owner)] = kit.s.disco.extensions.values()
    form.append(field("abuse-addresses", "mailto:abuse@localhost"))
    [after] = await stream_features(kit, True)
    assert before.attrs["ver"] != after.attrs["ver"]


async def test_node_option() -> None:
    kit = await Kit.create(["caps"], {"caps": {"node": "https://example.org/server"}})
    try:
        [c] = await stream_features(kit, False)
        assert c.attrs["node"] == "https://example.org/server"
    finally:
        await kit.close()


async def test_stopping_caps_withdraws_its_node_provider(kit: Kit) -> None:
    disco = kit.module("disco")
    caps = kit.module("caps")
    await caps.stop()
    assert all(owner is not caps for entries in disco._providers.values()
               for _p, owner in entries)
