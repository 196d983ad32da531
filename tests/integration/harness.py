"""A real Blether server in a subprocess on free ports, and real slixmpp clients over TCP.

Scenario tests read like the RFC examples: `await alice.send("<presence to='…' type='subscribe'/>")`
then `await bob.expect("<presence from='…' type='subscribe'/>")`, where the expected XML is a
mask: its attributes and children must be present in the received stanza (extra ones allowed).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher.base import MatcherBase

BLETHER = [sys.executable, "-m", "blether.cli"]
CLIENT_NS = "jabber:client"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RELAXED_LIMITS = {"connection_rate_per_ip": "0", "c2s_read_rate": "0"}


def relax_single_ip_limits(text: str, keys: tuple[str, ...] = tuple(RELAXED_LIMITS)) -> str:
    """Lift the per-IP connection rate and the per-connection read rate, unless set.

    Every test client comes from one loopback address and some tests move megabytes through
    one stream: production defaults (10 connections/s per IP, 10 kB/s per connection) would
    make unrelated tests slow or flaky. Tests of those limits pass `relaxed=False`.
    """
    lines = [f"{k} = {v}" for k, v in RELAXED_LIMITS.items() if k in keys and k not in text]
    if not lines:
        return text
    if "[limits]\n" in text:
        return text.replace("[limits]\n", "[limits]\n" + "\n".join(lines) + "\n", 1)
    return text + "\n[limits]\n" + "\n".join(lines) + "\n"


class ServerProcess:
    """`blether serve` on free ports with its own data directory."""

    def __init__(self, data_dir: Path, domains: tuple[str, ...] = ("localhost",),
                 config_text: str | None = None, bind: str = "127.0.0.1",
                 relaxed: bool | tuple[str, ...] = True) -> None:
        self.data_dir = data_dir
        self.domains = domains
        self.domain = domains[0]
        self.bind = bind
        self.port = free_port()
        self.tls_port = free_port()
        # Test servers do not federate unless a test configures s2s: otherwise each would
        # bind the real port 5269 and could try to reach real domains.
        text = config_text or ""
        if "module_options.s2s" not in text and "s2s" not in text.split("[module_options]")[-1]:
            text += "\n[module_options.s2s]\nenabled = false\n"
        if relaxed:
            text = relax_single_ip_limits(
                text, tuple(RELAXED_LIMITS) if relaxed is True else relaxed)
        self.config_path: Path | None = data_dir / "blether.toml"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(text)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        self._users = itertools.count(1)

    def common_args(self) -> list[str]:
        args = ["--data-dir", str(self.data_dir)]
        if self.config_path is not None:
            args += ["--config", str(self.config_path)]
        return args

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [*BLETHER, "serve", *self.common_args(), "--bind", self.bind,
                "--c2s-port", str(self.port), "--tls-port", str(self.tls_port),
                "--log-level", "debug"]
        for d in self.domains:
            args += ["--domain", d]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "COLUMNS": "200"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                with socket.create_connection((self.bind, self.tls_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*BLETHER, *args, *self.common_args()], input=stdin,
                              capture_output=True, text=True, timeout=60)

    def add_user(self, jid: str, password: str = "secret") -> str:
        r = self.cli("user", "add", jid, stdin=password + "\n")
        if r.returncode != 0:
            raise RuntimeError(f"user add failed: {r.stderr}")
        return jid

    def new_users(self, count: int, prefix: str = "u", password: str = "secret",
                  domain: str | None = None) -> list[str]:
        """Create fresh accounts (in parallel, through the CLI, while the server runs)."""
        jids = [f"{prefix}{next(self._users)}@{domain or self.domain}" for _ in range(count)]
        procs = [subprocess.Popen([*BLETHER, "user", "add", j, *self.common_args()],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for j in jids]
        for p in procs:
            _out, err = p.communicate(password + "\n", timeout=60)
            if p.returncode != 0:
                raise RuntimeError(f"user add failed: {err}")
        return jids


class _MatchAll(MatcherBase):
    def match(self, xml: Any) -> bool:
        return True


def parse_mask(xml: str) -> ET.Element:
    """Parse expected XML with jabber:client as the default namespace."""
    wrapper = ET.fromstring(f"<wrapper xmlns='{CLIENT_NS}'>{xml}</wrapper>")
    return wrapper[0]


def matches(el: ET.Element, mask: ET.Element) -> bool:
    """True if `el` has the mask's tag, attributes, text (if given) and children."""
    if el.tag != mask.tag:
        return False
    for k, v in mask.attrib.items():
        if el.attrib.get(k) != v:
            return False
    if mask.text and mask.text.strip() and (el.text or "").strip() != mask.text.strip():
        return False
    return all(any(matches(c, m) for c in el) for m in mask)


