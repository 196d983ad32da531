"""Corpus: negotiation abuse (SECURITY.md points 6-7; RFC 6120 §5-§7, RFC 5802, RFC 4616):
SASL with bad encodings, unknown or missing mechanisms, aborts, authzid tricks, oversized
payloads and out-of-order elements; stanzas before authentication."""

from __future__ import annotations

import base64
from collections.abc import Callable

from adversarial.corpus import Case, Ctx, SaslFail, Stage, StanzaErr, StreamErr

T = Stage.PRE_TLS
A = Stage.PRE_AUTH
B = Stage.POST_BIND
SASL = b"urn:ietf:params:xml:ns:xmpp-sasl"


def auth(mech: bytes, payload: bytes | None) -> bytes:
    body = b"" if payload is None else (base64.b64encode(payload) or b"=")
    return b"<auth xmlns='" + SASL + b"' mechanism='" + mech + b"'>" + body + b"</auth>"


def auth_of(mech: bytes, payload: str) -> Callable[[Ctx], bytes]:
    """Bytes built from the context: `payload` may name {user} and {victim_bare}."""

    def build(ctx: Ctx) -> bytes:
        return auth(mech, ctx.fill(payload.encode()))

    return build


SCRAM_FIRST = "n,,n={user},r=abcdefghijklmnop"

CASES = [
    Case("bad-base64", A, b"<auth xmlns='" + SASL + b"' mechanism='PLAIN'>!!not*base64</auth>",
         SaslFail("incorrect-encoding"), "sasl"),
    Case("base64-with-bad-padding", A, b"<auth xmlns='" + SASL + b"' mechanism='PLAIN'>AGE</auth>",
         SaslFail("incorrect-encoding"), "sasl"),
    Case("unknown-mechanism", A, auth(b"DIGEST-MD5", b"x"), SaslFail("invalid-mechanism"),
         "sasl"),
    Case("missing-mechanism", A, b"<auth xmlns='" + SASL + b"'>AGEAYg==</auth>",
         SaslFail("invalid-mechanism"), "sasl"),
    Case("lowercase-mechanism", A, auth(b"plain", b"\0a\0b"), SaslFail("invalid-mechanism"),
         "sasl"),
    Case("abort-mid-exchange", A, lambda ctx: (
        auth(b"SCRAM-SHA-256", ctx.fill(SCRAM_FIRST.encode())) + b"<abort xmlns='" + SASL +
        b"'/>"),
         SaslFail("aborted", after_challenge=True), "sasl"),
    Case("abort-with-nothing-under-way", A, b"<abort xmlns='" + SASL + b"'/>",
         SaslFail("aborted"), "sasl"),
    Case("response-with-nothing-under-way", A, b"<response xmlns='" + SASL + b"'>AAAA</response>",
         SaslFail("malformed-request"), "sasl"),
    Case("second-auth-during-exchange", A, lambda ctx: (
        auth(b"SCRAM-SHA-256", ctx.fill(SCRAM_FIRST.encode())) +
        auth(b"SCRAM-SHA-1", ctx.fill(SCRAM_FIRST.encode()))),
         SaslFail("malformed-request", after_challenge=True), "sasl"),
    Case("plain-authzid-of-another-user", A,
         auth_of(b"PLAIN", "{victim_bare}\0{user}\0secret"),
         SaslFail("invalid-authzid"), "sasl"),
    Case("scram-authzid-of-another-user", A,
         auth_of(b"SCRAM-SHA-256", "n,a={victim_bare},n={user},r=abc"),
         SaslFail("invalid-authzid"), "sasl"),
    Case("plain-wrong-password", A, auth_of(b"PLAIN", "\0{user}\0wrong"),
         SaslFail("not-authorized"), "sasl"),
    Case("plain-not-utf8", A, auth(b"PLAIN", b"\0\xff\xfe\0secret"),
         SaslFail("malformed-request"), "sasl"),
    Case("plain-no-separators", A, auth(b"PLAIN", b"A" * 6000),
         SaslFail("malformed-request"), "sasl"),
    Case("scram-huge-username", A, auth(b"SCRAM-SHA-256", b"n,,n=" + b"u" * 5000 + b",r=abc"),
         SaslFail("not-authorized"), "sasl"),
    Case("sasl-payload-over-limit", A, auth(b"PLAIN", b"\0" + b"u" * 9000 + b"\0x"),
         StreamErr("policy-violation"), "sasl"),
    Case("scram-y-flag-downgrade", A,
         auth_of(b"SCRAM-SHA-256", "y,,n={user},r=abc"),
         SaslFail("not-authorized"), "sasl"),
    Case("scram-plus-tls-unique-on-tls13", A,
         auth_of(b"SCRAM-SHA-256-PLUS", "p=tls-unique,,n={user},r=abc"),
         SaslFail("malformed-request"), "sasl"),
    Case("scram-no-nonce", A, auth_of(b"SCRAM-SHA-256", "n,,n={user}"),
         SaslFail("malformed-request"), "sasl"),
    Case("client-sends-success", A, b"<success xmlns='" + SASL + b"'/>",
         StreamErr("unsupported-stanza-type"), "sasl"),
    Case("auth-before-tls", T, auth_of(b"PLAIN", "\0{user}\0secret"),
         StreamErr("not-authorized"), "starttls"),
    Case("auth-after-bind", B, auth_of(b"PLAIN", "\0{user}\0secret"),
         StreamErr("unsupported-stanza-type"), "sasl"),
    Case("message-before-auth", A, b"<message to='{victim}'><body>hi</body></message>",
         StreamErr("not-authorized"), "pre-auth"),
    Case("presence-before-auth", A, b"<presence/>", StreamErr("not-authorized"), "pre-auth"),
    Case("iq-before-auth", A, b"<iq type='get' id='pa' to='{victim_bare}'>"
         b"<query xmlns='urn:example:x'/></iq>", StanzaErr("service-unavailable", "pa"),
         "pre-auth"),
    Case("unknown-element-before-auth", A, b"<hello xmlns='urn:example:x'/>",
         StreamErr("unsupported-stanza-type"), "pre-auth"),
]
