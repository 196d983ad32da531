"""Client-to-server connections (RFC 6120): the asyncio driver around the sans-IO stream.

read → XMPPStream.receive → handle events in order → write. One task per connection, no task
per stanza; output is batched into one transport write per event-loop turn and bounded
(DESIGN.md §1.5): a client that stops reading is disconnected instead of growing our memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from typing import TYPE_CHECKING, cast

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
from blether.transport.output import BatchedOutput
from blether.xml.element import Element
from blether.xml.parser import ParserLimits

if TYPE_CHECKING:
    from blether.core.services import Services
    from blether.transport.tls import TLSManager

log = logging.getLogger(__name__)


class ReadShaper:
    """Token bucket over bytes read: `rate` bytes/s sustained, bursts of 2 s (SECURITY.md)."""

    def __init__(self, rate: int, burst_seconds: float = 2.0) -> None:
        self.rate = rate
        self.capacity = rate * burst_seconds
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def consume(self, n: int) -> float:
        """Account for `n` bytes; return how long to pause reading (0 if within the rate)."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class C2SSession(Session):
    """The bound session of a C2SConnection, as the router sees it."""

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


class C2SConnection:
    def __init__(self, services: Services, tls: TLSManager, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, direct_tls: bool) -> None:
        self.s = services
        self.cfg = services.config
        self.tls = tls
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.ip = str(peer[0]) if peer else ""
        self.id = f"conn-{id(self):x}"
        lim = self.cfg.limits
        self.pre_auth_limits = ParserLimits(lim.pre_auth_stanza_bytes, lim.pre_auth_max_depth,
                                            lim.max_attributes, lim.pre_auth_max_elements, 4096)
        self.post_auth_limits = ParserLimits(lim.c2s_stanza_bytes, lim.max_depth,
                                             lim.max_attributes, lim.max_elements, 4096)
        self.stream = XMPPStream(ns.CLIENT, services.hosts, self.pre_auth_limits)
        self.secure = direct_tls
        self.stage = neg.Stage.AUTH if (direct_tls or not self.cfg.c2s.require_encryption) \
            else neg.Stage.START
        self.domain = ""
        self.username: str | None = None
        self.session: C2SSession | None = None
        self.sasl: SaslSession | None = None
        self.auth_failures = 0
        self.out = BatchedOutput(writer, self.cfg.limits.outbound_buffer_bytes,
                                 lambda: self.label)
        self._end_reason = "dropped"

    @property
    def label(self) -> str:
        who = self.session.jid if self.session else (self.username or self.ip)
        return f"[{self.id} {who}]"

    # -- output --------------------------------------------------------------------------
    @property
    def _closing(self) -> bool:
        """Closing: nothing but the closing tag is written any more."""
        return self.out.closing

    @_closing.setter
    def _closing(self, value: bool) -> None:
        self.out.closing = value

    def write(self, data: bytes) -> None:
        self.out.write(data)

    def _flush(self) -> None:
        self.out.flush()
        if self.out.overflowed:
            self._end_reason = "slow-reader"

    def _write_now(self, data: bytes) -> None:
        """Write bypassing batching (before a TLS upgrade, the order must be exact)."""
        self.out.write_now(data)

    # -- main loop -----------------------------------------------------------------------
    async def run(self) -> None:
        deadline = time.monotonic() + self.cfg.limits.negotiation_timeout
        shaper = ReadShaper(self.cfg.limits.c2s_read_rate)
        try:
            while not self._closing:
                timeout = None if self.session else max(0.0, deadline - time.monotonic())
                try:
                    data = await asyncio.wait_for(self.reader.read(65536), timeout)
                except TimeoutError:
                    raise StreamError("connection-timeout",
                                      "stream negotiation took too long") from None
                if not data:
                    break
                if self.session is not None:
                    self.session.last_active = time.monotonic()
                pause = shaper.consume(len(data))
                if pause > 0:
                    # Over the read rate: stop reading for a while (TCP back-pressure does
                    # the rest). Nothing is dropped, unlike a shaper that discards (Prosody's
                    # mod_limits behaves the same way).
                    await asyncio.sleep(pause)
                for event in self.stream.receive(data):
                    restart = await self._handle(event)
                    if restart or self._closing:
                        break  # RFC 6120 §5.4.3.3: bytes after <starttls/> are discarded
        except StreamError as exc:
            log.info("%s stream error: %s", self.label, exc)
            self._end_reason = "error"
            self.write(self.stream.error(exc))
            self._flush()
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.info("%s connection lost: %s", self.label, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s internal error; closing the stream", self.label)
            self._end_reason = "error"
            self.write(self.stream.error(StreamError("internal-server-error")))
            self._flush()
        finally:
            await self._cleanup()

    async def _cleanup(self) -> None:
        self._closing = True
        await self.end_session(self._end_reason)
        self._flush()
        with contextlib.suppress(Exception):
            self.writer.close()

    async def end_session(self, reason: str) -> None:
        """Unregister the bound session (once) and tell the features it ended."""
        session, self.session = self.session, None
        if session is None:
            return
        session.closed = True
        if self.s.sessions.remove(session):
            await self.s.hooks.notify(events.SESSION_ENDED, events.SessionEnded(session, reason))

    def abort(self) -> None:
        self._closing = True
        self.writer.transport.abort()

    async def close(self, error: StreamError | None = None) -> None:
        """Server-initiated close: error (if any), closing tag, then TCP close."""
        if self._closing:
            return
        self._closing = True
        if error is not None:
            self._end_reason = "replaced" if error.condition == "conflict" else "error"
            self.write(self.stream.error(error))
        else:
            self._end_reason = "closed"
            self.write(self.stream.footer())
        self._flush()
        self.writer.close()

    # -- events --------------------------------------------------------------------------
    async def _handle(self, event: StreamEvent) -> bool:
        if isinstance(event, StreamError):
            raise event
        if isinstance(event, StreamOpened):
            await self._open(event)
            return False
        if isinstance(event, StreamClosed):
            self._end_reason = "closed"
            self.write(self.stream.footer())
            self._closing = True
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
        if self.stage is neg.Stage.START:
            features.append(neg.starttls_feature(required=True))
        elif self.stage is neg.Stage.AUTH:
            if not self.secure and not self.cfg.c2s.require_encryption:
                features.append(neg.starttls_feature(required=False))
            bindings = self._bindings()
            features.append(neg.mechanisms_feature(mechanism_names(
                bindings, self.secure, self.cfg.c2s.allow_plain_without_tls)))
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
        if not self.secure:
            return {}
        obj = self.writer.get_extra_info("ssl_object")
        return self.tls.bindings(self.domain, obj)

    async def _starttls(self) -> bool:
        if self.secure or self.stage not in (neg.Stage.START, neg.Stage.AUTH):
            self.write(self.stream.element(Element("failure", ns.TLS)) + self.stream.footer())
            self._closing = True
            return True
        # Stop reading before <proceed/>: the client's TLS ClientHello must reach the TLS
        # layer, never the plaintext StreamReader. start_tls resumes reading itself.
        cast(asyncio.Transport, self.writer.transport).pause_reading()
        self._write_now(self.stream.element(Element("proceed", ns.TLS)))
        # Plaintext the client sent after <starttls/> must not be read as if it came
        # through TLS (RFC 6120 §5.4.3.3; the STARTTLS command-injection class).
        self.reader._buffer.clear()  # type: ignore[attr-defined]
        try:
            # Not wrapped in wait_for: on 3.11 that runs start_tls in a new task, and the
            # client's first TLS record can then be read by the plaintext reader (a hang).
            await self.writer.start_tls(
                self.tls.client_context,
                ssl_handshake_timeout=self.cfg.limits.tls_handshake_timeout)
        except (TimeoutError, ssl.SSLError, ConnectionError) as exc:
            log.info("%s TLS handshake failed: %s", self.label, exc)
            self._closing = True
            return True
        self.secure = True
        self.stage = neg.Stage.AUTH
        self.stream.restart()
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
        self.stream.set_limits(self.post_auth_limits)
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
                                           self.cfg.c2s.allow_plain_without_tls):
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
        if self.auth_failures >= self.cfg.limits.auth_failures_per_connection:
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
        self.s.sessions.add(session)
        self.stage = neg.Stage.BOUND
        log.info("%s bound %s", self.label, jid)
        await self.s.hooks.notify(events.SESSION_BOUND, events.SessionEvent(session))
        return jid