def absent(el: ET.Element, tag: str) -> bool:
    return el.find(tag) is None


class Client(slixmpp.ClientXMPP):
    """A slixmpp client that records every stanza it receives, for expect()."""

    def __init__(self, jid: str, password: str = "secret", **kw: Any) -> None:
        super().__init__(jid, password, **kw)
        self.received: asyncio.Queue[ET.Element] = asyncio.Queue()
        self.backlog: list[ET.Element] = []
        self.register_handler(Callback("record-all", _MatchAll(None), self._record))
        self.add_event_handler("session_start", self._started)
        self.add_event_handler("failed_auth", self._failed)
        self.add_event_handler("disconnected", self._disconnected)
        self.add_event_handler("stream_error", self._stream_error)
        self.session_started: asyncio.Future[bool] = asyncio.get_event_loop().create_future()
        self.stream_errors: list[Any] = []
        self.roster.auto_authorize = None  # tests drive subscriptions explicitly
        self.roster.auto_subscribe = False
        # The test server uses a self-signed certificate.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE

    def _record(self, stanza: Any) -> None:
        if stanza.xml.tag.startswith("{jabber:client}"):  # stanzas only, not negotiation
            self.received.put_nowait(stanza.xml)

    def _started(self, _event: Any) -> None:
        if not self.session_started.done():
            self.session_started.set_result(True)

    def _failed(self, _event: Any) -> None:
        if not self.session_started.done():
            self.session_started.set_result(False)

    def _stream_error(self, err: Any) -> None:
        self.stream_errors.append(err)

    def _disconnected(self, _event: Any) -> None:
        if not self.session_started.done():
            self.session_started.set_result(False)

    async def login(self, server: ServerProcess, *, direct_tls: bool = False,
                    timeout: float = 15.0) -> bool:
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        self.connect(server.bind, server.tls_port if direct_tls else server.port)
        return await asyncio.wait_for(self.session_started, timeout)

    async def send_xml(self, xml: str) -> None:
        self.send_raw(xml)

    async def expect(self, mask_xml: str | None = None, *,
                     where: Callable[[ET.Element], bool] | None = None,
                     timeout: float = 5.0) -> ET.Element:
        """Wait for a received stanza matching the mask (earlier non-matching ones are kept)."""
        mask = parse_mask(mask_xml) if mask_xml else None

        def ok(el: ET.Element) -> bool:
            return (mask is None or matches(el, mask)) and (where is None or where(el))

        for i, el in enumerate(self.backlog):
            if ok(el):
                return self.backlog.pop(i)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                got = [ET.tostring(e, encoding="unicode") for e in self.backlog]
                raise AssertionError(f"{self.boundjid}: no stanza matching {mask_xml!r}; "
                                     f"received instead: {got}")
            try:
                el = await asyncio.wait_for(self.received.get(), remaining)
            except TimeoutError:
                continue
            if ok(el):
                return el
            self.backlog.append(el)

    async def expect_nothing(self, mask_xml: str | None = None, *,
                             where: Callable[[ET.Element], bool] | None = None,
                             wait: float = 0.5) -> None:
        with contextlib.suppress(AssertionError):
            el = await self.expect(mask_xml, where=where, timeout=wait)
            raise AssertionError(f"unexpected stanza: {ET.tostring(el, encoding='unicode')}")

    async def query(self, xml: str, timeout: float = 5.0) -> ET.Element:
        """Send an IQ (with an id attribute) and wait for its result or error."""
        iq_id = parse_mask(xml).attrib["id"]
        self.send_raw(xml)
        return await self.expect(where=lambda e: e.tag == f"{{{CLIENT_NS}}}iq"
                                 and e.attrib.get("id") == iq_id
                                 and e.attrib.get("type") in ("result", "error"),
                                 timeout=timeout)

    def drain(self) -> list[ET.Element]:
        out = list(self.backlog)
        self.backlog.clear()
        while not self.received.empty():
            out.append(self.received.get_nowait())
        return out

    async def close(self) -> None:
        self.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.disconnected, 5)

    def abort(self) -> None:
        """Drop the TCP connection without closing the stream (an abrupt disconnect)."""
        if self.transport is not None:
            self.transport.abort()


