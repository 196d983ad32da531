"""IqDispatcher (RFC 6120 §8.2.3, §8.4): exactly one answer to every get/set, never one to a
result or error; handlers' mistakes become internal-server-error, not silence."""

from __future__ import annotations

import logging

import pytest

from blether import ns
from blether.core.iq import IqDispatcher, IqRequest, IqTracker, Target
from blether.errors import StanzaError
from blether.jid import JID
from blether.xml.element import Element

ALICE = JID.parse("alice@localhost/pc")
HOST = JID.parse("localhost")
NS = "urn:example:test"


def iq(itype: str = "get", *children: Element, iq_id: str = "q1") -> Element:
    attrs = {"type": itype, "id": iq_id, "from": str(ALICE), "to": "localhost"}
    return Element("iq", ns.CLIENT, attrs, list(children) or [Element("query", NS)])


def cond(reply: Element | None) -> str | None:
    assert reply is not None
    assert reply.attrs["type"] == "error" and reply.attrs["id"] == "q1"
    assert reply.attrs["to"] == str(ALICE) and reply.attrs["from"] == "localhost"
    err = reply.find("error", ns.CLIENT)
    assert err is not None
    [condition] = [c for c in err.elements() if c.xmlns == ns.STANZA_ERRORS
                   and c.name != "text"]
    return condition.name


async def dispatch(d: IqDispatcher, stanza: Element, target: Target = Target.HOST
                   ) -> Element | None:
    return await d.dispatch(stanza, ALICE, HOST, target, None)


async def test_handler_result_is_the_answer() -> None:
    d = IqDispatcher()
    seen: list[IqRequest] = []

    async def handler(req: IqRequest) -> Element:
        seen.append(req)
        return req.result(Element("query", NS, None, ["ok"]))

    d.register("get", NS, Target.HOST, handler)
    reply = await dispatch(d, iq())
    assert reply is not None and reply.attrs == {"type": "result", "id": "q1",
                                                 "to": str(ALICE), "from": "localhost"}
    assert reply.find_text("query", NS) == "ok"
    req = seen[0]
    assert (req.type, req.payload.name, req.sender, req.to) == ("get", "query", ALICE, HOST)
    assert not req.is_self


async def test_is_self_for_the_own_account() -> None:
    d = IqDispatcher()
    seen: list[IqRequest] = []

    async def handler(req: IqRequest) -> Element:
        seen.append(req)
        return req.result()

    d.register("get", NS, Target.ACCOUNT, handler)
    await d.dispatch(iq(), ALICE, ALICE.bare, Target.ACCOUNT, None)
    assert seen[0].is_self


async def test_handlers_are_per_type_and_target() -> None:
    d = IqDispatcher()

    async def handler(req: IqRequest) -> Element:
        return req.result()

    d.register("get", NS, Target.HOST, handler)
    assert cond(await dispatch(d, iq("set"))) == "service-unavailable"
    assert cond(await dispatch(d, iq(), Target.ACCOUNT)) == "service-unavailable"
    assert d.handles(NS, Target.HOST) and not d.handles(NS, Target.ACCOUNT)


async def test_unknown_payload_is_service_unavailable() -> None:
    assert cond(await dispatch(IqDispatcher(), iq())) == "service-unavailable"


@pytest.mark.parametrize("children", [[], [Element("a", NS), Element("b", NS)]])
async def test_not_exactly_one_child_is_bad_request(children: list[Element]) -> None:
    stanza = Element("iq", ns.CLIENT, {"type": "get", "id": "q1", "from": str(ALICE),
                                       "to": "localhost"}, list(children))
    assert cond(await dispatch(IqDispatcher(), stanza)) == "bad-request"


async def test_stanza_error_from_handler_is_the_answer() -> None:
    d = IqDispatcher()

    async def handler(req: IqRequest) -> Element:
        raise StanzaError("item-not-found", "no such thing")

    d.register("get", NS, Target.HOST, handler)
    reply = await dispatch(d, iq())
    assert cond(reply) == "item-not-found"
    assert reply is not None and reply.find("query", NS) is not None  # payload echoed


async def test_crashing_handler_gets_internal_server_error_and_a_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    d = IqDispatcher()

    async def handler(req: IqRequest) -> Element:
        raise KeyError("oops")

    d.register("set", NS, Target.HOST, handler)
    with caplog.at_level(logging.ERROR, logger="blether.core.iq"):
        assert cond(await dispatch(d, iq("set"))) == "internal-server-error"
    assert NS in caplog.text and "KeyError" in caplog.text


@pytest.mark.parametrize("bad", [
    Element("message", ns.CLIENT, {"type": "chat"}),
    Element("iq", ns.CLIENT, {"type": "get", "id": "q1"}),
    Element("iq", ns.CLIENT, {"type": "set", "id": "q1"}),
])
async def test_handler_returning_a_non_reply(bad: Element,
                                             caplog: pytest.LogCaptureFixture) -> None:
    d = IqDispatcher()

    async def handler(req: IqRequest) -> Element:
        return bad

    d.register("get", NS, Target.HOST, handler)
    with caplog.at_level(logging.ERROR, logger="blether.core.iq"):
        assert cond(await dispatch(d, iq())) == "internal-server-error"
    assert "non-reply" in caplog.text


@pytest.mark.parametrize("itype", ["result", "error"])
async def test_results_and_errors_get_no_answer(itype: str) -> None:
    d = IqDispatcher()
    called: list[IqRequest] = []

    async def handler(req: IqRequest) -> Element:
        called.append(req)
        return req.result()

    d.register("get", NS, Target.HOST, handler)
    assert await dispatch(d, iq(itype)) is None
    assert called == []


async def test_responses_resolve_the_servers_own_requests() -> None:
    d = IqDispatcher()
    iq_id = d.tracker.new_id()
    fut = d.tracker.expect(iq_id)
    response = iq("result", iq_id=iq_id)
    assert await dispatch(d, response) is None
    assert fut.done() and fut.result() is response
    # A second response with the same id is not matched again.
    assert d.tracker.resolve(response) is False


async def test_tracker_ids_are_unique_and_unknown_ids_are_ignored() -> None:
    t = IqTracker()
    assert len({t.new_id() for _ in range(100)}) == 100
    assert t.resolve(iq("result", iq_id="never-sent")) is False


def test_registration_rules() -> None:
    d = IqDispatcher()

    async def handler(req: IqRequest) -> Element:
        return req.result()

    with pytest.raises(ValueError):
        d.register("result", NS, Target.HOST, handler)
    d.register("get", NS, Target.HOST, handler)
    with pytest.raises(ValueError):
        d.register("get", NS, Target.HOST, handler)


async def test_remove_owner() -> None:
    d = IqDispatcher()
    owner = object()

    async def handler(req: IqRequest) -> Element:
        return req.result()

    d.register("get", NS, Target.HOST, handler, owner=owner)
    d.remove_owner(owner)
    assert cond(await dispatch(d, iq())) == "service-unavailable"
    d.register("get", NS, Target.HOST, handler)  # the slot is free again
