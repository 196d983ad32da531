"""The benchmark (bench/) works end to end: a tiny run against Blether only.

This proves the tooling — the load generator's login (STARTTLS, SCRAM-SHA-1, bind, roster,
presence), its token accounting, every scenario, the report — and asserts what must hold at
any speed (everything sent arrives, every login succeeds). It asserts no timing: timing
targets live in the benchmark's own report (bench/report.py), never in tests.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import scramp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.loadgen.scram import ScramError, ScramSha1Client  # noqa: E402
from bench.loadgen.tokens import TokenScanner, token  # noqa: E402


def test_scram_client_is_accepted_by_an_independent_server_implementation() -> None:
    # RFC 5802 §5: scramp's server checks our proof, we check its signature.
    mech = scramp.ScramMechanism("SCRAM-SHA-1")
    salt, stored, server_key, iterations = mech.make_auth_info("pencil", iteration_count=4096)
    server = mech.make_server(lambda _u: (salt, stored, server_key, iterations))
    client = ScramSha1Client("user", "pencil")
    server.set_client_first(client.first().decode())
    final = client.final(server.get_server_first().encode())
    server.set_client_final(final.decode())
    client.verify(server.get_server_final().encode())


def test_scram_client_rejects_a_server_that_does_not_know_the_password() -> None:
    mech = scramp.ScramMechanism("SCRAM-SHA-1")
    salt, stored, server_key, iterations = mech.make_auth_info("other", iteration_count=4096)
    server = mech.make_server(lambda _u: (salt, stored, server_key, iterations))
    client = ScramSha1Client("user", "pencil")
    server.set_client_first(client.first().decode())
    client.final(server.get_server_first().encode())
    forged = "v=" + base64.b64encode(b"\x00" * 20).decode()
    with pytest.raises(ScramError):
        client.verify(forged.encode())


def test_token_scanner_finds_tokens_split_across_reads() -> None:
    found: list[tuple[int, int, int]] = []
    scanner = TokenScanner(found.extend)
    stream = (b"<message><body>" + token(1, 2, 345) + b" hi</body></message>"
              b"<message><body>" + token(6, 7, 890) + b"</body></message>")
    for i in range(0, len(stream), 7):  # every possible cut, 7 bytes at a time
        scanner.feed(stream[i:i + 7])
    assert found == [(1, 2, 345), (6, 7, 890)]


@pytest.mark.timeout(240)
def test_benchmark_runs_every_scenario_against_blether_at_tiny_scale(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--servers", "blether", "--scenarios", "all",
         "--scale", "0.01", "--no-restart", "--no-pin", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=220)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    res = {name: by_server["blether"] for name, by_server in report["results"].items()}
    params = report["params"]

    for name in ("throughput", "throughput-tls", "latency"):
        assert res[name]["delivered"] > 0, name
        assert res[name]["lost"] == 0, name
    assert res["login"]["logins"] == params["logins"]
    assert res["login"]["failures"] == 0
    for name in ("idle", "idle-tls"):
        assert res[name]["sessions"] == params["idle_sessions"], name
        assert res[name]["failures"] == 0, name
    assert res["fanout"]["delivered"] == params["fanout_contacts"] * params["fanout_changes"]
    assert res["fanout"]["incomplete_changes"] == 0
    assert res["offline"]["delivered"] == params["offline_messages"]
    assert "scenario" in proc.stdout and "throughput" in proc.stdout  # the table is printed
