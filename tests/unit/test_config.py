"""Configuration (DESIGN.md §3 config.py): TOML → validated, frozen Config; every mistake is
reported with the file, the key and — for a misspelt key — the nearest valid one."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from blether.cli import app
from blether.config import Config, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "blether.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message  # always names the file
    return message


def test_defaults_follow_security_md() -> None:
    cfg = load_config(None)
    assert cfg.hosts == ["localhost"]
    assert cfg.c2s.require_encryption and not cfg.c2s.allow_plain_without_tls
    assert cfg.c2s.max_sessions_per_user == 10 and cfg.c2s.resource_conflict == "kick_old"
    lim = cfg.limits
    assert (lim.pre_auth_stanza_bytes, lim.pre_auth_max_elements, lim.pre_auth_max_depth,
            lim.max_attributes) == (8192, 32, 16, 64)
    assert (lim.c2s_stanza_bytes, lim.s2s_stanza_bytes, lim.max_elements, lim.max_depth) == (
        262144, 524288, 10000, 64)
    assert lim.auth_failures_per_connection == 3
    assert (lim.auth_failures_per_ip, lim.auth_failure_window, lim.auth_ban_time) == (
        10, 600.0, 900.0)
    assert cfg.tls.min_version == "1.2"


def test_a_valid_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
hosts = ["Example.ORG", "localhost"]
data_dir = "/var/lib/blether"
[c2s]
port = 15222
tls_port = 15223
max_sessions_per_user = 2
[limits]
pre_auth_stanza_bytes = 10000
"""))
    assert cfg.hosts == ["example.org", "localhost"]  # prepared (RFC 7622 §3.2)
    assert (cfg.c2s.port, cfg.c2s.tls_port, cfg.c2s.max_sessions_per_user) == (15222, 15223, 2)
    assert cfg.limits.pre_auth_stanza_bytes == 10000
    assert cfg.storage_url == "sqlite:////var/lib/blether/blether.db"


def test_config_is_frozen() -> None:
    cfg = load_config(None)
    with pytest.raises(ValidationError):
        cfg.c2s.port = 1


@pytest.mark.parametrize(("text", "hint"), [
    ("[c2s]\nprot = 1\n", "unknown key 'c2s.prot'; did you mean 'c2s.port'?"),
    ("host = ['localhost']\n", "unknown key 'host'; did you mean 'hosts'?"),
    ("[limits]\npre_auth_stanza_byte = 9000\n",
     "did you mean 'limits.pre_auth_stanza_bytes'?"),
    ("[c2s]\nrequire_encription = false\n", "did you mean 'c2s.require_encryption'?"),
    ("[tls]\nmin_versoin = '1.3'\n", "did you mean 'tls.min_version'?"),
    ("[log]\nlevl = 'debug'\n", "did you mean 'log.level'?"),
])
def test_misspelt_keys_name_the_nearest_valid_key(tmp_path: Path, text: str,
                                                  hint: str) -> None:
    assert hint in error_of(tmp_path, text)


def test_alien_key_lists_the_valid_ones(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[c2s]\nzzzzzz = 1\n")
    assert "unknown key 'c2s.zzzzzz'" in message
    assert "valid keys here:" in message and "port" in message and "tls_port" in message


def test_unknown_section(tmp_path: Path) -> None:
    assert "did you mean 'c2s'?" in error_of(tmp_path, "[c2c]\nport = 1\n")


def test_every_problem_is_reported(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[c2s]\nprot = 1\nport = 'x'\n[limits]\nmax_deph = 3\n")
    assert "c2s.prot" in message and "'c2s.port'" in message and "limits.max_deph" in message


@pytest.mark.parametrize(("text", "key"), [
    ("[c2s]\nport = 'five'\n", "'c2s.port'"),
    ("[c2s]\nport = 70000\n", "'c2s.port'"),
    ("[c2s]\nrequire_encryption = 'maybe'\n", "'c2s.require_encryption'"),
    ("[c2s]\nresource_conflict = 'random'\n", "'c2s.resource_conflict'"),
    ("[limits]\npre_auth_stanza_bytes = 10\n", "'limits.pre_auth_stanza_bytes'"),
    ("[limits]\nauth_failures_per_connection = 0\n", "'limits.auth_failures_per_connection'"),
    ("[tls]\nmin_version = '1.0'\n", "'tls.min_version'"),
    ("hosts = []\n", "'hosts'"),
    ("hosts = ['bad domain!']\n", "'hosts'"),
    ("hosts = 'localhost'\n", "'hosts'"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    assert key in error_of(tmp_path, text)


def test_not_toml(tmp_path: Path) -> None:
    assert "not valid TOML" in error_of(tmp_path, "[c2s\nport = 1\n")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "nope.toml: file not found" in str(info.value)


def test_overrides_win_and_none_means_unset(tmp_path: Path) -> None:
    path = write(tmp_path, "[c2s]\nport = 15222\nbind = ['0.0.0.0']\n")
    cfg = load_config(path, {"c2s.port": 25222, "c2s.bind": None, "hosts": ["example.org"]})
    assert cfg.c2s.port == 25222 and cfg.c2s.bind == ["0.0.0.0"]
    assert cfg.hosts == ["example.org"]


def test_bad_override_is_reported_like_a_file_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"c2s.port": -1})
    assert "<defaults>" in str(info.value) and "'c2s.port'" in str(info.value)


def test_module_options_are_free_form_here() -> None:
    cfg = Config.model_validate({"module_options": {"ping": {"anything": 1}}})
    assert cfg.module_options == {"ping": {"anything": 1}}


# -- `blether check-config` -----------------------------------------------------------------

def check(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["check-config", *args])
    return result.exit_code, result.output


def test_check_config_ok(tmp_path: Path) -> None:
    code, out = check("--config", str(write(tmp_path, "hosts = ['example.org']\n")))
    assert code == 0, out
    assert "configuration OK" in out and "example.org" in out


def test_check_config_defaults() -> None:
    code, out = check()
    assert code == 0 and "configuration OK" in out


def test_check_config_bad_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[c2s]\nprot = 1\n")
    code, out = check("--config", str(path))
    assert code == 2
    assert str(path) in out and "did you mean 'c2s.port'" in out


def test_check_config_unknown_module(tmp_path: Path) -> None:
    code, out = check("--config", str(write(tmp_path, "modules = ['ping', 'pnig']\n")))
    assert code == 2 and "unknown module 'pnig'" in out


def test_check_config_options_of_unknown_module(tmp_path: Path) -> None:
    code, out = check("--config", str(write(tmp_path, "[module_options.nosuch]\nx = 1\n")))
    assert code == 2 and "nosuch" in out


def test_check_config_missing_file(tmp_path: Path) -> None:
    code, out = check("--config", str(tmp_path / "missing.toml"))
    assert code == 2 and "file not found" in out


def test_check_config_bad_module_option(tmp_path: Path) -> None:
    code, out = check("--config", str(write(tmp_path, "[module_options.ping]\nbogus = 1\n")))
    assert code == 2 and "module_options.ping" in out and "bogus" in out
