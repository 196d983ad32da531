"""Fuzz target: c2s stream negotiation — RFC 6120 §5 (STARTTLS), §6 (SASL), §7 (binding) —
through the sans-IO pieces `blether.stream.negotiation` and `blether.stream.sasl` (SCRAM,
RFC 5802/7677, through scramp; PLAIN, RFC 4616) with an in-memory account store.

`blether.transport.c2s.C2SConnection` is the asyncio driver of these pieces; `Negotiator`
below replays its decisions (which element is allowed at which stage, when a SCRAM exchange
starts, three failures end the stream) without sockets, so a finding here is a finding there.

Input layout: byte 0 is flags (bit 0: the stream is TLS-protected; bit 1: channel-binding
data is available; bit 2: raw SASL mode), byte 1 seeds the read sizes.

* Stream mode (bit 2 clear): the rest follows a canned stream header and is read through
  `XMPPStream` like a client's bytes after the stream opened.
* Raw SASL mode (bit 2 set): byte 2 picks the mechanism, the rest is split on 0xFF into the
  decoded SASL messages (initial response, then responses) — no base64 in the way, so the
  fuzzer mutates SCRAM/PLAIN syntax directly.

Properties: only the documented errors escape (`SASLFailure` from SASL, `StreamError` from
the stream; `JIDError` is caught where c2s catches it); every failure's condition is one of
RFC 6120 §6.5; everything the server would write is well-formed XML; and authentication
succeeds only for the one account with its one password, over PLAIN — the fuzzer cannot
compute a SCRAM proof, so a SCRAM success would be an authentication bypass.
"""

from __future__ import annotations

import re

from _common import Reader, chunks, fuzz_main, instrumented, run_sync

with instrumented():
    from blether import ns
    from blether.core.auth import make_credentials_sync
    from blether.errors import SASLFailure, StreamError
    from blether.jid import JID, JIDError, prep_resource
    from blether.storage.api import ScramCredentials
    from blether.stream import negotiation as neg
    from blether.stream.connection import StreamClosed, StreamOpened, XMPPStream
    from blether.stream.sasl import (
        PlainServerSession,
        SaslSession,
        SaslStep,
        ScramServerSession,
        mechanism_names,
    )
    from blether.xml.element import Element
    from blether.xml.parser import (
        POST_AUTH_C2S,
        PRE_AUTH,
        ParserLimits,
        XMLError,
        XMLStreamParser,
    )

HOST = "localhost"
USER, PASSWORD = "juliet", "r0m30myr0m30"
# 4096 is scramp's minimum; the count does not matter here and fewer iterations keep the
# (once per process) set-up fast.
CREDS = {c.mechanism: c for c in make_credentials_sync(PASSWORD, 4096, b"fuzz-salt-16byte")}
BINDINGS = {"tls-server-end-point": b"\x01" * 32, "tls-exporter": b"\x02" * 32}
SECRET = b"s" * 32
HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
ALL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS",
                  "PLAIN")
UNLIMITED = ParserLimits(1 << 40, 1 << 30, 1 << 30, 1 << 40, 1 << 30)
# Characters outside XML 1.0's Char production (§2.2).
NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


async def lookup(user: str, mechanism: str) -> ScramCredentials | None:
    return CREDS.get(mechanism) if user == f"{USER}@{HOST}" else None


async def check_password(user: str, password: str) -> bool:
    return user == f"{USER}@{HOST}" and password == PASSWORD


class Done(Exception):
    """The stream ended (as c2s would end it)."""


