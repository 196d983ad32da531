"""The component listener and the asyncio driver of one component connection (XEP-0114).

read → ComponentStream.receive → events handled in order → write, like the c2s driver: one
task per connection, output batched into one transport write per event-loop turn and bounded
(DESIGN.md §1.5: a component that stops reading is disconnected, it cannot grow our memory).

The stream: header → our header with a fresh id → <handshake/> within the negotiation timeout
→ stanzas both ways. There is no TLS in XEP-0114; the listener binds to loopback by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Protocol

from blether import ns
from blether.errors import StreamError
from blether.features.component.stream import (
    STANZA_NAMESPACES,
    BadStanza,
    ComponentStream,
    handshake_ok,
    inbound,
)
from blether.stanza import STANZA_NAMES, can_bounce, error_reply
from blether.stream.connection import StreamClosed, StreamEvent, StreamOpened
from blether.transport.accept import ConnectionTable, tune_socket
from blether.transport.output import BatchedOutput
from blether.xml.element import Element
from blether.xml.parser import ParserLimits

if TYPE_CHECKING:
    from blether.core.services import Services

log = logging.getLogger(__name__)


class Registry(Protocol):
    """What a connection needs from the module: secrets and the table of connected ones."""

    secrets: dict[str, str]
    keepalive_interval: float

    def claim(self, conn: ComponentConnection) -> bool: ...

    def release(self, conn: ComponentConnection) -> None: ...


class ComponentConnection:
    def __init__(self, services: Services, registry: Registry, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, post_auth_limits: ParserLimits) -> None:
        self.s = services
        self.registry = registry
        self.reader = reader
        self.writer = writer
        lim = services.config.limits
        # Before the handshake only a header and one small element are expected.
        pre_auth = ParserLimits(lim.pre_auth_stanza_bytes, lim.pre_auth_max_depth,
                                lim.max_attributes, lim.pre_auth_max_elements, 4096)
        self.post_auth_limits = post_auth_limits
        self.stream = ComponentStream(frozenset(registry.secrets), pre_auth)
        peer = writer.get_extra_info("peername")
        self.ip = str(peer[0]) if peer else ""
        self.domain: str | None = None        # the component's name, once the header named it
        self.authenticated = False
        self.out = BatchedOutput(writer, services.config.limits.outbound_buffer_bytes,
                                 lambda: self.label, peer="component")

    @property
    def label(self) -> str:
        return f"[component {self.domain or '?'} {self.ip} {id(self):x}]"

    # -- output --------------------------------------------------------------------------
    def send(self, stanza: Element) -> bool:
        """Write a routed stanza (in jabber:client) to the component; False if the stream is
        already closing (the caller bounces it)."""
        if not self.authenticated or self._closing:
            return False
        self.write(self.stream.element(stanza))
        return True

    @property
    def _closing(self) -> bool:
        return self.out.closing

    @_closing.setter
    def _closing(self, value: bool) -> None:
        self.out.closing = value

    def write(self, data: bytes) -> None:
        self.out.write(data)

    def _flush(self) -> None:
        self.out.flush()

    # -- main loop -----------------------------------------------------------------------
    async def run(self) -> None:
        deadline = time.monotonic() + self.s.config.limits.negotiation_timeout
        try:
            while not self._closing:
                if self.authenticated:
                    timeout = self.registry.keepalive_interval
                else:
                    timeout = max(0.0, deadline - time.monotonic())
                try:
                    data = await asyncio.wait_for(self.reader.read(65536), timeout)
                except TimeoutError:
                    if not self.authenticated:
                        raise StreamError("connection-timeout",
                                          "no handshake within the negotiation timeout") from None
                    # A whitespace keepalive (RFC 6120 §4.6.1), as Prosody sends components
                    # after a read timeout: if the component is gone, the write fails in the
                    # end and the connection, and with it the domain, is released.
                    self.write(b" ")
                    continue
                if not data:
                    break
                for event in self.stream.receive(data):
                    await self._handle(event)
                    if self._closing:
                        break
        except StreamError as exc:
            log.info("%s stream error: %s", self.label, exc)
            self.write(self.stream.error(exc))
            self._flush()
        except (ConnectionError, OSError) as exc:
            log.info("%s connection lost: %s", self.label, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s internal error; closing the stream", self.label)
            self.write(self.stream.error(StreamError("internal-server-error")))
            self._flush()
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        self._closing = True
        if self.authenticated:
            self.authenticated = False
            self.registry.release(self)
            log.info("%s disconnected", self.label)
        self._flush()
        with contextlib.suppress(Exception):
            self.writer.close()

    async def close(self, error: StreamError | None = None) -> None:
        """Server-initiated close: stream error (if any), closing tag, then TCP close."""
        if self._closing:
            return
        self.write(self.stream.error(error) if error is not None else self.stream.footer())
        self._closing = True
        self._flush()
        self.writer.close()

    # -- events --------------------------------------------------------------------------
    async def _handle(self, event: StreamEvent) -> None:
        if isinstance(event, StreamError):
            raise event
        if isinstance(event, StreamOpened):
            # XEP-0114 §3: the header named a configured component: answer with ours (and its
            # id); there are no stream features.
            self.domain = event.to
            self.write(self.stream.header())
            return
        if isinstance(event, StreamClosed):
            self.write(self.stream.footer())
            self._closing = True
            return
        el = event
        if el.xmlns == ns.STREAMS and el.name == "error":
            log.info("%s the component sent a stream error: %r", self.label, el)
            self._closing = True
            return
        if not self.authenticated:
            if el.name == "handshake" and el.xmlns == ns.COMPONENT:
                self._handshake(el)
                return
            raise StreamError("not-authorized", "send the <handshake/> first (XEP-0114)")
        if el.name in STANZA_NAMES and el.xmlns in STANZA_NAMESPACES:
            await self._stanza(el)
            return
        raise StreamError("unsupported-stanza-type", f"unexpected <{el.name}/>")

    def _handshake(self, el: Element) -> None:
        assert self.domain is not None
        secret = self.registry.secrets[self.domain]
        if not handshake_ok(el, self.stream.stream_id, secret):
            # XEP-0114 §3: MUST close the stream and TCP, SHOULD say <not-authorized/>.
            log.warning("%s handshake failed (wrong secret)", self.label)
            raise StreamError("not-authorized", "the handshake does not match the secret")
        if not self.registry.claim(self):
            # XEP-0114 §3 allows <conflict/> for a name the server will not service now.
            # Like Prosody's default (component_conflict_resolve = "kick_new"), the
            # connection already serving the domain stays and the new one is refused.
            log.warning("%s refused: the component is already connected", self.label)
            raise StreamError("conflict", "the component is already connected")
        self.authenticated = True
        self.stream.set_limits(self.post_auth_limits)
        self.write(self.stream.handshake_element())
        log.info("%s authenticated", self.label)

    async def _stanza(self, el: Element) -> None:
        assert self.domain is not None
        try:
            stanza, to, frm = inbound(el, self.domain)
        except BadStanza as bad:
            if can_bounce(bad.stanza):
                # The error goes straight back to the component: it is the sender, and a
                # 'to' that is not a JID could not be the error's 'from'.
                origin = self.s.config.hosts[0] if bad.error.condition == "jid-malformed" \
                    else None
                self.send(error_reply(bad.stanza, bad.error, from_=origin))
            return
        await self.s.router.route(stanza, to, frm)


class ComponentListener:
    """The TCP listener for components, with the per-IP cap the c2s listener uses."""

    def __init__(self, services: Services, registry: Registry,
                 post_auth_limits: ParserLimits) -> None:
        self.s = services
        self.registry = registry
        self.post_auth_limits = post_auth_limits
        self.servers: list[asyncio.Server] = []
        self.table: ConnectionTable[ComponentConnection] = ConnectionTable()
        self.connections = self.table.connections
        self.tasks = self.table.tasks
        self.per_ip = self.table.per_ip
        self.addresses: list[tuple[str, int]] = []

    async def start(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        self.servers.append(server)
        for sock in server.sockets:
            addr = sock.getsockname()
            self.addresses.append((str(addr[0]), int(addr[1])))
            log.info("listening for components on %s:%d", addr[0], addr[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tune_socket(writer)
        conn = ComponentConnection(self.s, self.registry, reader, writer, self.post_auth_limits)
        ip = conn.ip
        if self.per_ip[ip] >= self.s.config.limits.connections_per_ip:
            log.warning("refusing component connection from %s: %d already open", ip,
                        self.per_ip[ip])
            conn.write(conn.stream.error(StreamError("policy-violation",
                                                     "too many connections from your address")))
            conn._flush()
            writer.close()
            return
        await self.table.run(conn, ip, conn.run)

    async def shutdown(self, timeout: float = 5.0) -> None:
        """RFC 6120 §4.9.3.22: <system-shutdown/> to every component, then wait for them."""
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            await conn.close(StreamError("system-shutdown", "Server is shutting down"))
        if self.tasks:
            _done, pending = await asyncio.wait(list(self.tasks), timeout=timeout)
            for t in pending:
                t.cancel()
        for server in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
