"""XEP-0077 In-Band Registration, in memory: the pre-authentication hook fired as the c2s
transport will fire it, password change and account removal through the real router."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from blether.core import events
from blether.features.register import RegisterOptions
from blether.features.register.accounts import ACCOUNT_REMOVED, AccountEvent
from blether.features.register.throttle import RegistrationThrottle
from blether.storage import RosterItem
from blether.xml.element import Element
from features.services_kit import Kit, condition, xml

R = "jabber:iq:register"
X = "jabber:x:data"


async def make(**options: Any) -> Kit:
    return await Kit.create(["register"], {"register": options})


@pytest.fixture
async def kit() -> AsyncIterator[Kit]:
    k = await make(allow_registration=True)
    yield k
    await k.close()


class PreAuth:
    """One unauthenticated connection, as the c2s driver will present it to the hook."""

    def __init__(self, kit: Kit, ip: str = "192.0.2.1", secure: bool = True) -> None:
        self.kit = kit
        self.ip = ip
        self.secure = secure
        self.sent: list[Element] = []

    async def iq(self, text: str) -> tuple[bool, Element | None]:
        ev = events.PreAuthIq(xml(text), self.ip, "localhost", self.secure, self.sent.append)
        handled = await self.kit.s.hooks.fire(events.PRE_AUTH_IQ, ev)
        return handled, (self.sent.pop() if self.sent else None)

    async def query(self, text: str) -> Element:
        handled, reply = await self.iq(text)
        assert handled and reply is not None
        return reply


def register_set(username: str, password: str = "Calliope", iq_id: str = "reg2") -> str:
    return (f"<iq type='set' id='{iq_id}'><query xmlns='{R}'><username>{username}</username>"
            f"<password>{password}</password></query></iq>")


# -- §3.1 registration before authentication ------------------------------------------
async def test_registration_fields_are_offered(kit: Kit) -> None:
    reply = await PreAuth(kit).query(f"<iq type='get' id='reg1' to='localhost'>"
                                     f"<query xmlns='{R}'/></iq>")
    assert reply.attrs["type"] == "result" and reply.attrs["id"] == "reg1"
    query = reply.find("query", R)
    assert query is not None
    assert query.find("username", R) is not None and query.find("password", R) is not None
    assert query.find("instructions", R) is not None
    form = query.find("x", X)
    assert form is not None and form.attrs["type"] == "form"
    assert {f.attrs["var"] for f in form.find_all("field", X)} == \
        {"FORM_TYPE", "username", "password"}


async def test_register_then_log_in(kit: Kit) -> None:
    reply = await PreAuth(kit).query(register_set("bill"))
    assert reply.attrs["type"] == "result" and reply.attrs["id"] == "reg2"
    assert await kit.s.auth.verify_password("bill@localhost", "Calliope")


async def test_register_with_a_data_form(kit: Kit) -> None:
    reply = await PreAuth(kit).query(
        f"<iq type='set' id='f'><query xmlns='{R}'><x xmlns='{X}' type='submit'>"
        f"<field var='FORM_TYPE'><value>{R}</value></field>"
        "<field var='username'><value>juliet</value></field>"
        "<field var='password'><value>R0m30</value></field></x></query></iq>")
    assert reply.attrs["type"] == "result"
    assert await kit.s.auth.verify_password("juliet@localhost", "R0m30")


async def test_username_conflict(kit: Kit) -> None:
    await kit.account("bill@localhost")
    reply = await PreAuth(kit).query(register_set("Bill", "m1cro$oft"))  # prepared: bill
    assert condition(reply) == "conflict"
    assert reply.find("query", R) is None   # the password is not echoed back
    assert await kit.s.auth.verify_password("bill@localhost", "secret")


@pytest.mark.parametrize("query", [
    "<username>bill</username>",
    "<username>bill</username><password/>",
    "<password>Calliope</password>",
    "<username/><password>Calliope</password>",
])
async def test_missing_information_is_not_acceptable(kit: Kit, query: str) -> None:
    reply = await PreAuth(kit).query(f"<iq type='set' id='r'><query xmlns='{R}'>{query}"
                                     "</query></iq>")
    assert condition(reply) == "not-acceptable"
    assert await kit.s.storage.accounts.count("localhost") == 0


async def test_invalid_username_is_not_acceptable(kit: Kit) -> None:
    reply = await PreAuth(kit).query(register_set("bad@name"))
    assert condition(reply) == "not-acceptable"


async def test_remove_before_login_is_unexpected(kit: Kit) -> None:
    reply = await PreAuth(kit).query(f"<iq type='set' id='u'><query xmlns='{R}'><remove/>"
                                     "</query></iq>")
    assert condition(reply) == "unexpected-request"


async def test_throttle_one_registration_per_ip() -> None:
    kit = await make(allow_registration=True, min_seconds_between_registrations_per_ip=600)
    try:
        assert (await PreAuth(kit, "192.0.2.7").query(register_set("a"))).attrs["type"] \
            == "result"
        reply = await PreAuth(kit, "192.0.2.7").query(register_set("b"))
        assert condition(reply) == "policy-violation"
        assert reply.find("error").attrs["type"] == "wait"  # type: ignore[union-attr]
        # Another address is not affected; a failed attempt does not use the slot.
        assert condition(await PreAuth(kit, "192.0.2.8").query(register_set("a"))) == "conflict"
        assert (await PreAuth(kit, "192.0.2.8").query(register_set("c"))).attrs["type"] \
            == "result"
    finally:
        await kit.close()


async def test_throttle_exemption() -> None:
    kit = await make(allow_registration=True, throttle_exempt_ips=["127.0.0.0/8", "::1"])
    try:
        for name in ("a", "b"):
            reply = await PreAuth(kit, "127.0.0.1").query(register_set(name))
            assert reply.attrs["type"] == "result"
    finally:
        await kit.close()


def test_throttle_expires_and_releases() -> None:
    throttle = RegistrationThrottle(600, ["10.0.0.0/8"])
    assert throttle.acquire("192.0.2.1", now=1000) == 0
    assert throttle.acquire("192.0.2.1", now=1100) == pytest.approx(500)
    assert throttle.acquire("192.0.2.1", now=1600) == 0      # interval over
    throttle.release("192.0.2.1")
    assert throttle.acquire("192.0.2.1", now=1601) == 0      # released slot
    assert throttle.acquire("10.1.2.3", now=1601) == 0
    assert throttle.acquire("10.1.2.3", now=1602) == 0        # exempt network


async def test_registration_off_by_default() -> None:
    kit = await make()
    try:
        reply = await PreAuth(kit).query(f"<iq type='get' id='g'><query xmlns='{R}'/></iq>")
        assert condition(reply) == "service-unavailable"   # §3.1 MUST
        reply = await PreAuth(kit).query(register_set("bill"))
        assert condition(reply) == "service-unavailable"
        features = events.StreamFeatures(False, True, "localhost")
        await kit.s.hooks.notify(events.COLLECT_FEATURES, features)
        assert features.features == []
    finally:
        await kit.close()


async def test_registration_needs_encryption(kit: Kit) -> None:
    reply = await PreAuth(kit, secure=False).query(register_set("bill"))
    assert condition(reply) == "policy-violation"


async def test_stream_feature_only_before_auth_and_over_tls(kit: Kit) -> None:
    for authenticated, secure, offered in ((False, True, True), (False, False, False),
                                           (True, True, False)):
        features = events.StreamFeatures(authenticated, secure, "localhost")
        await kit.s.hooks.notify(events.COLLECT_FEATURES, features)
        got = [f for f in features.features if f.name == "register"]
        assert bool(got) is offered, (authenticated, secure)
        if got:
            assert got[0].xmlns == "http://jabber.org/features/iq-register"


async def test_other_pre_auth_iqs_are_left_to_the_core(kit: Kit) -> None:
    handled, reply = await PreAuth(kit).iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/>"
                                           "</iq>")
    assert not handled and reply is None


def test_contradicting_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="contradict"):
        RegisterOptions(allow_registration=True, allow_password_change_only=True)


async def test_tombstone_blocks_reregistration(kit: Kit) -> None:
    bill = await kit.login("bill@localhost/globe")
    await kit.query(bill, f"<iq type='set' id='unreg1'><query xmlns='{R}'><remove/></query></iq>")
    reply = await PreAuth(kit).query(register_set("bill"))
    assert condition(reply) == "conflict"


# -- after authentication -----------------------------------------------------------------
async def test_registered_entity_gets_registered_element(kit: Kit) -> None:
    bill = await kit.login("bill@localhost/globe")
    for to in ("", " to='localhost'"):
        reply = await kit.query(bill, f"<iq type='get' id='reg1'{to}><query xmlns='{R}'/></iq>")
        query = reply.find("query", R)
        assert query is not None and query.find("registered", R) is not None
        assert query.find_text("username", R) == "bill"
        assert not query.find_text("password", R)


async def test_password_change(kit: Kit) -> None:
    # §3.3 "Password Change".
    bill = await kit.login("bill@localhost/globe")
    reply = await kit.query(bill, f"<iq type='set' to='localhost' id='change1'>"
                                  f"<query xmlns='{R}'><username>bill</username>"
                                  "<password>newpass</password></query></iq>")
    assert reply.attrs["type"] == "result"
    assert await kit.s.auth.verify_password("bill@localhost", "newpass")


async def test_password_change_with_form_and_no_to(kit: Kit) -> None:
    bill = await kit.login("bill@localhost/globe")
    reply = await kit.query(bill, f"<iq type='set' id='change2'><query xmlns='{R}'>"
                                  f"<x xmlns='{X}' type='submit'>"
                                  f"<field var='FORM_TYPE'><value>{R}:changepassword</value>"
                                  "</field><field var='username'><value>bill@localhost</value>"
                                  "</field><field var='password'><value>groundlings</value>"
                                  "</field></x></query></iq>")
    assert reply.attrs["type"] == "result"
    assert await kit.s.auth.verify_password("bill@localhost", "groundlings")


@pytest.mark.parametrize("query", [
    "<username>bill</username><password/>",          # §3.3: MUST keep the old password
    "<password>newpass</password>",                   # username required
    "<username>juliet</username><password>x</password>",   # someone else's account
])
async def test_bad_password_changes_keep_the_password(kit: Kit, query: str) -> None:
    await kit.account("juliet@localhost")
    bill = await kit.login("bill@localhost/globe")
    reply = await kit.query(bill, f"<iq type='set' id='c'><query xmlns='{R}'>{query}</query>"
                                  "</iq>")
    assert condition(reply) == "bad-request"
    assert reply.find("query", R) is None    # §3.3: SHOULD NOT return the original XML
    assert await kit.s.auth.verify_password("bill@localhost", "secret")
    assert await kit.s.auth.verify_password("juliet@localhost", "secret")


async def test_register_iq_to_another_account_is_forbidden(kit: Kit) -> None:
    await kit.account("juliet@localhost")
    bill = await kit.login("bill@localhost/globe")
    reply = await kit.query(bill, f"<iq type='set' to='juliet@localhost' id='c'>"
                                  f"<query xmlns='{R}'><remove/></query></iq>")
    assert condition(reply) == "forbidden"
    assert await kit.s.storage.accounts.exists("juliet@localhost")


async def test_cancel_registration(kit: Kit) -> None:
    # §3.2: result first, then not-authorized stream error on every session, data purged.
    removed: list[AccountEvent] = []

    async def record(ev: AccountEvent) -> None:
        removed.append(ev)

    kit.s.hooks.add(ACCOUNT_REMOVED, record)
    bill = await kit.login("bill@localhost/globe")
    other = await kit.login("bill@localhost/theatre")
    await kit.s.storage.kv.set("bill@localhost", "vcard", "vcard", "<vCard xmlns='vcard-temp'/>")
    reply = await kit.query(bill, f"<iq type='set' id='unreg1'><query xmlns='{R}'><remove/>"
                                  "</query></iq>")
    assert reply.attrs["type"] == "result" and reply.attrs["id"] == "unreg1"
    for _ in range(5):
        await asyncio.sleep(0)
    for session in (bill, other):
        assert session.closed
        assert session.close_error is not None
        assert session.close_error.condition == "not-authorized"
    assert not await kit.s.storage.accounts.exists("bill@localhost")
    assert await kit.s.storage.kv.keys("bill@localhost", "vcard") == []
    assert [(str(e.user), e.origin) for e in removed] == [("bill@localhost", "in-band")]


async def test_remove_must_be_alone(kit: Kit) -> None:
    bill = await kit.login("bill@localhost/globe")
    reply = await kit.query(bill, f"<iq type='set' id='u'><query xmlns='{R}'><remove/>"
                                  "<username>bill</username></query></iq>")
    assert condition(reply) == "bad-request"
    assert await kit.s.storage.accounts.exists("bill@localhost")


async def test_password_change_only_mode() -> None:
    kit = await make(allow_password_change_only=True)
    try:
        bill = await kit.login("bill@localhost/globe")
        reply = await kit.query(bill, f"<iq type='set' id='u'><query xmlns='{R}'><remove/>"
                                      "</query></iq>")
        assert condition(reply) == "not-allowed"
        reply = await kit.query(bill, f"<iq type='set' id='c'><query xmlns='{R}'>"
                                      "<username>bill</username><password>n</password>"
                                      "</query></iq>")
        assert reply.attrs["type"] == "result"
    finally:
        await kit.close()


async def test_removal_cancels_subscriptions_of_contacts() -> None:
    # XEP-0077 §3.2: "the server SHOULD also cancel all existing presence subscriptions".
    kit = await Kit.create(["register", "roster"])
    try:
        roster = kit.s.storage.roster
        await kit.account("bill@localhost")
        await kit.account("anne@localhost")
        await roster.put("bill@localhost", RosterItem("anne@localhost", subscription="both"))
        await roster.put("anne@localhost", RosterItem("bill@localhost", subscription="both"))
        bill = await kit.login("bill@localhost/globe")
        reply = await kit.query(bill, f"<iq type='set' id='u'><query xmlns='{R}'><remove/>"
                                      "</query></iq>")
        assert reply.attrs["type"] == "result"
        item = await roster.get("anne@localhost", "bill@localhost")
        assert item is not None and item.subscription == "none"
        assert await roster.get_all("bill@localhost") == ([], 0)
    finally:
        await kit.close()