def ns(tag: str, namespace: str = CLIENT_NS) -> str:
    return f"{{{namespace}}}{tag}"


# -- roster and presence helpers (RFC 6121 §2-§4) -------------------------------------------

ROSTER_NS = "jabber:iq:roster"


def bare(client: Client) -> str:
    return str(client.boundjid.bare)


def full(client: Client) -> str:
    return str(client.boundjid.full)


def roster_items(iq: ET.Element) -> list[ET.Element]:
    """The <item/>s of a roster result or push."""
    query = iq.find(ns("query", ROSTER_NS))
    return [] if query is None else list(query.findall(ns("item", ROSTER_NS)))


def is_roster_push(jid: str | None = None, **attrs: str | None) -> Callable[[ET.Element], bool]:
    """Matches a roster push whose single item is `jid` with exactly these attribute values
    (None: the attribute must be absent, e.g. `ask=None`)."""
    def match(el: ET.Element) -> bool:
        if el.tag != ns("iq") or el.attrib.get("type") != "set":
            return False
        items = roster_items(el)
        if len(items) != 1 or (jid is not None and items[0].attrib.get("jid") != jid):
            return False
        return all(items[0].attrib.get(k) == v for k, v in attrs.items())
    return match


async def expect_push(client: Client, jid: str, timeout: float = 5.0,
                      **attrs: str | None) -> ET.Element:
    """Wait for the roster push of `jid` (see is_roster_push); returns its <item/>."""
    el = await client.expect(where=is_roster_push(jid, **attrs), timeout=timeout)
    assert el.attrib.get("from") in (None, bare(client)), "push from someone else"
    return roster_items(el)[0]


async def get_roster(client: Client, iq_id: str = "roster", ver: str | None = None
                     ) -> ET.Element:
    """Roster get (RFC 6121 §2.2); makes the resource interested in pushes."""
    attr = "" if ver is None else f" ver='{ver}'"
    reply = await client.query(f"<iq type='get' id='{iq_id}'>"
                               f"<query xmlns='{ROSTER_NS}'{attr}/></iq>")
    assert reply.attrib["type"] == "result", ET.tostring(reply, encoding="unicode")
    return reply


async def go_online(client: Client) -> None:
    """Fetch the roster, send initial presence, wait for its echo (RFC 6121 §4.2)."""
    await get_roster(client, "go-online")
    await client.send_xml("<presence/>")
    await client.expect(f"<presence from='{full(client)}'/>")


async def subscribe_to(a: Client, b: Client) -> None:
    """`a` subscribes to `b`'s presence and `b` approves (RFC 6121 §3.1); both available."""
    await a.send_xml(f"<presence to='{bare(b)}' type='subscribe'/>")
    await b.expect(f"<presence from='{bare(a)}' type='subscribe'/>")
    await b.send_xml(f"<presence to='{bare(a)}' type='subscribed'/>")
    await a.expect(f"<presence from='{bare(b)}' type='subscribed'/>")


# -- federation helpers (s2s): ports on other loopback addresses, a test CA, a scripted peer ---

