"""The `blether` command line (DESIGN.md §3 cli.py): version, account management, config
checking, and `serve` stopping gracefully on SIGTERM (RFC 6120 §4.9.3.22 system-shutdown)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from blether import __version__
from integration.harness import BLETHER, ServerProcess
from integration.rawclient import (
    NO_FEDERATION,
    SASL_NS,
    RawClients,
    condition,
    running_server,
)


def offline(tmp_path: Path, config: str | None = None) -> ServerProcess:
    """A data directory (and config) to run CLI commands against; no server started."""
    return ServerProcess(tmp_path / "data", config_text=config)


def test_version() -> None:
    r = subprocess.run([*BLETHER, "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"blether {__version__}"


def test_user_add_reads_the_password_from_stdin_and_never_echoes_it(tmp_path: Path) -> None:
    srv = offline(tmp_path)
    r = srv.cli("user", "add", "juliet@localhost", stdin="S3cret-Balcony\n")
    assert r.returncode == 0, r.stderr
    assert "created juliet@localhost" in r.stdout
    assert "S3cret-Balcony" not in r.stdout + r.stderr
    listed = srv.cli("user", "list")
    assert listed.stdout.split() == ["juliet@localhost"]


@pytest.mark.parametrize(("jid", "message"), [
    ("not a jid@@", "invalid JID"),
    ("juliet@example.net", "not a hosted domain"),
    ("localhost", "give an account JID"),
    ("juliet@localhost/balcony", "give an account JID"),
])
def test_user_add_refuses_bad_jids(tmp_path: Path, jid: str, message: str) -> None:
    r = offline(tmp_path).cli("user", "add", jid, stdin="pw\n")
    assert r.returncode == 2 and message in r.stderr


def test_user_add_prepares_the_jid(tmp_path: Path) -> None:
    srv = offline(tmp_path)
    assert srv.cli("user", "add", "Juliet@LocalHost", stdin="pw\n").returncode == 0
    assert srv.cli("user", "list").stdout.split() == ["juliet@localhost"]


def test_user_add_duplicate(tmp_path: Path) -> None:
    srv = offline(tmp_path)
    assert srv.cli("user", "add", "juliet@localhost", stdin="one\n").returncode == 0
    r = srv.cli("user", "add", "JULIET@localhost", stdin="two\n")
    assert r.returncode == 1 and "already exists" in r.stderr


def test_user_add_empty_password(tmp_path: Path) -> None:
    r = offline(tmp_path).cli("user", "add", "juliet@localhost", stdin="\n")
    assert r.returncode == 1 and "empty password" in r.stderr


def test_user_list_by_domain(tmp_path: Path) -> None:
    srv = offline(tmp_path, 'hosts = ["localhost", "example.org"]\n')
    for jid in ("b@localhost", "a@localhost", "c@example.org"):
        assert srv.cli("user", "add", jid, stdin="pw\n").returncode == 0
    assert sorted(srv.cli("user", "list").stdout.split()) == [
        "a@localhost", "b@localhost", "c@example.org"]
    assert srv.cli("user", "list", "example.org").stdout.split() == ["c@example.org"]


def test_user_delete(tmp_path: Path) -> None:
    srv = offline(tmp_path)
    srv.cli("user", "add", "juliet@localhost", stdin="pw\n")
    r = srv.cli("user", "delete", "juliet@localhost")
    assert r.returncode == 0 and "deleted juliet@localhost" in r.stdout
    assert srv.cli("user", "list").stdout.strip() == ""
    again = srv.cli("user", "delete", "juliet@localhost")
    assert again.returncode == 1 and "no such account" in again.stderr


def test_user_passwd_of_missing_account(tmp_path: Path) -> None:
    r = offline(tmp_path).cli("user", "passwd", "nobody@localhost", stdin="pw\n")
    assert r.returncode == 1 and "no such account" in r.stderr


def test_check_config_good_and_bad(tmp_path: Path) -> None:
    good = offline(tmp_path / "good", 'hosts = ["example.org"]\n[c2s]\nport = 15222\n')
    r = good.cli("check-config")
    assert r.returncode == 0 and "configuration OK" in r.stdout and "example.org" in r.stdout
    bad = offline(tmp_path / "bad", "[c2s]\nprot = 15222\n")
    r = bad.cli("check-config")
    assert r.returncode == 2
    assert str(bad.config_path) in r.stderr
    assert "unknown key 'c2s.prot'; did you mean 'c2s.port'?" in r.stderr


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    srv = offline(tmp_path, "[limits]\npre_auth_stanza_byte = 9000\n")
    r = subprocess.run([*BLETHER, "serve", *srv.common_args()], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "did you mean 'limits.pre_auth_stanza_bytes'" in r.stderr


# -- with a running server ------------------------------------------------------------------

@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, RawClients]]:
    with running_server(tmp_path / "live", NO_FEDERATION) as srv:
        clients = RawClients(srv)
        yield srv, clients
        await clients.close()


async def test_passwd_delete_while_serving(live: tuple[ServerProcess, RawClients]) -> None:
    srv, raw = live
    [jid] = srv.new_users(1)
    user = jid.split("@")[0]
    r = srv.cli("user", "passwd", jid, stdin="n3w-password\n")
    assert r.returncode == 0 and "n3w-password" not in r.stdout + r.stderr
    c = await raw.login(jid, "n3w-password")
    await c.ping()
    old = await raw.secured()
    assert condition(await old.sasl_scram(user, "secret"), SASL_NS) == "not-authorized"
    assert srv.cli("user", "delete", jid).returncode == 0
    gone = await raw.secured()
    assert condition(await gone.sasl_plain(user, "n3w-password"), SASL_NS) == \
        "not-authorized"


async def test_sigterm_closes_every_stream_with_system_shutdown(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "stop", config_text=NO_FEDERATION)
    srv.start()
    raw = RawClients(srv)
    try:
        [jid] = srv.new_users(1)
        bound = await raw.login(jid, resource="a")
        bound_direct = await raw.login(jid, resource="b", direct_tls=True)
        negotiating = await raw.connect()
        await negotiating.open_stream()
        secured = await raw.secured()
        assert srv.proc is not None
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        for c in (bound, bound_direct, negotiating, secured):
            assert await c.stream_error(timeout=10) == "system-shutdown"
        code = await asyncio.to_thread(srv.proc.wait, 10)
        assert code == 0
        assert time.monotonic() - start < 10
    finally:
        await raw.close()
        srv.stop()
    assert "Traceback" not in srv.log()


async def test_sigterm_with_a_client_that_stopped_reading(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "stuck", config_text=NO_FEDERATION)
    srv.start()
    raw = RawClients(srv)
    try:
        [jid] = srv.new_users(1)
        stuck = await raw.login(jid, resource="stuck")
        stuck.writer.transport.pause_reading()  # alive, but never reads again
        assert srv.proc is not None
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(srv.proc.wait, 15)
        elapsed = time.monotonic() - start
    finally:
        await raw.close()
        srv.stop()
    assert code == 0 and elapsed < 10
    assert "Traceback" not in srv.log(), srv.log()[-3000:]