class Negotiator:
    """C2SConnection's negotiation decisions, sans IO."""

    def __init__(self, secure: bool, bindings: dict[str, bytes]) -> None:
        self.secure = secure
        self.bindings = bindings if secure else {}
        self.stream = XMPPStream(ns.CLIENT, frozenset({HOST}), PRE_AUTH)
        self.stage = neg.Stage.AUTH if secure else neg.Stage.START
        self.sasl: SaslSession | None = None
        self.failures = 0
        self.out: list[bytes] = []       # one stream's worth of server output
        self.user: str | None = None

    def receive(self, data: bytes) -> None:
        try:
            events = self.stream.receive(data)
        except StreamError as exc:
            self.end(exc)
        for ev in events:
            if isinstance(ev, StreamError):
                self.end(ev)
            elif isinstance(ev, StreamOpened):
                self.opened()
            elif isinstance(ev, StreamClosed):
                self.out.append(self.stream.footer())
                self.end(None)
            elif self.element(ev):
                return   # stream restart: the rest of this read is discarded (c2s does too)

    def end(self, error: StreamError | None) -> None:
        if error is not None:
            self.out.append(self.stream.error(error))
        self.flush()
        raise Done

    def flush(self) -> None:
        out, self.out = b"".join(self.out), []
        if not out:
            return
        try:
            XMLStreamParser(UNLIMITED).feed(out)
        except XMLError:
            # Known bug (crash-413e2dfd…, strict xfail in tests/reliability/
            # test_fuzz_corpus.py): SASL failure texts echo decoded client bytes, and the
            # serializer writes characters XML 1.0 does not allow. Remove once fixed.
            if not NOT_XML_CHAR.search(out.decode("utf-8", "replace")):
                raise

    def opened(self) -> None:
        self.out.append(self.stream.header(HOST))
        feats: list[Element] = []
        if self.stage is neg.Stage.START:
            feats.append(neg.starttls_feature(required=True))
        elif self.stage is neg.Stage.AUTH:
            feats.append(neg.mechanisms_feature(mechanism_names(self.bindings, self.secure,
                                                                False)))
            if self.bindings:
                feats.append(neg.channel_binding_feature(sorted(self.bindings)))
        else:
            feats.extend(neg.bind_features())
        self.out.append(self.stream.features(feats))

    def restart(self) -> bool:
        self.flush()
        self.stream.restart()
        return True

    def element(self, el: Element) -> bool:
        if el.xmlns == ns.TLS and el.name == "starttls":
            if self.secure or self.stage is not neg.Stage.START:
                self.out.append(self.stream.element(Element("failure", ns.TLS)))
                self.end(None)
            self.out.append(self.stream.element(Element("proceed", ns.TLS)))
            self.secure, self.bindings, self.stage = True, dict(BINDINGS), neg.Stage.AUTH
            return self.restart()
        if el.xmlns == ns.SASL:
            if self.stage is not neg.Stage.AUTH:
                self.end(StreamError("not-authorized"))
            return self.sasl_element(el)
        if self.stage is neg.Stage.BIND and el.name == "iq":
            bind = el.find("bind", ns.BIND)
            if bind is not None:
                requested = bind.find_text("resource", ns.BIND)
                try:
                    resource = prep_resource(requested) if requested else "generated"
                    assert self.user is not None
                    jid = JID.from_parts(self.user, HOST, resource)
                    assert JID.parse(str(jid)) == jid, "bound JID does not re-parse to itself"
                except JIDError:
                    pass   # c2s answers bad-request
            return False
        if el.name == "iq" and self.stage is neg.Stage.AUTH:
            return False   # the pre-auth IQ hook (XEP-0077) or service-unavailable
        if el.name in ("iq", "message", "presence"):
            self.end(StreamError("not-authorized"))
        self.end(StreamError("unsupported-stanza-type"))
        return False

    def sasl_element(self, el: Element) -> bool:
        try:
            step = self.sasl_step(el)
        except SASLFailure as exc:
            assert exc.condition in SASLFailure.CONDITIONS
            self.sasl = None
            if exc.condition in ("not-authorized", "invalid-authzid"):
                self.failures += 1
            self.out.append(self.stream.element(exc.to_element()))
            if self.failures >= 3:
                self.end(StreamError("policy-violation"))
            return False
        if step is None:
            return False
        if step.challenge is not None:
            self.out.append(self.stream.element(neg.sasl_element("challenge", step.challenge)))
            return False
        verify_success(step, isinstance(self.sasl, PlainServerSession))
        self.user = step.username
        self.sasl = None
        self.out.append(self.stream.element(neg.sasl_element("success", step.data)))
        self.stage = neg.Stage.BIND
        self.stream.set_limits(POST_AUTH_C2S)
        return self.restart()

    def sasl_step(self, el: Element) -> SaslStep | None:
        if el.name == "abort":
            self.sasl = None
            raise SASLFailure("aborted")
        if el.name == "auth":
            if self.sasl is not None:
                raise SASLFailure("malformed-request")
            mech = el.attrs.get("mechanism", "")
            if mech not in mechanism_names(self.bindings, self.secure, False):
                raise SASLFailure("invalid-mechanism")
            self.sasl = new_session(mech, self.bindings)
            payload = neg.decode_sasl_payload(el)
            if not payload and mech != "PLAIN":
                self.out.append(self.stream.element(neg.sasl_element("challenge", b"")))
                return None
            return run_sync(self.sasl.start(payload))
        if el.name == "response":
            if self.sasl is None:
                raise SASLFailure("malformed-request")
            payload = neg.decode_sasl_payload(el)
            if isinstance(self.sasl, ScramServerSession) and not self.sasl.started:
                return run_sync(self.sasl.start(payload))
            return run_sync(self.sasl.step(payload))
        self.end(StreamError("unsupported-stanza-type"))
        return None


def new_session(mech: str, bindings: dict[str, bytes]) -> SaslSession:
    if mech == "PLAIN":
        return PlainServerSession(HOST, check_password)
    return ScramServerSession(mech, HOST, lookup, bindings, SECRET)


def verify_success(step: SaslStep, plain: bool) -> None:
    assert step.success and step.username == USER, f"authenticated as {step.username!r}"
    assert plain, "a SCRAM exchange succeeded without the password: authentication bypass"


def raw_sasl(r: Reader, secure: bool, bindings: dict[str, bytes]) -> None:
    mech = ALL_MECHANISMS[r.byte() % len(ALL_MECHANISMS)]
    messages = r.rest().split(b"\xff")[:4]
    session = new_session(mech, bindings if secure else {})
    try:
        step = run_sync(session.start(messages[0]))
        for msg in messages[1:]:
            if step.success:
                break
            step = run_sync(session.step(msg))
    except SASLFailure as exc:
        assert exc.condition in SASLFailure.CONDITIONS
        return
    if step.success:
        verify_success(step, mech == "PLAIN")
        assert PASSWORD.encode() in b"\xff".join(messages)


def check(data: bytes) -> None:
    r = Reader(data)
    flags, seed = r.byte(), r.byte()
    secure, bindings = bool(flags & 1), (dict(BINDINGS) if flags & 2 else {})
    if flags & 4:
        raw_sasl(r, secure, bindings)
        return
    negotiator = Negotiator(secure, bindings)
    try:
        for piece in chunks(HEADER + r.rest(), seed):
            negotiator.receive(piece)
        negotiator.flush()
    except Done:
        pass


if __name__ == "__main__":
    fuzz_main(check)
