"""Federation plumbing: s2s listeners (port 5269 STARTTLS, XEP-0368 direct TLS), the table of
outgoing streams (exactly one per (local, remote) domain pair: RFC 6120 §10.1 ordering), and
dialback verification requests routed onto the right outgoing stream (XEP-0220 §2.1.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from typing import TYPE_CHECKING, Any

from blether.errors import StanzaError
from blether.s2s.certs import S2STLS, cert_paths
from blether.s2s.incoming import IncomingConnection
from blether.s2s.outgoing import OutgoingStream
from blether.s2s.policy import Policy
from blether.s2s.resolver import Resolver
from blether.xml.element import Element
from blether.xml.parser import ParserLimits

if TYPE_CHECKING:
    from blether.core.services import Services

log = logging.getLogger(__name__)


class S2SManager:
    def __init__(self, services: Services, options: Any) -> None:
        self.s = services
        self.config = services.config
        self.options = options
        lim = self.config.limits
        self.pre_auth_limits = ParserLimits(lim.pre_auth_stanza_bytes, lim.pre_auth_max_depth,
                                            lim.max_attributes, lim.pre_auth_max_elements, 4096)
        self.post_auth_limits = ParserLimits(lim.s2s_stanza_bytes, lim.max_depth,
                                             lim.max_attributes, lim.max_elements, 4096)
        self.policy = Policy(
            require_encryption=options.require_encryption,
            verify_certificates=options.verify_certificates,
            secure_auth=options.secure_auth,
            trusted_domains=frozenset(options.trusted_domains),
            insecure_domains=frozenset(options.insecure_domains))
        self.tls = S2STLS(cert_paths(services), ca_file=options.ca_file,
                          verify=options.verify_certificates,
                          min_version=self.config.tls.min_version)
        self.resolver = Resolver(dict(options.overrides), options.dns_servers)
        # XEP-0185 §3: a secret known only to this server; a fresh one per start by default.
        self.secret = options.dialback_secret or secrets.token_hex(32)
        self.outgoing: dict[tuple[str, str], OutgoingStream] = {}
        self.incoming: set[IncomingConnection] = set()
        self.servers: list[asyncio.Server] = []
        self.addresses: list[tuple[str, int, str]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False

    # -- listeners -----------------------------------------------------------------------
    async def start(self) -> None:
        opts = self.options
        binds = opts.bind if opts.bind is not None else list(self.config.c2s.bind)
        for host in binds:
            await self._listen(host, opts.port, direct_tls=False)
            if opts.tls_port is not None:
                await self._listen(host, opts.tls_port, direct_tls=True)

    async def _listen(self, host: str, port: int, *, direct_tls: bool) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(reader, writer, direct_tls)

        ssl_ctx = (self.tls.server_context(None, self.policy.request_client_cert(None, True))
                   if direct_tls else None)
        try:
            server = await asyncio.start_server(
                serve, host, port, ssl=ssl_ctx, reuse_address=True,
                ssl_handshake_timeout=(self.config.limits.tls_handshake_timeout
                                       if direct_tls else None))
        except OSError as exc:
            if {"bind", "port", "tls_port"} & self.options.model_fields_set:
                raise   # configured explicitly: fail like the c2s listener does
            # Default address and port taken (another server on this machine, e.g. a second
            # instance started for tests): keep serving clients; the log says why there is no
            # incoming federation.
            log.error("cannot listen for s2s on %s:%d: %s; incoming federation is disabled "
                      "there", host, port, exc)
            return
        self.servers.append(server)
        kind = "s2s direct TLS" if direct_tls else "s2s"
        for sock in server.sockets:
            addr = sock.getsockname()
            self.addresses.append((str(addr[0]), int(addr[1]), kind))
            log.info("listening for %s on %s:%d", kind, addr[0], addr[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     direct_tls: bool) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = IncomingConnection(self, reader, writer, direct_tls=direct_tls)
        if self.stopping:
            writer.close()
            return
        self.incoming.add(conn)
        try:
            await conn.run()
        finally:
            self.incoming.discard(conn)

    # -- outgoing ------------------------------------------------------------------------
    def stream_for(self, local: str, remote: str) -> OutgoingStream:
        """The one outgoing stream of the pair, started if there is none."""
        key = (local, remote)
        out = self.outgoing.get(key)
        if out is None or out.state == "closed":
            out = OutgoingStream(self, local, remote)
            self.outgoing[key] = out
            task = asyncio.get_running_loop().create_task(out.run(),
                                                          name=f"s2s {local}->{remote}")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return out

    def forget_outgoing(self, out: OutgoingStream) -> None:
        if self.outgoing.get((out.local, out.remote)) is out:
            del self.outgoing[(out.local, out.remote)]

    async def send(self, stanza: Element, local: str, remote: str) -> None:
        if self.stopping:
            await self.bounce(stanza, StanzaError("remote-server-timeout",
                                                  "the server is shutting down"))
            return
        error = self.stream_for(local, remote).send(stanza)
        if error is not None:
            await self.bounce(stanza, error)

    async def bounce(self, stanza: Element, error: StanzaError) -> None:
        """Return a stanza that cannot be delivered to its local sender (never an error for
        an error: the router checks)."""
        try:
            await self.s.router.bounce(stanza, error)
        except Exception:
            log.exception("bouncing a stanza failed")

    async def verify(self, local: str, remote: str, stream_id: str, key: str) -> str:
        """Ask `remote`'s authoritative server about a key: 'valid', 'invalid' or
        'error:<condition>' (XEP-0220 §2.1.2; the answer comes on our outgoing stream)."""
        if self.stopping:
            return "error:remote-server-timeout"
        fut = self.stream_for(local, remote).request_verify(stream_id, key)
        try:
            return await asyncio.wait_for(asyncio.shield(fut),
                                          self.options.connect_timeout + 5)
        except TimeoutError:
            return "error:remote-server-timeout"

    # -- shutdown ------------------------------------------------------------------------
    async def stop(self) -> None:
        self.stopping = True
        for server in self.servers:
            server.close()
        for conn in list(self.incoming):
            await conn.shutdown()
        for out in list(self.outgoing.values()):
            await out.close()
        if self.tasks:
            _done, pending = await asyncio.wait(list(self.tasks), timeout=5)
            for task in pending:
                task.cancel()
        for server in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
