"""A minimal, fast XMPP client for load generation (RFC 6120 §4-§7, RFC 6121 §2.1.3, §4.2).

One `asyncio.Protocol` per connection, no task per connection once logged in. Negotiation
(STARTTLS via `loop.start_tls`, SASL SCRAM-SHA-1, resource binding, roster get, initial
presence) parses the server's XML with ElementTree's pull parser. Once a session is set up, a
scenario switches it to a *sink*: raw received bytes go to a callback that scans them for the
benchmark's tokens (see `tokens.py`) without parsing XML, so the generator's cost per stanza
stays a small fraction of the server's and the generator is never the bottleneck.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import re
import ssl
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

from bench.loadgen.scram import ScramError, ScramSha1Client

STREAMS = "http://etherx.jabber.org/streams"
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
ROSTER_NS = "jabber:iq:roster"
CLIENT = "{jabber:client}"

Sink = Callable[[bytes], None]


class LoginError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    """Where the server under test listens."""

    host: str
    port: int
    domain: str


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The client TLS context, made once. The servers use the benchmark's self-signed
    certificate; the generator measures cost, not trust, so it does not verify (every
    server gets the same treatment)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class XMPPConnection(asyncio.Protocol):
    """One client stream. Elements (top-level children of the stream) are queued until a
    scenario switches the connection to a byte sink with `use_sink()`."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.jid = ""
        self.sink: Sink | None = None
        self.on_element: Callable[[ET.Element], None] | None = None
        self.queue: deque[ET.Element] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.ended: asyncio.Future[None] = self.loop.create_future()  # got </stream:stream>
        self.stream_ended = False
        self._parser: ET.XMLPullParser[ET.Element] | None = None
        self._root: ET.Element | None = None
        self._depth = 0
        self.reset_parser()

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink(data)
            return
        parser = self._parser
        if parser is None:
            return
        try:
            parser.feed(data)
            for event, el in cast(Iterator[tuple[str, ET.Element]], parser.read_events()):
                if event == "start":
                    self._depth += 1
                    if self._depth == 1:
                        self._root = el  # the stream header
                    continue
                self._depth -= 1
                if self._depth == 1:
                    self.queue.append(el)
                    if self._root is not None:
                        del self._root[:]  # keep memory flat on long streams
                elif self._depth == 0:
                    self.stream_ended = True
                    if not self.ended.done():
                        self.ended.set_result(None)
        except ET.ParseError:
            self.abort()
            return
        handler = self.on_element
        if handler is not None:
            while self.queue:
                handler(self.queue.popleft())
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- helpers ------------------------------------------------------------------------
    def reset_parser(self) -> None:
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._root = None
        self._depth = 0

    def handle_elements(self, handler: Callable[[ET.Element], None] | None) -> None:
        """Hand every element (those already queued first) to `handler` as it arrives."""
        self.on_element = handler
        if handler is not None:
            while self.queue:
                handler(self.queue.popleft())

    def use_sink(self, sink: Sink | None) -> None:
        """From now on, hand received bytes to `sink` (None: drop them) instead of parsing."""
        self.sink = sink if sink is not None else _discard
        self._parser = None
        self._root = None
        self.queue.clear()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def open_stream(self) -> None:
        self.send(("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                   "xmlns:stream='http://etherx.jabber.org/streams' "
                   f"to='{self.domain}' version='1.0'>").encode())

    async def next(self, timeout: float) -> ET.Element:
        deadline = self.loop.time() + timeout
        while not self.queue:
            if self.closed.done() or self.stream_ended:
                raise LoginError("the server closed the stream")
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise LoginError("timed out waiting for the server")
            self._waiter = self.loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, remaining)
            except TimeoutError:
                raise LoginError("timed out waiting for the server") from None
            finally:
                self._waiter = None
        return self.queue.popleft()

    async def expect(self, pred: Callable[[ET.Element], bool], what: str,
                     timeout: float, other: Callable[[ET.Element], None] | None = None
                     ) -> ET.Element:
        """The next element matching `pred`; others go to `other` (or are dropped)."""
        while True:
            el = await self.next(timeout)
            if el.tag == f"{{{STREAMS}}}error":
                raise LoginError(f"stream error while waiting for {what}: "
                                 f"{[c.tag for c in el]}")
            if pred(el):
                return el
            if other is not None:
                other(el)

    async def starttls(self, ctx: ssl.SSLContext) -> None:
        assert self.transport is not None
        self.reset_parser()
        transport = await self.loop.start_tls(self.transport, self, ctx,
                                              server_hostname=self.domain)
        if transport is None:
            raise LoginError("TLS handshake failed")
        self.transport = transport

    async def close(self, timeout: float = 5.0) -> None:
        """Close the stream politely (RFC 6120 §4.4): send the closing tag, wait for the
        server's (or for it to drop the connection), then close TCP."""
        if self.transport is None:
            return
        self.send(b"</stream:stream>")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.wait([self.closed, self.ended],
                                                return_when=asyncio.FIRST_COMPLETED), timeout)
        self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _discard(_data: bytes) -> None:
    return None


def _is(tag: str) -> Callable[[ET.Element], bool]:
    return lambda el: el.tag == tag


