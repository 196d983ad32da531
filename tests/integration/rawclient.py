"""A minimal raw-socket XMPP client for tests that need exact bytes on the wire.

slixmpp is a well-behaved client; attack and edge-case tests need one that sends exactly what
it is told: a bad header, a comment, a stanza split over several writes, `<auth/>` before
TLS. This client speaks RFC 6120 just far enough to get there: stream header (§4.7), STARTTLS
(§5) or XEP-0368 direct TLS, SASL SCRAM (RFC 5802, via `scramp.ScramClient`, including
`tls-server-end-point` and `tls-unique` channel binding, RFC 5929) and PLAIN (RFC 4616),
resource binding (§7). Replies are parsed with the project's own incremental parser, with
generous limits (we parse what the server sends, not what an attacker sends).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import scramp

from blether.xml.element import Element, serialize
from blether.xml.parser import (
    ElementParsed,
    ParserLimits,
    StreamFooter,
    StreamHeader,
    XMLError,
    XMLStreamParser,
)
from integration.harness import ServerProcess

STREAMS = "http://etherx.jabber.org/streams"
CLIENT = "jabber:client"
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"
PING_NS = "urn:xmpp:ping"

# What the server sends is trusted to be big but sane.
_CLIENT_LIMITS = ParserLimits(64 * 1024 * 1024, 1000, 1000, 10_000_000, 65536)


@dataclass(frozen=True)
class Closed:
    """The TCP connection ended (EOF or reset)."""


Event = StreamHeader | Element | StreamFooter | Closed


def header(to: str = "localhost", *, version: str | None = "1.0", xmlns: str = CLIENT,
           stream_ns: str = STREAMS, prefix: str = "stream", extra: str = "",
           decl: bool = True) -> bytes:
    """An initial stream header (RFC 6120 §4.7); every part can be changed for attacks."""
    attrs = [f"xmlns='{xmlns}'", f"xmlns:{prefix}='{stream_ns}'" if prefix
             else f"xmlns='{stream_ns}'"]
    if not prefix:  # default-namespaced stream element: content namespace not declared
        attrs = [attrs[1]]
    if to is not None:
        attrs.append(f"to='{to}'")
    if version is not None:
        attrs.append(f"version='{version}'")
    name = f"{prefix}:stream" if prefix else "stream"
    text = f"<{name} {' '.join(attrs)}{(' ' + extra) if extra else ''}>"
    return ((b"<?xml version='1.0'?>" if decl else b"") + text.encode())


def client_context(max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test server's certificate is self-signed
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 domain: str) -> None:
        self.reader = reader
        self.writer = writer
        self.domain = domain
        self.parser = XMLStreamParser(_CLIENT_LIMITS)
        self.events: deque[Event] = deque()
        self.eof = False
        self.received = bytearray()   # every byte the server sent (after TLS: decrypted)
        self.jid: str | None = None
        self.lang: str | None = None  # xml:lang of our stream headers (RFC 6120 §4.7.4)
        self.features: Element | None = None
        self.stream_header: StreamHeader | None = None

    # -- connection ----------------------------------------------------------------------
    @classmethod
    async def connect(cls, host: str, port: int, domain: str = "localhost", *,
                      direct_tls: bool = False,
                      max_version: ssl.TLSVersion | None = None) -> RawClient:
        ssl_ctx = client_context(max_version) if direct_tls else None
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            host, port, ssl=ssl_ctx, server_hostname=domain if ssl_ctx else None), 10)
        return cls(reader, writer, domain)

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        obj = self.writer.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    async def send(self, data: bytes | str | Element) -> None:
        if isinstance(data, Element):
            data = serialize(data, CLIENT)
        if isinstance(data, str):
            data = data.encode()
        self.writer.write(data)
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)

    # -- reading -------------------------------------------------------------------------
    async def _fill(self, timeout: float) -> bool:
        """Read once; False on timeout. EOF queues a Closed event."""
        if self.eof:
            return False
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.eof = True
            self.events.append(Closed())
            return True
        self.received += data
        try:
            parsed = self.parser.feed(data)
        except XMLError as exc:
            raise AssertionError(f"the server sent bad XML ({exc}): {bytes(self.received)!r}"
                                 ) from None
        for ev in parsed:
            self.events.append(ev.element if isinstance(ev, ElementParsed) else ev)
        return True

    async def next(self, timeout: float = 5.0) -> Event:
        """The next event from the server; AssertionError if none arrives in time."""
        deadline = time.monotonic() + timeout
        while not self.events:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await self._fill(remaining):
                if self.events:
                    break
                raise AssertionError(f"nothing from the server within {timeout}s; so far: "
                                     f"{bytes(self.received)[-2000:]!r}")
        return self.events.popleft()

    async def element(self, timeout: float = 5.0) -> Element:
        ev = await self.next(timeout)
        if not isinstance(ev, Element):
            raise AssertionError(f"expected an element, got {ev!r}; stream so far: "
                                 f"{bytes(self.received)[-2000:]!r}")
        return ev

    async def stanza(self, where: object = None, timeout: float = 5.0) -> Element:
        """The next element satisfying `where(el)` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            el = await self.element(max(0.01, deadline - time.monotonic()))
            if where is None or where(el):  # type: ignore[operator]
                return el

    async def silence(self, wait: float = 0.5) -> None:
        """Assert the server sends nothing (and keeps the connection open) for `wait` s."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.events:
                raise AssertionError(f"unexpected: {self.events[0]!r}")
            await self._fill(max(0.0, deadline - time.monotonic()))
        if self.events:
            raise AssertionError(f"unexpected: {self.events[0]!r}")

    async def stream_error(self, timeout: float = 5.0) -> str:
        """Read up to the stream error; check the closing tag and TCP close follow.

        Returns the condition's local name; asserts its namespace is RFC 6120's.
        """
        deadline = time.monotonic() + timeout
        while True:
            ev = await self.next(max(0.01, deadline - time.monotonic()))
            if isinstance(ev, StreamHeader):
                continue  # the server sends its header first if it had not yet (§4.9.1.2)
            if isinstance(ev, Element) and ev.xmlns == STREAMS and ev.name == "error":
                break
            if isinstance(ev, Element) and ev.xmlns == STREAMS and ev.name == "features":
                continue
            if isinstance(ev, Element) and ev.name in ("iq", "message", "presence"):
                continue  # stanzas already under way before the error
            raise AssertionError(f"expected a stream error, got {ev!r}; stream so far: "
                                 f"{bytes(self.received)[-2000:]!r}")
        conds = [c for c in ev.elements() if c.name != "text"]
        assert len(conds) == 1, f"one condition expected: {ev!r}"
        assert conds[0].xmlns == STREAM_ERRORS, f"wrong condition namespace: {ev!r}"
        footer = await self.next(max(0.01, deadline - time.monotonic()))
        assert isinstance(footer, StreamFooter), f"no </stream:stream> after the error: {footer!r}"
        closed = await self.next(max(0.01, deadline - time.monotonic()))
        assert isinstance(closed, Closed), f"TCP not closed after the error: {closed!r}"
        return conds[0].name

    async def closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed TCP (anything still unread is discarded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while self.events:
                if isinstance(self.events.popleft(), Closed):
                    return True
            await self._fill(max(0.0, deadline - time.monotonic()))
        return False

    # -- negotiation ---------------------------------------------------------------------
    async def open_stream(self, raw: bytes | None = None, timeout: float = 5.0) -> Element:
        """Send a stream header; return the features after the server's header."""
        self.parser.reset()
        extra = f"xml:lang='{self.lang}'" if self.lang else ""
        await self.send(raw if raw is not None else header(self.domain, extra=extra))
        ev = await self.next(timeout)
        assert isinstance(ev, StreamHeader), f"expected the server's header, got {ev!r}"
        self.stream_header = ev
        features = await self.element(timeout)
        assert features.xmlns == STREAMS and features.name == "features", features
        self.features = features
        return features

    def mechanisms(self) -> list[str]:
        assert self.features is not None
        mechs = self.features.find("mechanisms", SASL_NS)
        return [] if mechs is None else [m.text for m in mechs.find_all("mechanism", SASL_NS)]

    async def starttls(self, max_version: ssl.TLSVersion | None = None) -> Element:
        await self.send(f"<starttls xmlns='{TLS_NS}'/>")
        proceed = await self.element()
        assert proceed.name == "proceed" and proceed.xmlns == TLS_NS, proceed
        await self.writer.start_tls(client_context(max_version), server_hostname=self.domain)
        return await self.open_stream()

    async def sasl_scram(self, user: str, password: str, mech: str = "SCRAM-SHA-256",
                         cb_type: str | None = None) -> Element:
        """One SCRAM exchange; returns the server's final <success/> or <failure/>.

        A successful exchange is checked end to end (the server's signature is verified).
        """
        cb = None
        if cb_type is not None:
            obj = self.ssl_object
            assert obj is not None, "channel binding needs TLS"
            cb = (cb_type, obj)
        client = scramp.ScramClient([mech], user, password, channel_binding=cb)
        await self.send(sasl("auth", client.get_client_first().encode(), mechanism=mech))
        challenge = await self.element()
        if challenge.name != "challenge":
            return challenge
        client.set_server_first(b64(challenge).decode())
        await self.send(sasl("response", client.get_client_final().encode()))
        final = await self.element()
        if final.name == "success":
            client.set_server_final(b64(final).decode())  # mutual authentication
        return final

    async def sasl_plain(self, user: str, password: str, authzid: str = "") -> Element:
        data = f"{authzid}\0{user}\0{password}".encode()
        await self.send(sasl("auth", data, mechanism="PLAIN"))
        return await self.element()

    async def bind(self, resource: str | None = None) -> str:
        res = f"<resource>{resource}</resource>" if resource else ""
        await self.send(f"<iq type='set' id='bind1'><bind xmlns='{BIND_NS}'>{res}</bind></iq>")
        reply = await self.stanza(lambda e: e.name == "iq" and e.attrs.get("id") == "bind1")
        assert reply.attrs.get("type") == "result", f"bind failed: {reply!r}"
        bind = reply.find("bind", BIND_NS)
        assert bind is not None
        jid = bind.find_text("jid", BIND_NS)
        assert jid
        self.jid = jid
        return jid

    @classmethod
    async def login(cls, host: str, port: int, jid: str, password: str = "secret", *,
                    direct_tls: bool = False, mech: str = "SCRAM-SHA-256",
                    cb_type: str | None = None, resource: str | None = None,
                    max_version: ssl.TLSVersion | None = None,
                    lang: str | None = None) -> RawClient:
        """Connect, secure, authenticate and bind: a ready session."""
        user, domain = jid.split("@", 1)
        c = await cls.connect(host, port, domain, direct_tls=direct_tls,
                              max_version=max_version)
        c.lang = lang
        await c.open_stream()
        if not direct_tls:
            await c.starttls(max_version)
        if mech == "PLAIN":
            final = await c.sasl_plain(user, password)
        else:
            final = await c.sasl_scram(user, password, mech, cb_type)
        assert final.name == "success", f"authentication failed: {final!r}"
        features = await c.open_stream()
        assert features.find("bind", BIND_NS) is not None, features
        await c.bind(resource)
        return c

    async def ping(self, to: str | None = None, timeout: float = 5.0) -> float:
        """XEP-0199 ping (to the server by default); returns the round trip in seconds."""
        iq_id = f"ping-{time.monotonic_ns()}"
        target = to or self.domain
        start = time.monotonic()
        await self.send(f"<iq type='get' id='{iq_id}' to='{target}'>"
                        f"<ping xmlns='{PING_NS}'/></iq>")
        reply = await self.stanza(lambda e: e.name == "iq" and e.attrs.get("id") == iq_id,
                                  timeout)
        assert reply.attrs.get("type") == "result", reply
        return time.monotonic() - start


