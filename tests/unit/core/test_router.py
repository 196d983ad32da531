"""The router (RFC 6120 §8.1.2, §8.2.3, §8.3, §10; RFC 6121 §8.5) on in-memory services.

Real SessionRegistry, HookBus and IqDispatcher, real SQLite storage in tmp_path, and sessions
that record what the server writes to them. No sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from blether import ns
from blether.config import Config
from blether.core import events
from blether.core.auth import make_credentials_sync
from blether.core.iq import IqRequest, Target
from blether.core.router import Router
from blether.core.services import Services
from blether.core.session import Session
from blether.errors import StanzaError, StreamError
from blether.jid import JID
from blether.storage import ScramCredentials, open_storage
from blether.xml.element import Element
from blether.xml.parser import ElementParsed, XMLStreamParser

ACCOUNTS = ("alice@localhost", "bob@localhost")
_CREDS: list[ScramCredentials] = []


def xml(text: str) -> Element:
    p = XMLStreamParser()
    p.feed(b"<stream:stream xmlns='jabber:client' "
           b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>")
    [ev] = p.feed(text.encode())
    assert isinstance(ev, ElementParsed)
    return ev.element


def condition(stanza: Element) -> str | None:
    err = stanza.find("error", ns.CLIENT)
    if err is None:
        return None
    return next((c.name for c in err.elements() if c.xmlns == ns.STANZA_ERRORS
                 and c.name != "text"), None)


class Recorder(Session):
    """A bound session that keeps what the server sends it."""

    def __init__(self, jid: str) -> None:
        super().__init__(JID.parse(jid), "127.0.0.1")
        self.sent: list[Element] = []

    def send(self, stanza: Element) -> None:
        self.sent.append(stanza)

    def send_bytes(self, data: bytes) -> None:
        raise AssertionError("the router hands over elements")

    async def close(self, error: StreamError | None = None) -> None:
        self.closed = True

    def one(self) -> Element:
        assert len(self.sent) == 1, self.sent
        return self.sent.pop()


@pytest.fixture
async def s(tmp_path: object) -> AsyncIterator[Services]:
    storage = await open_storage(f"sqlite:///{tmp_path}/router.db")
    if not _CREDS:
        _CREDS.extend(make_credentials_sync("secret", 4096))
    for user in ACCOUNTS:
        await storage.accounts.create(user, _CREDS)
    services = Services(config=Config(), storage=storage, hosts=frozenset({"localhost"}))
    services.router = Router(services)
    yield services
    await storage.close()


def bind(s: Services, jid: str, *, available: bool = False) -> Recorder:
    session = Recorder(jid)
    session.available = available
    s.sessions.add(session)
    return session


async def ping_handler(req: IqRequest) -> Element:
    return req.result()


# -- 'from' (RFC 6120 §8.1.2.1) -----------------------------------------------------------

@pytest.mark.parametrize("claimed", ["mallory@localhost/evil", "alice@localhost",
                                     "localhost", "not a jid@@", ""])
async def test_from_is_stamped_with_the_senders_full_jid(s: Services, claimed: str) -> None:
    alice, bob = bind(s, "alice@localhost/pc"), bind(s, "bob@localhost/phone")
    await s.router.from_session(alice, xml(
        f"<message from='{claimed}' to='bob@localhost/phone' type='chat'><body>hi</body>"
        "</message>"))
    got = bob.one()
    assert got.attrs["from"] == "alice@localhost/pc"
    assert got.find_text("body") == "hi"
    assert alice.sent == []


async def test_missing_from_is_added(s: Services) -> None:
    alice, bob = bind(s, "alice@localhost/pc"), bind(s, "bob@localhost/phone")
    await s.router.from_session(alice, xml("<message to='bob@localhost/phone'/>"))
    assert bob.one().attrs["from"] == "alice@localhost/pc"


async def test_to_is_normalised(s: Services) -> None:
    alice, bob = bind(s, "alice@localhost/pc"), bind(s, "bob@localhost/phone")
    await s.router.from_session(alice, xml("<message to='BOB@LocalHost/phone'/>"))
    assert bob.one().attrs["to"] == "bob@localhost/phone"


async def test_stanza_from_session_hook_sees_the_stamped_stanza_and_can_claim_it(
        s: Services) -> None:
    alice, bob = bind(s, "alice@localhost/pc"), bind(s, "bob@localhost/phone")
    seen: list[events.FromSession] = []

    async def claim(ev: events.FromSession) -> bool:
        seen.append(ev)
        return True

    s.hooks.add(events.STANZA_FROM_SESSION, claim)
    await s.router.from_session(alice, xml("<message from='x@y' to='bob@localhost/phone'/>"))
    assert seen[0].stanza.attrs["from"] == "alice@localhost/pc"
    assert seen[0].to == JID.parse("bob@localhost/phone")
    assert bob.sent == [] and alice.sent == []


async def test_stanza_from_account_hook_can_veto(s: Services) -> None:
    alice, bob = bind(s, "alice@localhost/pc"), bind(s, "bob@localhost/phone")

    async def veto(ev: events.FromAccount) -> bool:
        return ev.to.bare == JID.parse("bob@localhost")

    s.hooks.add(events.STANZA_FROM_ACCOUNT, veto)
    await s.router.from_session(alice, xml("<message to='bob@localhost/phone'/>"))
    assert bob.sent == []


# -- IQ semantics (RFC 6120 §8.2.3) -------------------------------------------------------

@pytest.mark.parametrize("iq", [
    "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",           # no id
    "<iq type='get' id='1' to='localhost'/>",                                     # no child
    "<iq type='get' id='1' to='localhost'><ping xmlns='urn:xmpp:ping'/>"
    "<ping xmlns='urn:xmpp:ping'/></iq>",                                         # two
    "<iq type='set' id='1'><a xmlns='urn:x'/><b xmlns='urn:x'/></iq>",
    "<iq type='fetch' id='1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",  # bad type
    "<iq id='1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",               # no type
])
async def test_malformed_iq_is_bad_request(s: Services, iq: str) -> None:
    s.iq.register("get", ns.PING, Target.HOST, ping_handler)
    alice = bind(s, "alice@localhost/pc")
    await s.router.from_session(alice, xml(iq))
    reply = alice.one()
    assert reply.attrs["type"] == "error" and condition(reply) == "bad-request"
    assert reply.attrs["to"] == "alice@localhost/pc"


@pytest.mark.parametrize("to", ["localhost", "alice@localhost", None, "bob@localhost"])
async def test_unknown_payload_is_service_unavailable(s: Services, to: str | None) -> None:
    # RFC 6120 §8.4 (server, own account, another account's bare JID, no 'to')
    alice = bind(s, "alice@localhost/pc")
    to_attr = f" to='{to}'" if to else ""
    await s.router.from_session(alice, xml(
        f"<iq type='get' id='q1'{to_attr}><query xmlns='urn:example:nothing'/></iq>"))
    reply = alice.one()
    assert (reply.attrs["type"], reply.attrs["id"]) == ("error", "q1")
    assert condition(reply) == "service-unavailable"
    if to:
        assert reply.attrs["from"] == to


async def test_iq_to_the_server_is_answered(s: Services) -> None:
    s.iq.register("get", ns.PING, Target.HOST, ping_handler)
    alice = bind(s, "alice@localhost/pc")
    await s.router.from_session(alice, xml(
        "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"))
    reply = alice.one()
    assert reply.attrs == {"type": "result", "id": "p1", "to": "alice@localhost/pc",
                           "from": "localhost"}


async def test_iq_to_unknown_full_jid_is_service_unavailable(s: Services) -> None:
    alice = bind(s, "alice@localhost/pc")
    await s.router.from_session(alice, xml(
        "<iq type='get' id='q2' to='bob@localhost/nowhere'><ping xmlns='urn:xmpp:ping'/></iq>"))
    reply = alice.one()
    assert condition(reply) == "service-unavailable"
    assert reply.attrs["from"] == "bob@localhost/nowhere"


async def test_iq_to_unknown_account_is_service_unavailable(s: Services) -> None:
    alice = bind(s, "alice@localhost/pc")
    await s.router.from_session(alice, xml(
        "<iq type='get' id='q3' to='nobody@localhost'><ping xmlns='urn:xmpp:ping'/></iq>"))
    assert condition(alice.one()) == "service-unavailable"


async def test_iq_to_another_full_jid_is_delivered(s: Services) -> None:
    alice, bob = bind(s, "alice@localhost/pc"), bind(s, "bob@localhost/phone")
    await s.router.from_session(alice, xml(
        "<iq type='get' id='v1' to='bob@localhost/phone'><query xmlns='jabber:iq:version'/>"
        "</iq>"))
    got = bob.one()
    assert got.attrs["from"] == "alice@localhost/pc" and got.attrs["id"] == "v1"
    assert alice.sent == []


@pytest.mark.parametrize("to", ["localhost", "alice@localhost", "bob@localhost",
                                "bob@localhost/nowhere", "nobody@localhost"])
@pytest.mark.parametrize("itype", ["result", "error"])
async def test_results_and_errors_are_never_answered(s: Services, to: str, itype: str) -> None:
    alice = bind(s, "alice@localhost/pc")
    await s.router.from_session(alice, xml(f"<iq type='{itype}' id='r1' to='{to}'/>"))
    await s.router.from_session(alice, xml(
        f"<iq type='{itype}' id='r2' to='{to}'><query xmlns='urn:example'/></iq>"))
    assert alice.sent == []


# -- messages (RFC 6120 §10.3, §8.3; RFC 6121 §8.5) ---------------------------------------

async def test_message_without_to_goes_to_the_senders_bare_jid(s: Services) -> None:
    alice = bind(s, "alice@localhost/pc", available=True)
    other = bind(s, "alice@localhost/phone", available=True)
    await s.router.from_session(alice, xml("<message type='chat'><body>note</body></message>"))
    for session in (alice, other):
        got = session.one()
        assert got.attrs["to"] == "alice@localhost"
        assert got.attrs["from"] == "alice@localhost/pc"


@pytest.mark.parametrize("to", ["@localhost", "alice@", "a@b@c", "alice@localhost/",
                                "x" * 1024 + "@localhost", "bad\u0000@localhost",
                                "alice@[not-an-ip]"])
async def test_malformed_to_is_jid_malformed(s: Services, to: str) -> None:
    alice = bind(s, "alice@localhost/pc")
    msg = Element("message", ns.CLIENT, {"to": to, "id": "m1"},
                  [Element("body", ns.CLIENT, None, ["x"])])
    await s.router.from_session(alice, msg)
    reply = alice.one()
    assert reply.attrs["type"] == "error" and condition(reply) == "jid-malformed"
    assert reply.attrs["id"] == "m1"


async def test_remote_domain_is_remote_server_not_found(s: Services) -> None:
    alice = bind(s, "alice@localhost/pc")
    await s.router.from_session(alice, xml(
        "<message to='romeo@example.net' id='m2'><body>hi</body></message>"))
    reply = alice.one()
    assert condition(reply) == "remote-server-not-found"
    assert reply.attrs["from"] == "romeo@example.net"
    assert reply.attrs["to"] == "alice@localhost/pc"


async def test_route_remote_hook_takes_remote_stanzas(s: Services) -> None:
    alice = bind(s, "alice@localhost/pc")
    taken: list[events.ToRemote] = []

    async def federation(ev: events.ToRemote) -> bool:
        taken.append(ev)
        return True

    s.hooks.add(events.ROUTE_REMOTE, federation)
    await s.router.from_session(alice, xml("<message to='romeo@example.net'/>"))
    assert alice.sent == [] and taken[0].to == JID.parse("romeo@example.net")


@pytest.mark.parametrize("stanza", [
    "<message type='error' to='romeo@example.net'/>",
    "<message type='error' to='nobody@localhost'/>",
    "<message type='error' to='bob@localhost/gone'/>",
    "<presence type='error' to='romeo@example.net'/>",
    "<iq type='error' id='e' to='romeo@example.net'/>",
])
async def test_errors_are_never_bounced(s: Services, stanza: str) -> None:
    alice = bind(s, "alice@localhost/pc")
    await s.router.from_session(alice, xml(stanza))
    assert alice.sent == []


async def test_message_to_unknown_account_bounces(s: Services) -> None:
    alice = bind(s, "alice@localhost/pc")
    await s.router.from_session(alice, xml("<message to='nobody@localhost' id='x'/>"))
    assert condition(alice.one()) == "service-unavailable"


async def test_message_to_offline_account_is_offered_to_offline_storage(s: Services) -> None:
    alice = bind(s, "alice@localhost/pc")
    stored: list[events.ToAccount] = []

    async def offline(ev: events.ToAccount) -> bool:
        stored.append(ev)
        return True

    s.hooks.add(events.MESSAGE_OFFLINE, offline)
    await s.router.from_session(alice, xml("<message to='bob@localhost'><body>b</body>"
                                           "</message>"))
    assert alice.sent == [] and stored[0].to == JID.parse("bob@localhost")


async def test_unknown_presence_type_is_bad_request(s: Services) -> None:
    alice = bind(s, "alice@localhost/pc")
    await s.router.from_session(alice, xml("<presence type='sleeping' to='bob@localhost'/>"))
    assert condition(alice.one()) == "bad-request"


async def test_the_routed_stanza_is_a_new_value(s: Services) -> None:
    alice, bob = bind(s, "alice@localhost/pc"), bind(s, "bob@localhost/phone")
    original = xml("<message from='evil@localhost' to='bob@localhost/phone'/>")
    await s.router.from_session(alice, original)
    assert original.attrs["from"] == "evil@localhost"  # untouched
    assert bob.one().attrs["from"] == "alice@localhost/pc"


async def test_bounce_goes_back_through_the_router(s: Services) -> None:
    alice = bind(s, "alice@localhost/pc")
    stanza = xml("<message from='alice@localhost/pc' to='bob@localhost' id='b1'/>")
    await s.router.bounce(stanza, StanzaError("not-acceptable", "no"))
    reply = alice.one()
    assert (reply.attrs["id"], condition(reply)) == ("b1", "not-acceptable")
    await s.router.bounce(reply, StanzaError("not-acceptable"))  # an error: never bounced
    assert alice.sent == []


# -- the fast paths of RFC 6121 §8.5 delivery ---------------------------------------------

@pytest.mark.parametrize("stanza", [
    "<message to='bob@localhost/phone' type='chat' id='c'><body>x</body></message>",
    "<message to='bob@localhost/phone' type='groupchat' id='g'/>",
    "<iq to='bob@localhost/phone' type='result' id='r'/>",
    "<presence to='bob@localhost/phone' type='unavailable' id='u'/>",
])
async def test_a_bound_full_jid_gets_whatever_it_is_even_before_presence(
        s: Services, stanza: str) -> None:
    """§8.5.3.1: the resource exists; availability does not matter."""
    alice, bob = bind(s, "alice@localhost/pc"), bind(s, "bob@localhost/phone")
    await s.router.from_session(alice, xml(stanza))
    assert bob.one().attrs["to"] == "bob@localhost/phone" and alice.sent == []


async def test_presence_to_a_bare_jid_goes_to_available_resources_only(s: Services) -> None:
    alice = bind(s, "alice@localhost/pc")
    on, off = (bind(s, "bob@localhost/on", available=True),
               bind(s, "bob@localhost/off", available=False))
    await s.router.from_session(alice, xml("<presence to='bob@localhost'/>"))
    assert on.one().attrs["from"] == "alice@localhost/pc" and off.sent == []


async def test_presence_to_an_offline_bare_jid_needs_no_storage(
        s: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_storage(user: str) -> bool:
        raise AssertionError("storage read for a presence nobody can receive")

    monkeypatch.setattr(s.storage.accounts, "exists", no_storage)
    alice = bind(s, "alice@localhost/pc")
    for stanza in ("<presence to='bob@localhost'/>", "<presence to='nobody@localhost'/>",
                   "<presence type='unavailable' to='bob@localhost'/>",
                   "<presence type='unavailable' to='bob@localhost/gone'/>",
                   "<presence to='nobody@localhost/gone'/>"):
        await s.router.from_session(alice, xml(stanza))
    assert alice.sent == []


async def test_the_from_account_event_names_the_client_session(s: Services) -> None:
    alice, bob = bind(s, "alice@localhost/pc"), bind(s, "bob@localhost/phone")
    seen: list[events.FromAccount] = []

    async def watch(ev: events.FromAccount) -> bool:
        seen.append(ev)
        return False

    s.hooks.add(events.STANZA_FROM_ACCOUNT, watch)
    await s.router.from_session(alice, xml("<message to='bob@localhost/phone'/>"))
    await s.router.route_from_account(xml("<message from='alice@localhost' "
                                          "to='bob@localhost/phone'/>"),
                                      JID.parse("bob@localhost/phone"), alice.bare)
    assert [ev.session for ev in seen] == [alice, None]
    assert len(bob.sent) == 2


async def test_stanza_hooks_are_fired_with_the_stanza_kind(s: Services) -> None:
    alice, bob = bind(s, "alice@localhost/pc"), bind(s, "bob@localhost/phone", available=True)
    seen: list[str] = []

    async def presence_only(ev: events.ToAccount) -> bool:
        seen.append(ev.stanza.name)
        return True

    s.hooks.add(events.STANZA_TO_ACCOUNT, presence_only, kinds=("presence",))
    s.hooks.add(events.STANZA_FROM_SESSION, presence_only, kinds=("presence",))
    s.hooks.add(events.STANZA_FROM_ACCOUNT, presence_only, kinds=("presence",))
    await s.router.from_session(alice, xml("<message to='bob@localhost/phone' id='m'/>"))
    assert seen == [] and bob.one().attrs["id"] == "m"
    await s.router.route_from_account(xml("<presence from='alice@localhost/pc' "
                                          "to='bob@localhost'/>"),
                                      JID.parse("bob@localhost"), alice.jid)
    await s.router.deliver_to_account(xml("<presence from='alice@localhost/pc' "
                                          "to='bob@localhost'/>"),
                                      JID.parse("bob@localhost"), alice.jid)
    assert seen == ["presence", "presence"] and bob.sent == []
