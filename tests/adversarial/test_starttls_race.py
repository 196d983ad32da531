"""The switch to TLS after <proceed/> (RFC 6120 §5.4.3.3), made deterministic.

Bytes a client sends right after the server's <proceed/> belong to TLS. If they reach the
server in the instant between <proceed/> being written and the TLS layer taking over the
socket, they must still go to TLS: a ClientHello landing there otherwise stalls the handshake
(seen as intermittent STARTTLS login timeouts), and plaintext landing there would later be
read as if it had come through TLS (STARTTLS command injection, the CVE-2011-0411 class).

The server runs in-process on uvloop (as `blether serve` does). A hook on the moment the
server writes <proceed/> makes the client's next bytes arrive exactly then. (Regression tests:
before reading was paused ahead of <proceed/>, both failed every time.)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from blether.app import Server
from blether.config import load_config
from blether.transport import c2s
from integration.harness import free_port
from integration.rawclient import client_context, header


async def _recv_until(sock: socket.socket, marker: bytes, timeout: float = 3.0) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while marker not in data:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
        if not chunk:
            raise AssertionError(f"connection closed; got {data!r}")
        data += chunk
    return data


async def _handshake(sock: socket.socket, tls: ssl.SSLObject, c_in: ssl.MemoryBIO,
                     c_out: ssl.MemoryBIO, leftover: bytes) -> bool:
    """Finish a client handshake whose ClientHello was already sent; False if it fails."""
    loop = asyncio.get_running_loop()
    c_in.write(leftover)
    while True:
        try:
            tls.do_handshake()
            await loop.sock_sendall(sock, c_out.read())
            return True
        except ssl.SSLWantReadError:
            await loop.sock_sendall(sock, c_out.read())
        except ssl.SSLError:
            return False
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        except TimeoutError:
            return False
        if not chunk:
            return False
        c_in.write(chunk)


async def _scenario(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                    at_proceed: Callable[[socket.socket, bytes], bytes]) -> tuple[bool, bytes]:
    """Run a STARTTLS negotiation where `at_proceed(sock, client_hello)` sends bytes the very
    moment the server writes <proceed/>. Returns (handshake ok, application data read)."""
    port = free_port()
    cfg = load_config(None, {"data_dir": str(data_dir), "c2s.port": port,
                             "c2s.tls_port": free_port(), "limits.tls_handshake_timeout": 3,
                             "modules": ["ping"]})
    server = Server(cfg)
    await server.start()
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, header("localhost"))
        await _recv_until(sock, b"</stream:features>")
        c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_context().wrap_bio(c_in, c_out, server_hostname="localhost")
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = c_out.read()
        sent_at_proceed: list[bytes] = []
        original = c2s.C2SConnection._write_now

        def hooked(self: Any, data: bytes) -> None:
            original(self, data)
            if b"<proceed" in data:
                sent_at_proceed.append(at_proceed(sock, hello))

        monkeypatch.setattr(c2s.C2SConnection, "_write_now", hooked)
        await loop.sock_sendall(sock, b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        got = await _recv_until(sock, b"/>")
        assert b"<proceed" in got and sent_at_proceed, got
        leftover = got.split(b"/>", 1)[1]
        if sent_at_proceed[0] != hello:
            await loop.sock_sendall(sock, hello)  # the injection went first; now real TLS
        if not await _handshake(sock, tls, c_in, c_out, leftover):
            return False, b""
        app = b""
        try:
            while True:  # whatever the server says over TLS without being asked
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 1.0)
                if not chunk:
                    break
                c_in.write(chunk)
                with contextlib.suppress(ssl.SSLWantReadError):
                    app += tls.read(65536)
        except (TimeoutError, ssl.SSLError, ConnectionError):
            pass
        return True, app
    finally:
        sock.close()
        await server.stop()


def _send(data: bytes | None = None) -> Callable[[socket.socket, bytes], bytes]:
    def at_proceed(sock: socket.socket, hello: bytes) -> bytes:
        payload = hello if data is None else data
        sock.send(payload)  # synchronous: in the server's receive buffer right now
        return payload

    return at_proceed


def test_client_hello_right_after_proceed_reaches_tls(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ok, _app = uvloop.run(_scenario(tmp_path, monkeypatch, _send()))
    assert ok, "the TLS handshake stalled: the ClientHello went to the plaintext buffer"


def test_plaintext_right_after_proceed_is_never_read_as_secure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    injection = header("localhost") + (b"<iq type='get' id='injected' to='localhost'>"
                                       b"<ping xmlns='urn:xmpp:ping'/></iq>")
    ok, app = uvloop.run(_scenario(tmp_path, monkeypatch, _send(injection)))
    # Either the garbage broke the TLS handshake (safe), or nothing came of it.
    assert b"injected" not in app, f"injected plaintext was processed over TLS: {app!r}"
    assert not ok or app == b"", app