def sasl(name: str, data: bytes | None, **attrs: str) -> str:
    """A SASL element with a base64 payload ('=' for empty, RFC 6120 §6.4.2)."""
    a = "".join(f" {k}='{v}'" for k, v in attrs.items())
    if data is None:
        return f"<{name} xmlns='{SASL_NS}'{a}/>"
    payload = base64.b64encode(data).decode() if data else "="
    return f"<{name} xmlns='{SASL_NS}'{a}>{payload}</{name}>"


def b64(el: Element) -> bytes:
    text = el.text.strip()
    return b"" if text in ("", "=") else base64.b64decode(text)


def condition(el: Element, ns: str = STANZA_ERRORS) -> str | None:
    """The defined condition of a stanza error (or of a SASL failure with ns=SASL_NS)."""
    err = el.find("error") if ns == STANZA_ERRORS else el
    if err is None:
        return None
    for child in err.elements():
        if child.xmlns == ns and child.name != "text":
            return child.name
    return None


# -- fixtures' helpers --------------------------------------------------------------------

# Test servers never listen on 5269 (the s2s module's default) and never try to reach other
# domains over the network: a stanza to a remote domain is then answered at once with
# remote-server-not-found (RFC 6120 §8.3.3.16) instead of after a DNS lookup and a timeout.
NO_FEDERATION = "[module_options.s2s]\nenabled = false\n"

