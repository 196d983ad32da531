"""Stream errors (RFC 6120 §4.9), stanza errors (§8.3) and SASL failures (§6.5) as XML."""

from __future__ import annotations

import pytest

from blether import ns
from blether.errors import (
    DEFAULT_ERROR_TYPE,
    STREAM_CONDITIONS,
    SASLFailure,
    StanzaError,
    StreamError,
)
from blether.stanza import can_bounce, error_reply
from blether.xml.element import Element, serialize

# RFC 6120 §4.9.3.1-§4.9.3.25
RFC_STREAM_CONDITIONS = {
    "bad-format", "bad-namespace-prefix", "conflict", "connection-timeout", "host-gone",
    "host-unknown", "improper-addressing", "internal-server-error", "invalid-from",
    "invalid-namespace", "invalid-xml", "not-authorized", "not-well-formed",
    "policy-violation", "remote-connection-failed", "reset", "resource-constraint",
    "restricted-xml", "see-other-host", "system-shutdown", "undefined-condition",
    "unsupported-encoding", "unsupported-feature", "unsupported-stanza-type",
    "unsupported-version",
}

# RFC 6120 §8.3.3.1-§8.3.3.22 and the type each says the error SHOULD carry (where it gives
# a choice, the first one named).
RFC_STANZA_TYPES = [
    ("bad-request", "modify"), ("conflict", "cancel"), ("feature-not-implemented", "cancel"),
    ("forbidden", "auth"), ("gone", "cancel"),
    ("internal-server-error", "cancel"),
    ("item-not-found", "cancel"), ("jid-malformed", "modify"), ("not-acceptable", "modify"),
    ("not-allowed", "cancel"), ("not-authorized", "auth"), ("policy-violation", "modify"),
    ("recipient-unavailable", "wait"), ("redirect", "modify"),
    ("registration-required", "auth"), ("remote-server-not-found", "cancel"),
    ("remote-server-timeout", "wait"), ("resource-constraint", "wait"),
    ("service-unavailable", "cancel"), ("subscription-required", "auth"),
    ("undefined-condition", "cancel"), ("unexpected-request", "wait"),
]

# RFC 6120 §6.5.1-§6.5.11
RFC_SASL_CONDITIONS = {
    "aborted", "account-disabled", "credentials-expired", "encryption-required",
    "incorrect-encoding", "invalid-authzid", "invalid-mechanism", "malformed-request",
    "mechanism-too-weak", "not-authorized", "temporary-auth-failure",
}


def test_every_stream_condition_and_only_those() -> None:
    assert set(STREAM_CONDITIONS) == RFC_STREAM_CONDITIONS


def test_every_stanza_condition_and_only_those() -> None:
    assert len(DEFAULT_ERROR_TYPE) == 22
    named = {getattr(p, "values", p)[0] for p in RFC_STANZA_TYPES}
    assert named == set(DEFAULT_ERROR_TYPE)


def test_every_sasl_condition_and_only_those() -> None:
    assert set(SASLFailure.CONDITIONS) == RFC_SASL_CONDITIONS


@pytest.mark.parametrize(("condition", "error_type"), RFC_STANZA_TYPES)
def test_default_stanza_error_types(condition: str, error_type: str) -> None:
    assert StanzaError(condition).type == error_type


@pytest.mark.parametrize("cls", [StreamError, StanzaError, SASLFailure])
def test_unknown_conditions_are_programming_errors(cls: type[Exception]) -> None:
    with pytest.raises(ValueError):
        cls("no-such-condition")


def test_stream_error_element() -> None:
    el = StreamError("host-unknown", "no such host").to_element()
    assert serialize(el, ns.CLIENT, prefixes={ns.STREAMS: "stream"}) == (
        "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>no such host</text>"
        "</stream:error>")


def test_stream_error_with_application_condition() -> None:
    app = Element("stanza-too-big", ns.XMPP_ERRORS)
    el = StreamError("policy-violation", app=app).to_element()
    assert [(c.name, c.xmlns) for c in el.elements()] == [
        ("policy-violation", ns.STREAM_ERRORS), ("stanza-too-big", ns.XMPP_ERRORS)]


def test_stanza_error_element() -> None:
    el = StanzaError("item-not-found", "gone fishing", by="localhost").to_element()
    assert serialize(el) == (
        "<error type='cancel' by='localhost'>"
        "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>gone fishing</text>"
        "</error>")


def test_stanza_error_type_override_and_content_namespace() -> None:
    el = StanzaError("policy-violation", type="wait").to_element(ns.SERVER)
    assert el.attrs["type"] == "wait" and el.xmlns == ns.SERVER


def test_sasl_failure_element() -> None:
    el = SASLFailure("not-authorized", "bad credentials").to_element()
    assert serialize(el, ns.CLIENT) == (
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/>"
        "<text xml:lang='en'>bad credentials</text></failure>")


def test_error_reply_swaps_addresses_and_keeps_the_id() -> None:
    # RFC 6120 §8.3.1
    iq = Element("iq", ns.CLIENT, {"type": "get", "id": "q1", "from": "a@localhost/r",
                                   "to": "b@localhost"},
                 [Element("query", "urn:example")])
    reply = error_reply(iq, StanzaError("service-unavailable"))
    assert reply.attrs == {"type": "error", "id": "q1", "to": "a@localhost/r",
                           "from": "b@localhost"}
    assert reply.find("query", "urn:example") is not None
    err = reply.find("error", ns.CLIENT)
    assert err is not None and err.find("service-unavailable", ns.STANZA_ERRORS) is not None
    assert iq.attrs["type"] == "get"  # the original is a value, untouched


def test_error_reply_never_carries_two_errors() -> None:
    msg = Element("message", ns.CLIENT, {"from": "a@localhost/r", "to": "b@localhost"},
                  [Element("error", ns.CLIENT, {"type": "cancel"})])
    reply = error_reply(msg, StanzaError("bad-request"))
    assert len(reply.find_all("error")) == 1


def test_error_reply_to_a_large_message_does_not_echo_its_body() -> None:
    body = Element("body", ns.CLIENT, None, ["x" * 200_000])
    msg = Element("message", ns.CLIENT, {"from": "a@localhost/r", "to": "b@localhost/gone"},
                  [body])
    reply = error_reply(msg, StanzaError("service-unavailable"))
    assert len(serialize(reply)) < 10_000


@pytest.mark.parametrize(("name", "stype", "bounce"), [
    ("message", None, True), ("message", "error", False), ("presence", "error", False),
    ("iq", "get", True), ("iq", "set", True), ("iq", "result", False), ("iq", "error", False),
])
def test_errors_and_results_are_never_answered(name: str, stype: str | None,
                                               bounce: bool) -> None:
    attrs = {"type": stype} if stype else {}
    assert can_bounce(Element(name, ns.CLIENT, attrs)) is bounce
