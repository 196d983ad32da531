"""The receiving side of an s2s stream (RFC 6120 §4-§6 for `jabber:server`; XEP-0220 §2.2 as
receiving and as authoritative server; XEP-0178 SASL EXTERNAL; XEP-0368 direct TLS).

read → ServerStream → events handled in order → write. Stanzas are accepted only for domain
pairs authenticated on this stream; each is checked (check_addresses: improper-addressing,
host-unknown, invalid-from as stream errors), moved into `jabber:client` and handed to
`router.route`, in stream order. A dialback key is verified in a task of its own so the stream
keeps reading meanwhile: two servers verifying each other's keys at the same time would
otherwise wait for each other forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from blether import ns
from blether.errors import SASLFailure, StanzaError, StreamError
from blether.jid import JIDError, prep_domain
from blether.s2s import dialback as db
from blether.s2s.certs import peer_cert_valid_for
from blether.s2s.link import ConnectionClosed, Link
from blether.s2s.stream import ServerStream, check_addresses, check_stanza, to_internal
from blether.stanza import STANZA_NAMES, can_bounce, error_reply
from blether.stream import negotiation as neg
from blether.stream.connection import StreamClosed, StreamEvent, StreamOpened
from blether.xml.element import Element

if TYPE_CHECKING:
    from blether.s2s.manager import S2SManager

log = logging.getLogger(__name__)


class IncomingConnection:
    def __init__(self, manager: S2SManager, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, direct_tls: bool) -> None:
        self.m = manager
        self.s = manager.s
        self.stream = ServerStream(self.s.hosts, manager.pre_auth_limits)
        self.link = Link(reader, writer, self.stream,
                         self.s.config.limits.outbound_buffer_bytes)
        self.direct_tls = direct_tls
        # Whether the TLS handshake asked for (and verified) the peer's certificate.
        self.cert_requested = direct_tls and manager.policy.request_client_cert(None, True)
        self.domain = ""
        self.authenticated: set[tuple[str, str]] = set()   # (remote domain, local domain)
        self.sasl_done = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.done = False
        self.label = f"[s2s-in {self.link.ip} {id(self):x}]"

    # -- main loop -----------------------------------------------------------------------
    async def run(self) -> None:
        lim = self.s.config.limits
        deadline = time.monotonic() + max(lim.negotiation_timeout,
                                          self.m.options.connect_timeout + 10)
        last = time.monotonic()
        try:
            while not self.done:
                if self.closing:
                    timeout = 5.0          # waiting for the peer's closing tag (RFC 6120 §4.4)
                elif self.authenticated:
                    timeout = self.m.options.idle_timeout - (time.monotonic() - last)
                else:
                    timeout = deadline - time.monotonic()
                try:
                    await self.link.fill(max(timeout, 0.0))
                except TimeoutError:
                    if self.closing:
                        break
                    if not self.authenticated:
                        raise StreamError("connection-timeout",
                                          "stream negotiation took too long") from None
                    log.info("%s idle; closing", self.label)
                    self.closing = True
                    self.link.write(self.stream.footer())
                    continue
                last = time.monotonic()
                while self.link.events and not self.done:
                    await self._handle(self.link.events.popleft())
        except StreamError as exc:
            log.info("%s stream error: %s", self.label, exc)
            await self.link.close(self.stream.error(exc))
        except (ConnectionClosed, ConnectionError, ssl.SSLError, OSError) as exc:
            log.info("%s connection ended: %s", self.label, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s internal error; closing the stream", self.label)
            await self.link.close(self.stream.error(StreamError("internal-server-error")))
        finally:
            for task in list(self.tasks):
                task.cancel()
            await self.link.close()

    async def shutdown(self) -> None:
        """RFC 6120 §4.9.3.22: the server is going down."""
        self.done = True
        await self.link.close(self.stream.error(StreamError("system-shutdown")))

    # -- events --------------------------------------------------------------------------
    async def _handle(self, event: StreamEvent) -> None:
        if isinstance(event, StreamError):
            raise event
        if isinstance(event, StreamOpened):
            self._open(event)
            return
        if isinstance(event, StreamClosed):
            if not self.closing:
                self.link.write(self.stream.footer())
            self.done = True
            return
        el = event
        if el.xmlns == ns.STREAMS and el.name == "error":
            log.info("%s the peer sent a stream error: %r", self.label, el)
            self.done = True
        elif el.xmlns == ns.TLS and el.name == "starttls":
            await self._starttls()
        elif el.xmlns == ns.SASL:
            self._sasl(el)
        elif el.xmlns == db.DIALBACK:
            self._dialback(el)
        elif el.name in STANZA_NAMES and el.xmlns == ns.SERVER:
            await self._stanza(el)
        else:
            raise StreamError("unsupported-stanza-type", f"unexpected <{el.name}/>")

    def _open(self, opened: StreamOpened) -> None:
        self.domain = opened.to or self.domain
        peer = self.stream.peer_from
        self.link.write(self.stream.header(self.domain, peer))
        policy = self.m.policy
        features: list[Element] = []
        if not self.link.secure:
            features.append(neg.starttls_feature(required=policy.tls_required(peer)))
        if self.link.secure or not policy.tls_required(peer):
            if self.link.secure and not self.sasl_done and peer and self._cert_valid(peer):
                features.append(neg.mechanisms_feature(["EXTERNAL"]))
            features.append(db.feature())
        self.link.write(self.stream.features(features))

    def _cert_valid(self, domain: str) -> bool:
        return peer_cert_valid_for(self.link.ssl_object, domain, self.cert_requested)

    async def _starttls(self) -> None:
        if self.link.secure:
            self.link.send(Element("failure", ns.TLS))
            await self.link.close(self.stream.footer())
            self.done = True
            return
        self.link.send(Element("proceed", ns.TLS))
        request = self.m.policy.request_client_cert(self.stream.peer_from, False)
        ctx = self.m.tls.server_context(self.domain, request)
        try:
            await self.link.start_tls(ctx, None, self.s.config.limits.tls_handshake_timeout)
        except (TimeoutError, ssl.SSLError, ConnectionError) as exc:
            log.info("%s TLS handshake failed: %s", self.label, exc)
            self.done = True
            return
        self.cert_requested = request

    # -- SASL EXTERNAL (XEP-0178) --------------------------------------------------------
    def _sasl(self, el: Element) -> None:
        try:
            domain = self._external(el)
        except SASLFailure as exc:
            log.info("%s SASL EXTERNAL failed: %s", self.label, exc)
            self.link.send(exc.to_element())
            return
        self.link.send(neg.sasl_element("success", None))
        log.info("%s %s authenticated with SASL EXTERNAL", self.label, domain)
        self.authenticated.add((domain, self.domain))
        self.sasl_done = True
        self.stream.set_limits(self.m.post_auth_limits)
        self.stream.restart()
        self.link.events.clear()

    def _external(self, el: Element) -> str:
        if el.name == "abort":
            raise SASLFailure("aborted")
        if el.name != "auth":
            raise SASLFailure("malformed-request", "no exchange under way")
        if el.attrs.get("mechanism") != "EXTERNAL" or not self.link.secure or self.sasl_done:
            raise SASLFailure("invalid-mechanism")
        authzid = neg.decode_sasl_payload(el).decode("utf-8", "replace")
        peer = self.stream.peer_from
        try:
            domain = prep_domain(authzid) if authzid else peer
        except JIDError:
            raise SASLFailure("invalid-authzid") from None
        if domain is None or (peer is not None and domain != peer):
            # XEP-0178 §3 step 8: the identity is the stream's 'from'.
            raise SASLFailure("invalid-authzid", "the authzid must be the stream's 'from'")
        if not self._cert_valid(domain):
            raise SASLFailure("not-authorized", f"no valid certificate for {domain}")
        return domain

    # -- Server Dialback (XEP-0220 §2.2) -------------------------------------------------
    def _dialback(self, el: Element) -> None:
        try:
            request = db.parse(el)
        except db.DialbackError as exc:
            raise StreamError("improper-addressing", str(exc)) from None
        if request.type is not None:
            # §2.2: responses never come on an inbound stream (the 2012 dialback attacks).
            log.warning("%s ignoring unsolicited dialback %s response", self.label, request.kind)
            return
        if request.kind == "verify":
            self._answer_verify(request)
            return
        task = asyncio.get_running_loop().create_task(
            self._guarded(self._check_result(request, self.stream.stream_id)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:
            log.exception("%s internal error while checking dialback", self.label)

    def _answer_verify(self, request: db.DialbackElement) -> None:
        """§2.2.2: as the authoritative server — is this one of our keys?"""
        assert request.stream_id is not None
        if request.to not in self.s.hosts:
            self.link.send(db.verify_response(request.to, request.frm, request.stream_id,
                                              "error", StanzaError("item-not-found")))
            return
        valid = db.check_key(self.m.secret, request.frm, request.to, request.stream_id,
                             request.key)
        log.info("%s dialback verify from %s for %s: %s", self.label, request.frm, request.to,
                 "valid" if valid else "invalid")
        self.link.send(db.verify_response(request.to, request.frm, request.stream_id,
                                          "valid" if valid else "invalid"))

    async def _check_result(self, request: db.DialbackElement, stream_id: str) -> None:
        """§2.2.1: as the receiving server — is the initiating server who it claims to be?"""
        local, remote = request.to, request.frm
        if local not in self.s.hosts:
            self.link.send(db.result_response(local, remote, "error",
                                              StanzaError("item-not-found")))
            return
        cert_ok = self._cert_valid(remote)
        refusal = self.m.policy.dialback_refusal(remote, self.link.secure, cert_ok)
        if remote in self.s.hosts:
            refusal = "not-acceptable"        # someone claims to be one of our own domains
        if refusal is not None:
            log.info("%s dialback for %s refused: %s", self.label, remote, refusal)
            self.link.send(db.result_response(local, remote, "error", StanzaError(refusal)))
            return
        if (remote, local) in self.authenticated or cert_ok:
            # A certificate valid for the domain already proves it; no need to dial back
            # (XEP-0220 §1.3 allows any method; Prosody does the same).
            verdict = "valid"
        else:
            verdict = await self.m.verify(local, remote, stream_id, request.key)
        if verdict == "valid":
            log.info("%s %s authenticated for %s with dialback", self.label, remote, local)
            self.authenticated.add((remote, local))
            self.stream.set_limits(self.m.post_auth_limits)
            self.link.send(db.result_response(local, remote, "valid"))
        elif verdict == "invalid":
            log.warning("%s dialback key of %s for %s is invalid", self.label, remote, local)
            self.link.send(db.result_response(local, remote, "invalid"))
            if not self.authenticated:
                # §2.2.1: with no other valid pair the stream MUST be closed.
                self.closing = True
                self.link.write(self.stream.footer())
        else:
            condition = verdict.partition(":")[2] or "remote-server-not-found"
            self.link.send(db.result_response(local, remote, "error", StanzaError(condition)))

    # -- stanzas -------------------------------------------------------------------------
    async def _stanza(self, el: Element) -> None:
        if not self.authenticated:
            raise StreamError("not-authorized", "authenticate with dialback or SASL first")
        try:
            to, frm = check_addresses(el, self.s.hosts, self.authenticated)
            stanza = to_internal(el)
            check_stanza(stanza)
        except StanzaError as exc:
            internal = to_internal(el)
            if can_bounce(internal):
                with contextlib.suppress(JIDError, KeyError):
                    await self.s.router.route(error_reply(internal, exc, from_=self.domain))
            return
        stanza.attrs["to"] = str(to)
        stanza.attrs["from"] = str(frm)
        await self.s.router.route(stanza, to, frm)