@contextlib.contextmanager
def running_server(data_dir: Path, config_text: str | None = None,
                   domains: tuple[str, ...] = ("localhost",),
                   relaxed: bool | tuple[str, ...] = True) -> Iterator[ServerProcess]:
    """A server with its own configuration; on exit it must stop cleanly, without a
    traceback in its log (what tests/integration/conftest.py checks for its `server`).
    `relaxed=False` keeps the production per-IP connection rate and read rate."""
    proc = ServerProcess(data_dir, domains, config_text, relaxed=relaxed)
    proc.start()
    try:
        yield proc
    finally:
        code = proc.stop()
        log = proc.log()
        assert "Traceback" not in log, f"the server logged a traceback:\n{log[-5000:]}"
        assert code == 0, f"server exited with {code}:\n{log[-3000:]}"


class RawClients:
    """Raw clients opened by one test, all closed at its end."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.clients: list[RawClient] = []

    async def connect(self, *, direct_tls: bool = False,
                      max_version: ssl.TLSVersion | None = None) -> RawClient:
        s = self.server
        c = await RawClient.connect(s.bind, s.tls_port if direct_tls else s.port, s.domain,
                                    direct_tls=direct_tls, max_version=max_version)
        self.clients.append(c)
        return c

    async def login(self, jid: str, password: str = "secret", **kw: Any) -> RawClient:
        s = self.server
        port = s.tls_port if kw.get("direct_tls") else s.port
        c = await RawClient.login(s.bind, port, jid, password, **kw)
        self.clients.append(c)
        return c

    async def secured(self) -> RawClient:
        """Connected, STARTTLS done, the post-TLS features read: ready for SASL."""
        c = await self.connect()
        await c.open_stream()
        await c.starttls()
        return c

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
