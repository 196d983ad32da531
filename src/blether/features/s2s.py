"""Server-to-server federation (RFC 6120 s2s streams; XEP-0220 Server Dialback with XEP-0185
keys; XEP-0178 SASL EXTERNAL; XEP-0368 direct TLS): stanzas for domains this server does not
host leave through one outgoing stream per (local, remote) domain pair; stanzas from
authenticated peers enter the router. The protocol work lives in `blether.s2s`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from blether.core import events
from blether.core.module import RFC, XEP, Module, ModuleContext, hook
from blether.errors import StanzaError
from blether.jid import JIDError, prep_domain
from blether.s2s.manager import S2SManager
from blether.s2s.resolver import OverrideError, parse_override


def _domains(values: list[str]) -> list[str]:
    try:
        return [prep_domain(v) for v in values]
    except JIDError as exc:
        raise ValueError(str(exc)) from None


class S2SOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    bind: list[str] | None = Field(None, description="addresses to listen on; None = c2s.bind")
    port: int = Field(5269, ge=0, le=65535)
    tls_port: int | None = Field(None, ge=0, le=65535,
                                 description="XEP-0368 direct TLS port (5270 by convention)")
    require_encryption: bool = True
    verify_certificates: bool = True
    secure_auth: bool = Field(False, description="every peer needs a valid certificate")
    ca_file: str | None = Field(None, description="CA bundle; None = the system's")
    trusted_domains: list[str] = Field(default_factory=list,
                                       description="peers that need a valid certificate")
    insecure_domains: list[str] = Field(default_factory=list,
                                        description="peers allowed without TLS/certificate")
    overrides: dict[str, str] = Field(default_factory=dict,
                                      description='"domain" -> "host:port" or '
                                                  '"tls://host:port"')
    dns_servers: list[str] = Field(default_factory=list,
                                   description="DNS servers for SRV; empty = resolv.conf")
    connect_timeout: float = Field(30.0, gt=0,
                                   description="seconds for a stream to become ready")
    idle_timeout: float = Field(600.0, gt=0)
    dialback_secret: str | None = Field(None, description="XEP-0185 secret; None = random "
                                                          "per start")

    @field_validator("trusted_domains", "insecure_domains")
    @classmethod
    def _prep(cls, v: list[str]) -> list[str]:
        return _domains(v)

    @field_validator("overrides")
    @classmethod
    def _check_overrides(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for domain, target in v.items():
            try:
                parse_override(target)
            except OverrideError as exc:
                raise ValueError(str(exc)) from None
            out[_domains([domain])[0]] = target
        return out


class S2SModule(Module):
    name = "s2s"
    default_enabled = True
    specs = (
        RFC(6120, "§4-§6, §8.1, §13.7.2 (s2s)", "complete",
            "STARTTLS required by default; one outgoing stream per domain pair"),
        XEP(220, "1.1.1", "complete", "as initiating, receiving and authoritative server; "
                                      "dialback errors; no XEP-0288 bidirectional streams"),
        XEP(185, "1.0", "complete", "HMAC-SHA256 keys"),
        XEP(178, "1.2", "partial",
            "SASL EXTERNAL for s2s both ways; inbound, a certificate is requested only from "
            "peers that must present one (Python's ssl cannot accept an unverifiable one)"),
        XEP(368, "1.1.0", "complete", "_xmpps-server SRV and a direct TLS listener"),
    )
    Options = S2SOptions

    def __init__(self, ctx: ModuleContext, options: Any) -> None:
        super().__init__(ctx, options)
        self.manager: S2SManager | None = None

    async def start(self) -> None:
        if not self.options.enabled:
            return
        self.manager = S2SManager(self.ctx.services, self.options)
        await self.manager.start()

    async def stop(self) -> None:
        if self.manager is not None:
            await self.manager.stop()

    @hook(events.ROUTE_REMOTE)
    async def route_remote(self, event: events.ToRemote) -> bool:
        if self.manager is None:
            return False
        local = event.sender.domain
        if local not in self.ctx.hosts:
            # Only our own domains send over s2s; a remote-to-remote stanza would be relaying.
            # The sender (e.g. a component) learns it cannot reach that domain, rather than
            # its stanza vanishing; the router never answers an error with an error.
            self.ctx.log.warning("not relaying %s from %s to %s", event.stanza.name,
                                 event.sender, event.to)
            await self.ctx.services.router.bounce(event.stanza, StanzaError(
                "remote-server-not-found", f"{event.sender.domain} does not federate"))
            return True
        await self.manager.send(event.stanza, local, event.to.domain)
        return True