async def login(target: Target, user: str, password: str, *, resource: str = "bench",
                starttls: bool = False, roster: bool = True, presence: bool = True,
                local_addr: tuple[str, int] | None = None, timeout: float = 30.0,
                other: Callable[[XMPPConnection, ET.Element], None] | None = None
                ) -> XMPPConnection:
    """Connect, (STARTTLS), SCRAM-SHA-1, bind, (roster get), (initial presence and its echo).

    `other` receives elements that arrive while waiting for something else (e.g. subscription
    requests during roster setup).
    """
    loop = asyncio.get_running_loop()
    _transport, conn = await asyncio.wait_for(loop.create_connection(
        lambda: XMPPConnection(target.domain), target.host, target.port,
        local_addr=local_addr), timeout)
    try:
        await _negotiate(conn, user, password, resource, starttls, roster, presence,
                         timeout, other)
    except BaseException:
        conn.abort()
        raise
    return conn


async def _negotiate(conn: XMPPConnection, user: str, password: str, resource: str,
                     starttls: bool, roster: bool, presence: bool, timeout: float,
                     other: Callable[[XMPPConnection, ET.Element], None] | None) -> None:
    features_tag = f"{{{STREAMS}}}features"
    conn.open_stream()
    features = await conn.expect(_is(features_tag), "stream features", timeout)
    if starttls:
        if features.find(f"{{{TLS_NS}}}starttls") is None:
            raise LoginError("the server does not offer STARTTLS")
        conn.send(f"<starttls xmlns='{TLS_NS}'/>".encode())
        reply = await conn.next(timeout)
        if reply.tag != f"{{{TLS_NS}}}proceed":
            raise LoginError(f"STARTTLS refused: {reply.tag}")
        await asyncio.wait_for(conn.starttls(tls_context()), timeout)
        conn.open_stream()
        features = await conn.expect(_is(features_tag), "stream features after TLS", timeout)
    mechanisms = [m.text for m in features.iter(f"{{{SASL_NS}}}mechanism")]
    if "SCRAM-SHA-1" not in mechanisms:
        raise LoginError(f"SCRAM-SHA-1 not offered (offered: {mechanisms})")
    scram = ScramSha1Client(user, password)
    conn.send(f"<auth xmlns='{SASL_NS}' mechanism='SCRAM-SHA-1'>"
              f"{base64.b64encode(scram.first()).decode()}</auth>".encode())
    challenge = await conn.next(timeout)
    if challenge.tag != f"{{{SASL_NS}}}challenge":
        raise LoginError(f"SASL failed at the first step: {[c.tag for c in challenge]}")
    try:
        response = scram.final(base64.b64decode(challenge.text or ""))
    except ScramError as exc:
        raise LoginError(str(exc)) from None
    conn.send(f"<response xmlns='{SASL_NS}'>{base64.b64encode(response).decode()}"
              "</response>".encode())
    outcome = await conn.next(timeout)
    if outcome.tag != f"{{{SASL_NS}}}success":
        raise LoginError(f"authentication failed for {user}: {[c.tag for c in outcome]}")
    if outcome.text:
        try:
            scram.verify(base64.b64decode(outcome.text))
        except ScramError as exc:
            raise LoginError(str(exc)) from None
    conn.reset_parser()
    conn.open_stream()
    await conn.expect(_is(features_tag), "stream features after SASL", timeout)
    conn.send(f"<iq type='set' id='bind1'><bind xmlns='{BIND_NS}'><resource>{resource}"
              "</resource></bind></iq>".encode())
    iq_tag = f"{CLIENT}iq"
    bound = await conn.expect(lambda el: el.tag == iq_tag and el.get("id") == "bind1",
                              "bind result", timeout)
    jid = bound.findtext(f"{{{BIND_NS}}}bind/{{{BIND_NS}}}jid")
    if bound.get("type") != "result" or not jid:
        raise LoginError(f"bind failed for {user}")
    conn.jid = jid
    forward = (lambda el: other(conn, el)) if other is not None else None
    if roster:
        conn.send(f"<iq type='get' id='roster1'><query xmlns='{ROSTER_NS}'/></iq>".encode())
        await conn.expect(lambda el: el.tag == iq_tag and el.get("id") == "roster1",
                          "roster result", timeout, forward)
    if presence:
        # RFC 6121 §4.2.2: the server sends initial presence back to the sending resource
        # too; its arrival is the end of the login.
        conn.send(b"<presence/>")
        presence_tag = f"{CLIENT}presence"
        await conn.expect(lambda el: el.tag == presence_tag and el.get("from") == jid
                          and el.get("type") is None, "own initial presence", timeout, forward)


_PING_IQ = re.compile(rb"<iq\b([^>]*)>\s*<ping\s+xmlns=['\"]urn:xmpp:ping['\"]")
_ATTR = re.compile(rb"""\b(id|from)=(?:'([^']*)'|"([^"]*)")""")


def ping_responder(conn: XMPPConnection) -> Sink:
    """A sink for an idle session that answers XEP-0199 pings from the server (as clients
    do: a server may close sessions that stay silent) and drops everything else. A ping cut
    by a read boundary goes unanswered; servers retry or tolerate that."""

    def sink(data: bytes) -> None:
        if b"urn:xmpp:ping" not in data:
            return
        for m in _PING_IQ.finditer(data):
            attrs = {k: (a or b) for k, a, b in _ATTR.findall(m.group(1))}
            if b"id" in attrs:
                to = b" to='" + attrs[b"from"] + b"'" if b"from" in attrs else b""
                conn.send(b"<iq type='result' id='" + attrs[b"id"] + b"'" + to + b"/>")

    return sink
