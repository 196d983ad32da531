"""Server configuration: TOML file + command-line overrides → a validated, frozen `Config`.

Unknown keys are errors that name the file, the key and the nearest valid key.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSConfig(_Section):
    """Certificate and key per domain; a domain without one gets a self-signed certificate
    made in data_dir/certs on first start."""

    certificates: dict[str, tuple[str, str]] = Field(
        default_factory=dict, description="domain → [certificate PEM path, key PEM path]")
    min_version: Literal["1.2", "1.3"] = Field("1.2", description="lowest TLS version accepted")


class C2SConfig(_Section):
    """Client connections (RFC 6120)."""

    bind: list[str] = Field(default_factory=lambda: ["127.0.0.1"],
                            description="addresses to listen on")
    port: int = Field(5222, ge=0, le=65535, description="c2s port (STARTTLS)")
    tls_port: int | None = Field(5223, ge=0, le=65535,
                                 description="direct TLS port (XEP-0368); unset to disable")
    require_encryption: bool = Field(True, description="STARTTLS required before SASL")
    allow_plain_without_tls: bool = Field(
        False, description="offer SASL PLAIN on unencrypted streams (never do this)")
    max_sessions_per_user: int = Field(
        10, ge=1, description="resources per account; more → bind fails resource-constraint")
    resource_conflict: Literal["kick_old", "refuse"] = Field(
        "kick_old", description="binding a resource in use: kick_old closes the old session "
        "with <conflict/>, refuse answers the new bind with conflict")


class LimitsConfig(_Section):
    """Limits against abuse; defaults from SECURITY.md (see docs/security.md)."""

    pre_auth_stanza_bytes: int = Field(8192, ge=1000, description="largest stanza before SASL")
    pre_auth_max_elements: int = Field(32, ge=4, description="elements per stanza before SASL")
    pre_auth_max_depth: int = Field(16, ge=4, description="nesting depth before SASL")
    max_attributes: int = Field(64, ge=8, description="attributes per element")
    c2s_stanza_bytes: int = Field(262144, ge=10000, description="largest c2s stanza after SASL")
    s2s_stanza_bytes: int = Field(524288, ge=10000, description="largest s2s stanza")
    max_elements: int = Field(10000, ge=32, description="elements per stanza after SASL")
    max_depth: int = Field(64, ge=8, description="nesting depth after SASL")
    auth_failures_per_connection: int = Field(
        3, ge=1, le=10, description="SASL failures before the stream is closed "
        "(policy-violation)")
    auth_failures_per_ip: int = Field(
        10, ge=1, description="SASL failures per IP within auth_failure_window before a ban")
    auth_failure_window: float = Field(600.0, gt=0, description="seconds")
    auth_ban_time: float = Field(900.0, ge=0, description="seconds an IP is refused "
                                 "(temporary-auth-failure, before any hashing)")
    connections_per_ip: int = Field(32, ge=1, description="concurrent c2s connections per IP")
    connection_rate_per_ip: float = Field(
        10.0, ge=0, description="new c2s connections per second per IP (bursts of as many); "
        "0 = unlimited")
    negotiation_timeout: float = Field(60.0, gt=0, description="seconds from connect to bound "
                                       "session (connection-timeout)")
    tls_handshake_timeout: float = Field(30.0, gt=0, description="seconds")
    outbound_buffer_bytes: int = Field(
        2 * 1024 * 1024, ge=65536,
        description="bytes queued to a client that is not reading before it is disconnected")
    c2s_read_rate: int = Field(10000, ge=0, description="bytes/s read per connection "
                               "once authenticated, bursts of 2 s; reading pauses beyond it; "
                               "0 = unlimited")


class StorageConfig(_Section):
    """Where accounts, rosters and messages are kept."""

    url: str = Field("", description="sqlite:////abs/path.db or postgresql://user@host/db; "
                     "empty = data_dir/blether.db")


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")


class Config(_Section):
    hosts: list[str] = Field(default_factory=lambda: ["localhost"], min_length=1,
                             description="hosted domains (virtual hosts)")
    data_dir: Path = Field(Path("data"), description="database, certificates, secrets")
    admins: list[str] = Field(default_factory=list,
                              description="bare JIDs allowed to run admin commands (XEP-0133)")
    modules: list[str] | None = Field(
        None, description="feature modules to enable; unset = the default set")
    module_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-module options, see below")
    c2s: C2SConfig = Field(default_factory=C2SConfig)  # type: ignore[arg-type]
    tls: TLSConfig = Field(default_factory=TLSConfig)  # type: ignore[arg-type]
    limits: LimitsConfig = Field(default_factory=LimitsConfig)  # type: ignore[arg-type]
    storage: StorageConfig = Field(default_factory=StorageConfig)  # type: ignore[arg-type]
    log: LogConfig = Field(default_factory=LogConfig)  # type: ignore[arg-type]

    @field_validator("hosts")
    @classmethod
    def _prep_hosts(cls, hosts: list[str]) -> list[str]:
        from blether.jid import JIDError, prep_domain

        out = []
        for h in hosts:
            try:
                out.append(prep_domain(h))
            except JIDError as exc:
                raise ValueError(f"invalid domain {h!r}: {exc}") from None
        return out

    @property
    def storage_url(self) -> str:
        if self.storage.url:
            return self.storage.url
        return f"sqlite:///{(self.data_dir / 'blether.db').resolve()}"


class ConfigError(Exception):
    """A configuration problem, with a message fit for an operator."""


def _model_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The valid keys at the table that contains `loc` (for "did you mean" hints)."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        ann = fields[part].annotation
        current = ann
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            valid = _model_keys(Config, loc)
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"; did you mean '{'.'.join(str(p) for p in (*loc[:-1], close[0]))}'?" \
                if close else f"; valid keys here: {', '.join(valid)}"
            lines.append(f"  unknown key '{key}'{hint}")
        else:
            lines.append(f"  '{key}': {msg}")
    return "\n".join(lines)


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read the TOML file (if any), apply command-line overrides, validate."""
    data: dict[str, Any] = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
