"""The initiating side of an s2s stream, one per (local domain, remote domain) pair so stanzas
between two domains keep their order (RFC 6120 §10.1; CONFORMANCE.md §6).

State machine:
    connecting ─ resolve (resolver.py), TCP to each target in turn, XEP-0368 direct TLS or
                 STARTTLS (RFC 6120 §5), the peer's certificate checked (RFC 6120 §13.7.2)
    authenticating ─ SASL EXTERNAL (XEP-0178) when offered and our certificate was presented,
                 else Server Dialback (XEP-0220): <db:result/> and wait for the verdict
    ready ─ stanzas flow; dialback <db:verify/> requests of the receiving role ride along
    closed ─ idle for `idle_timeout`, peer closed, error, or shutdown
Stanzas routed before `ready` wait in a bounded queue. If the stream never gets ready they are
bounced: remote-server-not-found when the peer cannot be resolved or reached (or refuses us),
remote-server-timeout when it does not complete in `connect_timeout` (RFC 6120 §8.3.3.15-16);
a dialback 'invalid' gives internal-server-error and a dialback error remote-server-timeout, as
XEP-0220 §2.1.1 prescribes.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections import deque
from typing import TYPE_CHECKING

from blether import ns
from blether.errors import StanzaError, StreamError
from blether.jid import domain_to_ascii
from blether.s2s import dialback as db
from blether.s2s.certs import peer_cert_valid_for
from blether.s2s.link import ConnectionClosed, Link, PeerStreamError, peer_error
from blether.s2s.resolver import Target
from blether.s2s.stream import InitiatingStream
from blether.stream.connection import StreamClosed, StreamOpened
from blether.xml.element import Element

if TYPE_CHECKING:
    from blether.s2s.manager import S2SManager

log = logging.getLogger(__name__)

MAX_QUEUE = 1000   # stanzas waiting for one stream; beyond that the sender gets an error


class Failed(Exception):
    """The stream could not be established; `condition` is what the queued stanzas bounce with."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


class _CertRejected(Exception):
    """The peer's certificate did not verify; retry without verification if allowed."""


