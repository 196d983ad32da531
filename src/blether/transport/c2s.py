"""Client-to-server streams (RFC 6120 §4-§7): negotiation and stanza handling.

The I/O (transport, TLS, read shaping, timers, the handler task, batched bounded output) is
`transport.protocol.StreamProtocol`; this module is what happens to each stream event:
stream features, STARTTLS (§5), SASL (§6), resource binding (§7), then stanzas to the router.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from blether import ns
from blether.core import events
from blether.core.session import Session
from blether.errors import SASLFailure, StanzaError, StreamError
from blether.jid import JID, JIDError, prep_resource
from blether.stanza import STANZA_NAMES, error_reply, iq_result
from blether.stream import negotiation as neg
from blether.stream.connection import StreamClosed, StreamEvent, StreamOpened, XMPPStream
from blether.stream.sasl import (
    PlainServerSession,
    SaslSession,
    SaslStep,
    ScramServerSession,
    mechanism_names,
)
from blether.transport.protocol import ReadShaper, StreamProtocol
from blether.xml.element import Element

if TYPE_CHECKING:
    from blether.core.services import Services
    from blether.transport.listener import C2SListener

__all__ = ["C2SConnection", "C2SSession", "ReadShaper"]

log = logging.getLogger(__name__)


class C2SSession(Session):
    """The bound session of a C2SConnection, as the router sees it."""

    __slots__ = ("conn",)

    def __init__(self, conn: C2SConnection, jid: JID) -> None:
        super().__init__(jid, conn.ip)
        self.conn = conn

    def send(self, stanza: Element) -> None:
        if not self.closed:
            self.conn.write(self.conn.stream.element(stanza))

    def send_bytes(self, data: bytes) -> None:
        if not self.closed:
            self.conn.write(data)

    async def close(self, error: StreamError | None = None) -> None:
        await self.conn.close(error)


class C2SConnection(StreamProtocol):
    """One client stream: negotiation state, the bound session, and event handling."""

    __slots__ = ("auth_failures", "direct_tls", "domain", "s", "sasl", "secure", "session",
                 "stage", "username")

    def __init__(self, listener: C2SListener, *, direct_tls: bool) -> None:
        super().__init__(listener)
        self.s: Services = listener.s
        self.stream = XMPPStream(ns.CLIENT, self.s.hosts, listener.pre_auth_limits)
        self.direct_tls = direct_tls
        self.secure = direct_tls
        self.stage = neg.Stage.AUTH if (direct_tls or not self.s.config.c2s.require_encryption) \
            else neg.Stage.START
        self.domain = ""
        self.username: str | None = None
        self.session: C2SSession | None = None
        self.sasl: SaslSession | None = None
        self.auth_failures = 0

    @property
    def label(self) -> str:
        who = self.session.jid if self.session else (self.username or self.ip)
        return f"[conn-{id(self):x} {who}]"

    # -- connection life ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        refusal = self.listener.admit(self)
        limits = self.s.config.limits
        if self.direct_tls:  # XEP-0368: TLS from the first byte
            self.start_tls(self.listener.tls.client_context, limits.tls_handshake_timeout)
        if refusal is not None:
            log.warning("refusing connection from %s: %s", self.ip, refusal)
            self.end_reason = "refused"
            if not self.direct_tls:
                self._refuse()

    def _refuse(self) -> None:
        self.fail(StreamError("policy-violation", "too many connections from your address"))

    def tls_established(self) -> None:
        if self.end_reason == "refused":  # direct TLS: the refusal could not be sent before
            self._refuse()
            return
        if not self.direct_tls:  # STARTTLS (RFC 6120 §5.4.3.3): a new stream, over TLS
            self.secure = True
            self.stage = neg.Stage.AUTH
            self.stream.restart()

    def touched(self) -> None:
        self.listener.active.add(self)
        if self.session is not None:
            self.session.last_active = time.monotonic()

    def timed_out(self) -> None:
        if self.session is None:
            self.fail(StreamError("connection-timeout", "stream negotiation took too long"))

    async def end_session(self, reason: str) -> None:
        """Unregister the bound session (once) and tell the features it ended."""
        session, self.session = self.session, None
        if session is None:
            return
        session.closed = True
        if self.s.sessions.remove(session):
            await self.s.hooks.notify(events.SESSION_ENDED, events.SessionEnded(session, reason))

    async def close(self, error: StreamError | None = None) -> None:
        """Server-initiated close: error (if any), closing tag, then TCP close."""
        if self.out.closing:
            return
        self.out.closing = True
        if error is not None:
            self.end_reason = "replaced" if error.condition == "conflict" else "error"
            self.write(self.stream.error(error))
        else:
            self.end_reason = "closed"
            self.write(self.stream.footer())
        self.flush()
        self.close_transport()
        self._kick()

    # -- events --------------------------------------------------------------------------
    async def handle(self, event: StreamEvent) -> bool:
        if isinstance(event, StreamError):
            raise event
        if isinstance(event, StreamOpened):
            await self._open(event)
            return False
        if isinstance(event, StreamClosed):
            self.end_reason = "closed"
            self.write(self.stream.footer())
            self.out.closing = True
            return False
        el = event
        if self.stage is neg.Stage.BOUND:
            if el.name in STANZA_NAMES and el.xmlns == ns.CLIENT:
                if self.session is None:
                    return False  # the session was ended (shutdown); the stream closes next
                if el.name == "iq" and self._legacy_session(el):
                    return False
                await self.s.router.from_session(self.session, el)
                return False
            raise StreamError("unsupported-stanza-type", f"unexpected <{el.name}/>")
        if el.xmlns == ns.TLS and el.name == "starttls":
            return await self._starttls()
        if el.xmlns == ns.SASL:
            await self._sasl(el)
            return self.username is not None and self.stage is neg.Stage.BIND
        if self.stage is neg.Stage.BIND and el.name == "iq" and el.xmlns == ns.CLIENT:
            await self._bind_iq(el)
            return False
        if self.stage is neg.Stage.AUTH and el.name == "iq" and el.xmlns == ns.CLIENT:
            await self._pre_auth_iq(el)
            return False
        if el.name in STANZA_NAMES:
            raise StreamError("not-authorized", "authenticate and bind a resource first")
        raise StreamError("unsupported-stanza-type", f"unexpected <{el.name}/> during "
                                                     "negotiation")

    async def _open(self, opened: StreamOpened) -> None:
        self.domain = opened.to or self.domain
        self.write(self.stream.header(self.domain))
        features: list[Element] = []
        cfg = self.s.config
        if self.stage is neg.Stage.START:
            features.append(neg.starttls_feature(required=True))
        elif self.stage is neg.Stage.AUTH:
            if not self.secure and not cfg.c2s.require_encryption:
                features.append(neg.starttls_feature(required=False))
            bindings = self._bindings()
            features.append(neg.mechanisms_feature(mechanism_names(
                bindings, self.secure, cfg.c2s.allow_plain_without_tls)))
            if bindings:
                features.append(neg.channel_binding_feature(sorted(bindings)))
        elif self.stage is neg.Stage.BIND:
            features.extend(neg.bind_features())
        if self.stage is not neg.Stage.START:
            collected = events.StreamFeatures(self.stage is neg.Stage.BIND, self.secure,
                                              self.domain)
            await self.s.hooks.notify(events.COLLECT_FEATURES, collected)
            features.extend(collected.features)
        self.write(self.stream.features(features))

    async def _pre_auth_iq(self, iq: Element) -> None:
        """XEP-0077 §3: registration happens before authentication; other IQs are refused."""
        iq = iq.with_attrs(**{"from": None})
        event = events.PreAuthIq(iq, self.ip, self.domain, self.secure,
                                 lambda el: self.write(self.stream.element(el)))
        if await self.s.hooks.fire(events.PRE_AUTH_IQ, event):
            return
        if iq.attrs.get("type") in ("get", "set"):
            self.write(self.stream.element(error_reply(iq, StanzaError(
                "service-unavailable", "authenticate first"))))

    def _bindings(self) -> dict[str, bytes]:
        if not self.secure or self.tls is None:
            return {}
        return self.listener.tls.bindings(self.domain, self.tls.obj)

    async def _starttls(self) -> bool:
        if self.secure or self.stage not in (neg.Stage.START, neg.Stage.AUTH):
            self.write(self.stream.element(Element("failure", ns.TLS)) + self.stream.footer())
            self.out.closing = True
            return True
        self._write_now(self.stream.element(Element("proceed", ns.TLS)))
        # Every byte read from now on goes to TLS; plaintext the client sent after
        # <starttls/> (in this read or queued behind it) is never read as if it came through
        # TLS (RFC 6120 §5.4.3.3; the STARTTLS command-injection class). Nothing is awaited
        # between writing <proceed/> and the switch, so no read can slip in between.
        self._backlog = None
        self.start_tls(self.listener.tls.client_context,
                       self.s.config.limits.tls_handshake_timeout)
        return True

    # -- SASL (RFC 6120 §6) --------------------------------------------------------------
    async def _sasl(self, el: Element) -> None:
        if self.stage is not neg.Stage.AUTH:
            raise StreamError("not-authorized" if self.stage is neg.Stage.START
                              else "unsupported-stanza-type",
                              "SASL is not allowed at this point")
        try:
            step = await self._sasl_step(el)
        except SASLFailure as exc:
            self.sasl = None
            await self._auth_failed(exc)
            return
        if step is None:
            return
        if step.challenge is not None:
            self.write(self.stream.element(neg.sasl_element("challenge", step.challenge)))
            return
        assert step.username is not None
        self.sasl = None
        self.username = step.username
        self.s.auth_limiter.success(self.ip)
        self.write(self.stream.element(neg.sasl_element("success", step.data)))
        log.info("%s authenticated as %s@%s", self.label, step.username, self.domain)
        self.stage = neg.Stage.BIND
        self.stream.set_limits(self.listener.post_auth_limits)
        self.stream.restart()

    async def _sasl_step(self, el: Element) -> SaslStep | None:
        if el.name == "abort":
            self.sasl = None
            raise SASLFailure("aborted")
        if el.name == "auth":
            if self.sasl is not None:
                raise SASLFailure("malformed-request", "an exchange is already under way")
            limiter = self.s.auth_limiter
            if limiter.is_banned(self.ip):
                raise SASLFailure("temporary-auth-failure", "too many failed attempts")
            mech = el.attrs.get("mechanism", "")
            bindings = self._bindings()
            if mech not in mechanism_names(bindings, self.secure,
                                           self.s.config.c2s.allow_plain_without_tls):
                raise SASLFailure("invalid-mechanism")
            if mech == "PLAIN":
                self.sasl = PlainServerSession(self.domain, self.s.auth.verify_password)
            else:
                self.sasl = ScramServerSession(mech, self.domain,
                                               self.s.storage.accounts.get_credentials,
                                               bindings, self.s.sasl_secret)
            payload = neg.decode_sasl_payload(el)
            if not payload and mech != "PLAIN":
                self.write(self.stream.element(neg.sasl_element("challenge", b"")))
                return None
            return await self.sasl.start(payload)
        if el.name == "response":
            if self.sasl is None:
                raise SASLFailure("malformed-request", "no exchange under way")
            payload = neg.decode_sasl_payload(el)
            if isinstance(self.sasl, ScramServerSession) and not self.sasl.started:
                return await self.sasl.start(payload)
            return await self.sasl.step(payload)
        raise StreamError("unsupported-stanza-type", f"unexpected SASL element <{el.name}/>")

    async def _auth_failed(self, exc: SASLFailure) -> None:
        if exc.condition in ("not-authorized", "invalid-authzid"):
            self.auth_failures += 1
            self.s.auth_limiter.failure(self.ip)
        log.info("%s SASL failure: %s", self.label, exc)
        self.write(self.stream.element(exc.to_element()))
        if self.auth_failures >= self.s.config.limits.auth_failures_per_connection:
            raise StreamError("policy-violation", "too many failed authentication attempts")

    # -- resource binding (RFC 6120 §7) --------------------------------------------------
    async def _bind_iq(self, iq: Element) -> None:
        children = iq.elements()
        iq_type = iq.attrs.get("type")
        if "id" not in iq.attrs or iq_type not in ("get", "set") or len(children) != 1:
            if iq_type in ("result", "error"):
                return
            self.write(self.stream.element(error_reply(iq, StanzaError("bad-request"))))
            return
        payload = children[0]
        if payload.xmlns == ns.BIND and payload.name == "bind" and iq_type == "set":
            try:
                jid = await self._bind(payload)
            except StanzaError as exc:
                self.write(self.stream.element(error_reply(iq, exc)))
                return
            result = iq_result(iq, Element("bind", ns.BIND, None,
                                           [Element("jid", ns.BIND, None, [str(jid)])]))
            self.write(self.stream.element(result))
            return
        self.write(self.stream.element(error_reply(iq, StanzaError(
            "not-authorized", "bind a resource first"))))

    def _legacy_session(self, iq: Element) -> bool:
        """RFC 3921 §3 session establishment: a no-op kept for old clients (RFC 6121 §1.4)."""
        payload = iq.find("session", ns.SESSION)
        if payload is None or iq.attrs.get("type") != "set" or len(iq.elements()) != 1:
            return False
        self.write(self.stream.element(iq_result(iq)))
        return True

    async def _bind(self, payload: Element) -> JID:
        requested = payload.find_text("resource", ns.BIND)
        assert self.username is not None
        try:
            resource = prep_resource(requested) if requested else neg.generate_resource()
            jid = JID.from_parts(self.username, self.domain, resource)
        except JIDError as exc:
            raise StanzaError("bad-request", f"invalid resource: {exc}") from None
        old = self.s.sessions.check_bind(jid)
        if old is not None:
            log.info("%s replaces session %s", self.label, old.id)
            old.closed = True
            self.s.sessions.remove(old)
            await self.s.hooks.notify(events.SESSION_ENDED, events.SessionEnded(old, "replaced"))
            await old.close(StreamError("conflict", "Replaced by new connection"))
        session = C2SSession(self, jid)
        session.lang = self.stream.lang
        self.session = session
        self.cancel_deadline()
        self.s.sessions.add(session)
        self.stage = neg.Stage.BOUND
        log.info("%s bound %s", self.label, jid)
        await self.s.hooks.notify(events.SESSION_BOUND, events.SessionEvent(session))
        return jid