def free_port_on(host: str) -> int:
    """A free TCP port on `host` (any 127.0.0.0/8 address)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class CertificateAuthority:
    """A throw-away certificate authority issuing s2s certificates (serverAuth + clientAuth)."""

    def __init__(self, directory: Path) -> None:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Blether Test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=2))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))
        self.path = directory / "ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, domain: str) -> tuple[Path, Path]:
        """Certificate and key files for `domain` (dNSName SAN), signed by this CA."""
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), False)
                .sign(self.key, hashes.SHA256()))
        cert_path, key_path = self.dir / f"{domain}.crt", self.dir / f"{domain}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path


class DialbackAuthority:
    """The authoritative server of a scripted remote domain (XEP-0220 §2.2.2): accepts the
    receiving server's connection (STARTTLS, self-signed certificate), answers <db:verify/>
    with its own XEP-0185 keys and accepts any <db:result/> sent to it."""

    def __init__(self, domain: str, host: str, directory: Path, secret: str = "peer-secret"
                 ) -> None:
        from blether.transport.tls import make_self_signed

        self.domain = domain
        self.host = host
        self.port = free_port_on(host)
        self.secret = secret
        self.cert, self.key = directory / f"{domain}.crt", directory / f"{domain}.key"
        make_self_signed(domain, self.cert, self.key)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.verified: list[tuple[str, str]] = []     # (key, verdict) answered

    def key_for(self, receiving: str, stream_id: str) -> str:
        from blether.s2s.dialback import generate_key

        return generate_key(self.secret, receiving, self.domain, stream_id)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in list(self.writers):
            w.close()
        await asyncio.sleep(0.1)   # let the handlers see EOF and return

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from blether.s2s.dialback import check_key
        from blether.xml.element import serialize
        from blether.xml.parser import ElementParsed, StreamHeader, XMLStreamParser

        self.writers.add(writer)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        parser = XMLStreamParser()
        prefixes = {"jabber:server:dialback": "db"}

        def head(to: str) -> bytes:
            return (f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                    f"xmlns:stream='http://etherx.jabber.org/streams' "
                    f"xmlns:db='jabber:server:dialback' id='auth{id(parser)}' "
                    f"from='{self.domain}' to='{to}' version='1.0'>").encode()

        try:
            while data := await reader.read(65536):
                for ev in parser.feed(data):
                    if isinstance(ev, StreamHeader):
                        feats = ("<dialback xmlns='urn:xmpp:features:dialback'><errors/>"
                                 "</dialback>" if writer.get_extra_info("ssl_object") else
                                 "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                                 "<required/></starttls>")
                        writer.write(head(ev.attrs.get("from", "")) +
                                     f"<stream:features>{feats}</stream:features>".encode())
                        continue
                    if not isinstance(ev, ElementParsed):
                        return
                    el = ev.element
                    if el.name == "starttls":
                        writer.write(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                        await writer.start_tls(ctx)
                        parser.reset()
                        break
                    if el.name not in ("verify", "result") or "type" in el.attrs:
                        continue
                    frm, to = el.attrs["from"], el.attrs["to"]
                    if el.name == "result":
                        verdict = "valid"
                        answer = el.__class__("result", el.xmlns,
                                              {"from": to, "to": frm, "type": verdict})
                    else:
                        ok = check_key(self.secret, frm, to, el.attrs["id"], el.text)
                        verdict = "valid" if ok else "invalid"
                        self.verified.append((el.text, verdict))
                        answer = el.__class__("verify", el.xmlns, {
                            "from": to, "to": frm, "id": el.attrs["id"], "type": verdict})
                    writer.write(serialize(answer, "jabber:server", prefixes=prefixes).encode())
        except (ConnectionError, OSError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


# -- external components (XEP-0114): a raw component that sends exactly what it is told -------

class RawComponent:
    """A minimal `jabber:component:accept` peer over TCP for component tests: header,
    handshake (right or wrong), then raw stanzas; replies parsed with the project's parser."""

    STREAMS = "http://etherx.jabber.org/streams"
    STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from blether.xml.parser import ParserLimits, XMLStreamParser

        self.reader, self.writer = reader, writer
        self.parser = XMLStreamParser(ParserLimits(1 << 24, 1000, 1000, 1_000_000, 65536))
        self.events: list[Any] = []
        self.received = bytearray()
        self.stream_id = ""
        self.eof = False

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> RawComponent:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        return cls(reader, writer)

    async def send(self, data: str | bytes) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def next(self, timeout: float = 5.0) -> Any:
        """The next StreamHeader, Element or StreamFooter; None once TCP is closed."""
        from blether.xml.parser import ElementParsed

        deadline = time.monotonic() + timeout
        while not self.events:
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"nothing within {timeout}s; so far: "
                                     f"{bytes(self.received)[-1500:]!r}")
            try:
                data = await asyncio.wait_for(self.reader.read(65536), remaining)
            except TimeoutError:
                continue
            except (ConnectionError, OSError):
                data = b""
            if not data:
                self.eof = True
                continue
            self.received += data
            self.events += [e.element if isinstance(e, ElementParsed) else e
                            for e in self.parser.feed(data)]
        return self.events.pop(0)

    async def open(self, domain: str) -> Any:
        """Send the XEP-0114 §3 header for `domain`; return the server's header."""
        from blether.xml.parser import StreamHeader

        await self.send("<stream:stream xmlns='jabber:component:accept' "
                        f"xmlns:stream='{self.STREAMS}' to='{domain}'>")
        head = await self.next()
        assert isinstance(head, StreamHeader), f"expected the server's header, got {head!r}"
        self.stream_id = head.attrs.get("id", "")
        return head

    async def handshake(self, secret: str) -> None:
        """Send hex(SHA-1(stream id + secret)) (XEP-0114 §3)."""
        import hashlib

        digest = hashlib.sha1((self.stream_id + secret).encode()).hexdigest()
        await self.send(f"<handshake>{digest}</handshake>")

    async def login(self, domain: str, secret: str) -> None:
        """Header and handshake; asserts the server's empty <handshake/>."""
        await self.open(domain)
        await self.handshake(secret)
        reply = await self.next()
        assert getattr(reply, "name", None) == "handshake" and not reply.children, \
            f"handshake refused: {bytes(self.received)[-1000:]!r}"

    async def stanza(self, where: Callable[[Any], bool] | None = None,
                     timeout: float = 5.0) -> Any:
        """The next element satisfying `where` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            ev = await self.next(max(0.01, deadline - time.monotonic()))
            if ev is None:
                raise AssertionError(f"closed; so far: {bytes(self.received)[-1500:]!r}")
            if hasattr(ev, "name") and hasattr(ev, "children") and (where is None or where(ev)):
                return ev

    async def stream_error(self, timeout: float = 5.0) -> str:
        """Read up to the stream error; assert the closing tag and TCP close follow; return
        the condition."""
        from blether.xml.parser import StreamFooter, StreamHeader

        deadline = time.monotonic() + timeout
        while True:
            ev = await self.next(max(0.01, deadline - time.monotonic()))
            if isinstance(ev, StreamHeader):
                continue
            assert ev is not None, f"closed without a stream error: {bytes(self.received)!r}"
            if getattr(ev, "xmlns", None) == self.STREAMS and ev.name == "error":
                break
            if getattr(ev, "name", None) in ("message", "presence", "iq"):
                continue
            raise AssertionError(f"expected a stream error, got {ev!r}")
        conds = [c.name for c in ev.elements()
                 if c.xmlns == self.STREAM_ERRORS and c.name != "text"]
        footer = await self.next(max(0.01, deadline - time.monotonic()))
        assert isinstance(footer, StreamFooter), f"no </stream:stream> after the error: {footer!r}"
        assert await self.next(max(0.01, deadline - time.monotonic())) is None, "TCP still open"
        assert len(conds) == 1, ev
        return conds[0]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)