class OutgoingStream:
    def __init__(self, manager: S2SManager, local: str, remote: str) -> None:
        self.m = manager
        self.local = local
        self.remote = remote
        self.state = "connecting"
        self.queue: deque[Element] = deque()
        self.link: Link | None = None
        self.authenticated_by = ""      # "EXTERNAL" or "dialback"
        self.peer_cert_valid = False
        self.features = Element("features", ns.STREAMS)
        self.last_activity = time.monotonic()
        # XEP-0220 §2.1.2: our verify requests as the receiving server, answered on this stream.
        self.verifies: dict[str, asyncio.Future[str]] = {}
        self._unsent_verifies: list[Element] = []
        self.label = f"[s2s-out {local}→{remote}]"

    # -- API for the manager -------------------------------------------------------------
    def send(self, stanza: Element) -> StanzaError | None:
        """Write now if ready, else queue; an error to bounce if the queue is full/closed."""
        if self.state == "ready" and self.link is not None:
            self.last_activity = time.monotonic()
            self.link.send(stanza)
            return None
        if self.state == "closed":
            return StanzaError("remote-server-not-found", f"the stream to {self.remote} closed")
        if len(self.queue) >= MAX_QUEUE:
            return StanzaError("resource-constraint", f"too many stanzas waiting for "
                                                      f"{self.remote}")
        self.queue.append(stanza)
        return None

    def request_verify(self, stream_id: str, key: str) -> asyncio.Future[str]:
        """Ask the authoritative server `remote` whether `key` is one of its keys."""
        fut = self.verifies.get(stream_id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self.verifies[stream_id] = fut
            request = db.verify_request(self.local, self.remote, stream_id, key)
            if self.state in ("dialback", "ready") and self.link is not None:
                self.link.send(request)
            else:
                self._unsent_verifies.append(request)
        return fut

    # -- main task -----------------------------------------------------------------------
    async def run(self) -> None:
        failure: Failed | None = None
        try:
            try:
                await asyncio.wait_for(self._establish(), self.m.options.connect_timeout)
            except TimeoutError:
                raise Failed("remote-server-timeout",
                             f"{self.remote} did not answer in time") from None
            await self._flush_queue()
            await self._serve()
        except Failed as exc:
            failure = exc
            log.info("%s failed: %s", self.label, exc.text)
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            log.info("%s connection lost: %s", self.label, exc)
        except StreamError as exc:
            log.info("%s stream error: %s", self.label, exc)
            if self.link is not None:
                await self.link.close(self.link.stream.error(exc))
        except PeerStreamError as exc:
            log.info("%s the peer closed the stream with %s", self.label, exc)
        except Exception:
            log.exception("%s internal error", self.label)
            failure = Failed("internal-server-error", "internal error")
        finally:
            await self._finish(failure)

    async def _finish(self, failure: Failed | None) -> None:
        self.state = "closed"
        self.m.forget_outgoing(self)
        if self.link is not None:
            await self.link.close(self.link.stream.footer())
        for fut in self.verifies.values():
            if not fut.done():
                fut.set_result(f"error:{failure.condition if failure else 'remote-server-timeout'}")
        queued, self.queue = list(self.queue), deque()
        cond = failure.condition if failure else "remote-server-not-found"
        text = failure.text if failure else f"the stream to {self.remote} closed"
        for stanza in queued:
            await self.m.bounce(stanza, StanzaError(cond, text))

    async def _flush_queue(self) -> None:
        assert self.link is not None
        self.state = "ready"
        log.info("%s ready (%s)", self.label, self.authenticated_by)
        while self.queue:
            self.link.send(self.queue.popleft())
        self.last_activity = time.monotonic()

    # -- connecting ----------------------------------------------------------------------
    async def _establish(self) -> None:
        targets = await self.m.resolver.resolve(self.remote)
        if not targets:
            raise Failed("remote-server-not-found", f"{self.remote} has no XMPP server")
        problems: list[str] = []
        for target in targets:
            verify_modes = (True, False) if self.m.policy.verify_certificates else (False,)
            for verify in verify_modes:
                try:
                    await self._connect(target, verify)
                    await self._authenticate()
                    return
                except _CertRejected as exc:
                    self._drop_link()
                    problems.append(f"{target}: {exc}")
                    if self.m.policy.cert_required(self.remote):
                        break   # no dialback fallback for this peer
                    log.info("%s %s; retrying without verification, for dialback", self.label,
                             exc)
                except (OSError, ssl.SSLError, ConnectionError, TimeoutError,
                        StreamError, PeerStreamError) as exc:
                    self._drop_link()
                    problems.append(f"{target}: {exc or type(exc).__name__}")
                    log.info("%s %s: %s", self.label, target, exc or type(exc).__name__)
                    if isinstance(exc, PeerStreamError) and exc.condition == "host-unknown":
                        raise Failed("remote-server-not-found",
                                     f"{target} does not serve {self.remote}") from None
                    break
        raise Failed("remote-server-not-found",
                     f"cannot reach {self.remote}: {'; '.join(problems)}")

    def _drop_link(self) -> None:
        if self.link is not None:
            self.link.abort()
            self.link = None
        self.state = "connecting"

    async def _connect(self, target: Target, verify: bool) -> None:
        """TCP, TLS (direct or STARTTLS), up to the features of the secured stream."""
        self.state = "connecting"
        log.debug("%s connecting to %s (verify certificates: %s)", self.label, target, verify)
        ctx = self.m.tls.client_context(self.local, verify)
        sni = domain_to_ascii(self.remote)
        try:
            if target.direct_tls:
                reader, writer = await asyncio.open_connection(
                    target.host, target.port, ssl=ctx, server_hostname=sni,
                    ssl_handshake_timeout=self.m.config.limits.tls_handshake_timeout)
            else:
                reader, writer = await asyncio.open_connection(target.host, target.port)
        except ssl.SSLCertVerificationError as exc:
            raise _CertRejected(f"certificate of {target} not trusted ({exc.verify_message})"
                                ) from None
        stream = InitiatingStream(self.local, self.remote, self.m.pre_auth_limits)
        self.link = link = Link(reader, writer, stream, self.m.config.limits.outbound_buffer_bytes)
        link.write(stream.initial_header())
        features = await self._open()
        log.debug("%s stream opened, features %r", self.label, features)
        if not link.secure:
            if features.find("starttls", ns.TLS) is not None:
                link.send(Element("starttls", ns.TLS))
                answer = await self._element()
                if answer.name != "proceed" or answer.xmlns != ns.TLS:
                    raise Failed("remote-server-not-found", f"{self.remote} refused STARTTLS")
                try:
                    await link.start_tls(ctx, sni, self.m.config.limits.tls_handshake_timeout)
                except ssl.SSLCertVerificationError as exc:
                    raise _CertRejected(f"certificate of {self.remote} not trusted "
                                        f"({exc.verify_message})") from None
                link.write(stream.initial_header())
                features = await self._open()
            elif self.m.policy.tls_required(self.remote):
                raise Failed("remote-server-not-found",
                             f"{self.remote} does not offer TLS, which we require")
        self.features = features
        self.peer_cert_valid = peer_cert_valid_for(link.ssl_object, self.remote, verify)
        if link.secure and not self.peer_cert_valid and self.m.policy.cert_required(self.remote):
            raise _CertRejected(f"the certificate of {self.remote} is not valid for it")

    async def _open(self) -> Element:
        """Read the peer's response header, then its features."""
        assert self.link is not None
        event = await self.link.next()
        if isinstance(event, Element) and event.xmlns == ns.STREAMS and event.name == "error":
            raise peer_error(event)
        if not isinstance(event, StreamOpened):
            raise StreamError("invalid-xml", "expected a stream header")
        features = await self._element()
        if features.xmlns != ns.STREAMS or features.name != "features":
            raise StreamError("invalid-xml", "expected stream features")
        return features

    async def _element(self) -> Element:
        """The next element; verify answers are dispatched, errors and closes raised."""
        assert self.link is not None
        while True:
            event = await self.link.next()
            if isinstance(event, StreamClosed):
                raise ConnectionClosed(f"{self.remote} closed the stream")
            if isinstance(event, StreamOpened):
                raise StreamError("invalid-xml", "unexpected stream header")
            if event.xmlns == ns.STREAMS and event.name == "error":
                raise peer_error(event)
            if event.xmlns == db.DIALBACK and event.name == "verify":
                self._verify_answer(event)
                continue
            return event

    # -- authentication ------------------------------------------------------------------
    async def _authenticate(self) -> None:
        assert self.link is not None
        self.state = "authenticating"
        mechs = self.features.find("mechanisms", ns.SASL)
        offered = [] if mechs is None else [m.text for m in mechs.find_all("mechanism", ns.SASL)]
        if "EXTERNAL" in offered and self.link.secure and self.m.tls.presents_cert(self.local):
            # XEP-0178 §3 step 7: the authorization identity, for backward compatibility.
            auth = Element("auth", ns.SASL, {"mechanism": "EXTERNAL"},
                           [base64.b64encode(self.local.encode()).decode()])
            self.link.send(auth)
            answer = await self._element()
            if answer.xmlns == ns.SASL and answer.name == "success":
                self.link.stream.set_limits(self.m.post_auth_limits)
                stream = self.link.stream
                assert isinstance(stream, InitiatingStream)
                stream.restart()
                self.link.events.clear()
                self.link.write(stream.initial_header())
                self.features = await self._open()
                self.authenticated_by = "EXTERNAL"
                self._send_unsent_verifies()
                return
            log.info("%s SASL EXTERNAL refused; trying dialback", self.label)
        await self._dialback()

    async def _dialback(self) -> None:
        assert self.link is not None
        stream = self.link.stream
        assert isinstance(stream, InitiatingStream)
        feature = self.features.find("dialback", db.DIALBACK_FEATURES)
        if feature is None and not stream.peer_supports_dialback:
            raise Failed("remote-server-not-found",
                         f"cannot authenticate to {self.remote}: no EXTERNAL, no dialback")
        key = db.generate_key(self.m.secret, self.remote, self.local, stream.peer_id)
        self.link.send(db.result_request(self.local, self.remote, key))
        self.state = "dialback"
        self._send_unsent_verifies()
        while True:
            el = await self._element()
            if el.xmlns != db.DIALBACK or el.name != "result":
                raise StreamError("not-authorized", f"<{el.name}/> before dialback completed")
            try:
                answer = db.parse(el)
            except db.DialbackError as exc:
                log.info("%s ignoring bad dialback result: %s", self.label, exc)
                continue
            if (answer.frm, answer.to) != (self.remote, self.local) or answer.type is None:
                # XEP-0220 §3.1: only an answer to a request sent on this stream counts.
                log.info("%s ignoring unsolicited dialback result", self.label)
                continue
            if answer.type == "valid":
                self.authenticated_by = "dialback"
                self.link.stream.set_limits(self.m.post_auth_limits)
                return
            if answer.type == "invalid":
                raise Failed("internal-server-error", f"{self.remote} rejected our dialback key")
            raise Failed("remote-server-timeout", f"{self.remote} answered dialback with "
                                                  f"{answer.condition or 'an error'}")

    def _send_unsent_verifies(self) -> None:
        assert self.link is not None
        for request in self._unsent_verifies:
            self.link.send(request)
        self._unsent_verifies.clear()

    def _verify_answer(self, el: Element) -> None:
        try:
            answer = db.parse(el)
        except db.DialbackError as exc:
            log.info("%s ignoring bad dialback verify: %s", self.label, exc)
            return
        fut = self.verifies.get(answer.stream_id or "")
        if (fut is None or answer.type is None
                or (answer.frm, answer.to) != (self.remote, self.local)):
            log.warning("%s ignoring unsolicited <db:verify/> answer", self.label)
            return
        self.verifies.pop(answer.stream_id or "", None)
        if not fut.done():
            fut.set_result(answer.type if answer.type != "error"
                           else f"error:{answer.condition or 'remote-server-not-found'}")

    # -- established ---------------------------------------------------------------------
    async def _serve(self) -> None:
        """Read until the peer closes or we have been idle for `idle_timeout`."""
        assert self.link is not None
        idle = self.m.options.idle_timeout
        while True:
            remaining = idle - (time.monotonic() - self.last_activity)
            if remaining <= 0 and not self.verifies:
                log.info("%s idle for %.0f s; closing", self.label, idle)
                self.state = "closed"
                self.m.forget_outgoing(self)
                await self.link.close(self.link.stream.footer(), wait_for_peer=2.0)
                return
            try:
                el = await self._element_or_timeout(max(remaining, 1.0))
            except ConnectionClosed:
                return
            if el is None:
                continue
            log.info("%s unexpected <%s/> on an outgoing stream", self.label, el.name)
            raise StreamError("unsupported-stanza-type",
                              "this stream carries stanzas in the other direction only")

    async def _element_or_timeout(self, timeout: float) -> Element | None:
        try:
            return await asyncio.wait_for(self._element(), timeout)
        except TimeoutError:
            return None

    async def close(self) -> None:
        """Shutdown: close our stream; what is still queued bounces."""
        if self.link is not None and self.state != "closed":
            self.state = "closed"
            await self.link.close(self.link.stream.footer())
