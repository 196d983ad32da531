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
    """Certificate and key per domain; empty means a self-signed one is made in data_dir/certs."""

    certificates: dict[str, tuple[str, str]] = Field(
        default_factory=dict, description="domain -> [cert.pem, key.pem]"
    )
    min_version: Literal["1.2", "1.3"] = "1.2"


class C2SConfig(_Section):
    bind: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    port: int = Field(5222, ge=0, le=65535)
    tls_port: int | None = Field(5223, ge=0, le=65535)
    require_encryption: bool = True
    allow_plain_without_tls: bool = False
    max_sessions_per_user: int = Field(10, ge=1)
    resource_conflict: Literal["kick_old", "refuse"] = "kick_old"


class LimitsConfig(_Section):
    """Defaults from shared/SECURITY.md."""

    pre_auth_stanza_bytes: int = Field(8192, ge=1000)
    pre_auth_max_elements: int = Field(32, ge=4)
    pre_auth_max_depth: int = Field(16, ge=4)
    max_attributes: int = Field(64, ge=8)
    c2s_stanza_bytes: int = Field(262144, ge=10000)
    s2s_stanza_bytes: int = Field(524288, ge=10000)
    max_elements: int = Field(10000, ge=32)
    max_depth: int = Field(64, ge=8)
    auth_failures_per_connection: int = Field(3, ge=1, le=10)
    auth_failures_per_ip: int = Field(10, ge=1)
    auth_failure_window: float = Field(600.0, gt=0)
    auth_ban_time: float = Field(900.0, ge=0)
    connections_per_ip: int = Field(32, ge=1)
    negotiation_timeout: float = Field(60.0, gt=0)
    tls_handshake_timeout: float = Field(30.0, gt=0)
    outbound_buffer_bytes: int = Field(2 * 1024 * 1024, ge=65536)
    c2s_read_rate: int = Field(0, ge=0, description="bytes/s per connection; 0 = unlimited")


class StorageConfig(_Section):
    url: str = Field("", description="sqlite:///path or postgresql://…; "
                                      "empty = data_dir/blether.db")


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Section):
    hosts: list[str] = Field(default_factory=lambda: ["localhost"], min_length=1)
    data_dir: Path = Path("data")
    admins: list[str] = Field(default_factory=list)
    modules: list[str] | None = Field(
        None, description="feature modules to enable; None = the default set"
    )
    module_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    c2s: C2SConfig = Field(default_factory=C2SConfig)  # type: ignore[arg-type]
    tls: TLSConfig = Field(default_factory=TLSConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)  # type: ignore[arg-type]
    storage: StorageConfig = Field(default_factory=StorageConfig)  # type: ignore[arg-type]
    log: LogConfig = Field(default_factory=LogConfig)

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
