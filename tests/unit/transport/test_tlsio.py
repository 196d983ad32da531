"""TLSLayer: server-side TLS over memory BIOs (RFC 6120 §5, XEP-0368), checked against an
in-memory client."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from blether.transport import tlsio
from blether.transport.tls import TLSManager
from blether.transport.tlsio import TLSLayer
from unit.transport.fakes import FakeTransport


class Client:
    def __init__(self, max_version: ssl.TLSVersion | None = None) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if max_version is not None:
            ctx.maximum_version = max_version
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    def handshake_step(self) -> bool:
        try:
            self.obj.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False

    def send(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self.outgoing.read()

    def receive(self, records: bytes) -> bytes:
        self.incoming.write(records)
        out = b""
        while True:
            try:
                chunk = self.obj.read(65536)
            except ssl.SSLWantReadError:
                return out
            if not chunk:
                return out
            out += chunk


@pytest.fixture
def manager(tmp_path: Path) -> TLSManager:
    return TLSManager(["localhost"], tmp_path, {})


def connect(manager: TLSManager, max_version: ssl.TLSVersion | None = None
            ) -> tuple[TLSLayer, Client, FakeTransport]:
    t = FakeTransport()
    layer = TLSLayer(t, manager.client_context)
    client = Client(max_version)
    for _ in range(10):
        done = client.handshake_step()
        assert layer.receive(client.outgoing.read()) == b""
        client.incoming.write(t.data())
        if done and layer.established:
            return layer, client, t
    raise AssertionError("no handshake")


async def test_application_data_both_ways(manager: TLSManager) -> None:
    layer, client, t = connect(manager)
    assert layer.receive(client.send(b"<stream:stream>")) == b"<stream:stream>"
    layer.write(b"<features/>")
    assert client.receive(t.data()) == b"<features/>"


async def test_what_is_written_before_the_handshake_ends_waits_for_it(
        manager: TLSManager) -> None:
    t = FakeTransport()
    layer = TLSLayer(t, manager.client_context)
    layer.write(b"<early/>")
    client = Client()
    got = b""
    for _ in range(10):
        done = client.handshake_step()
        layer.receive(client.outgoing.read())
        records = t.data()
        if done:
            got += client.receive(records)
        else:
            client.incoming.write(records)
    assert layer.established and got == b"<early/>"


async def test_big_data_goes_through_in_pieces(manager: TLSManager) -> None:
    layer, client, t = connect(manager)
    big = bytes(range(256)) * 300  # 76.8 kB
    records = client.send(big)
    assert layer.receive(records) == big
    layer.write(big)
    assert len(t.written) == 1  # one transport write ...
    assert client.receive(t.data()) == big  # ... of records of at most _PIECE bytes each
    assert tlsio._PIECE <= 4096


async def test_garbage_fails_the_handshake(manager: TLSManager) -> None:
    layer = TLSLayer(FakeTransport(), manager.client_context)
    with pytest.raises(ssl.SSLError):
        layer.receive(b"<stream:stream to='localhost'>" * 10)


async def test_close_notify_both_ways(manager: TLSManager) -> None:
    layer, client, t = connect(manager)
    records = client.send(b"</stream:stream>")
    with pytest.raises(ssl.SSLWantReadError):
        client.obj.unwrap()  # close_notify, then waits for the server's
    assert layer.receive(records + client.outgoing.read()) == b"</stream:stream>"
    assert layer.eof
    layer.close()
    assert t.closing
    client.incoming.write(t.data())
    client.obj.unwrap()  # the server's close_notify arrived


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_channel_binding_data_is_there(manager: TLSManager,
                                             version: ssl.TLSVersion) -> None:
    layer, client, _t = connect(manager, version)
    bindings = manager.bindings("localhost", layer.obj)
    assert bindings["tls-server-end-point"] == manager.certs["localhost"].end_point_hash
    if version == ssl.TLSVersion.TLSv1_2:
        assert bindings["tls-unique"] == client.obj.get_channel_binding("tls-unique")
    else:
        assert "tls-unique" not in bindings


async def test_no_session_tickets_and_no_cached_sessions(manager: TLSManager) -> None:
    connect(manager)
    assert manager.client_context.num_tickets == 0
    assert manager.client_context.session_stats()["number"] == 0
