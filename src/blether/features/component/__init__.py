"""XEP-0114 Jabber Component Protocol ("accept" method): external components and gateways.

A component connects to the component listener (default 127.0.0.1:5347), names itself in the
stream header ('to' = its domain, which must be configured with a shared secret) and proves it
knows the secret with <handshake/> (XEP-0114 §3; the sans-IO side is in `stream.py`, the
asyncio driver in `connection.py`). Once connected:

* every stanza for the component's domain — the domain itself, any JID at it (e.g. the
  gateway address `alice%example.org@gateway.localhost`) and any resource — is written to the
  component. Component domains are not hosted domains, so the router offers such stanzas to
  ROUTE_REMOTE; this module claims them there ahead of federation. Subdomains of a component
  are not routed to it: XEP-0114 names one hostname per component, and Prosody does the same.
* stanzas from the component are routed like any other once their addresses pass the XEP-0114
  rule ('from' at the component's domain, else <invalid-from/>);
* the component's domain is listed in the disco#items of the hosted domains (XEP-0030 §4)
  while it is connected.

A stanza for a component that is not connected is answered with <remote-server-timeout/>
(type 'wait', "try again later"): what Prosody's mod_component answers (it adds its own
<not-connected/> application condition). Errors and IQ results are never answered.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from blether.core import events
from blether.core.disco import DiscoItem
from blether.core.module import XEP, Module, ModuleContext, hook
from blether.core.modules import ModuleError
from blether.errors import StanzaError
from blether.features.component.connection import ComponentConnection, ComponentListener
from blether.jid import JIDError, prep_domain
from blether.xml.parser import ParserLimits

# The answer for a component that is not connected (Prosody: wait/remote-server-timeout).
NOT_CONNECTED = "remote-server-timeout"


class ComponentOptions(BaseModel):
    """`module_options.component`: the listener and the configured components."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bind: str = Field("127.0.0.1", description="address of the component listener; XEP-0114 "
                      "has no encryption, keep it on loopback or a private network")
    port: int = Field(5347, ge=0, le=65535, description="component listener port")
    components: dict[str, str] = Field(
        default_factory=dict,
        description='component domain → shared secret, e.g. { "gateway.example.org" = '
                    '"s3cret" }; empty = no listener')
    stanza_bytes: int = Field(524288, ge=10000,
                              description="largest stanza from a connected component")
    keepalive_interval: float = Field(
        300.0, gt=0, description="seconds of silence from a component before a whitespace "
                                 "keepalive is sent")

    @field_validator("components")
    @classmethod
    def _check_components(cls, value: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for domain, secret in value.items():
            try:
                name = prep_domain(domain)
            except JIDError as exc:
                raise ValueError(f"{domain!r} is not a domain: {exc}") from None
            if not secret:
                raise ValueError(f"the secret of {domain} is empty")
            if name in out:
                raise ValueError(f"{domain} is configured twice")
            out[name] = secret
        return out


class ComponentModule(Module):
    name = "component"
    default_enabled = True
    specs = (
        XEP(114, "1.6", "partial",
            "the 'accept' method (components connect to the server); 'connect' is not "
            "implemented. One connection per component; a second one gets <conflict/>"),
    )
    Options = ComponentOptions

    def __init__(self, ctx: ModuleContext, options: Any) -> None:
        super().__init__(ctx, options)
        self.secrets: dict[str, str] = dict(options.components)
        self.keepalive_interval: float = options.keepalive_interval
        self.connected: dict[str, ComponentConnection] = {}
        self.listener: ComponentListener | None = None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        hosted = sorted(set(self.secrets) & self.ctx.hosts)
        if hosted:
            raise ModuleError(f"module_options.component: {', '.join(hosted)} is a hosted "
                              "domain, not a component domain")
        if not self.secrets:
            return
        lim = self.ctx.services.config.limits
        limits = ParserLimits(self.options.stanza_bytes, lim.max_depth, lim.max_attributes,
                              lim.max_elements, 4096)
        self.listener = ComponentListener(self.ctx.services, self, limits)
        await self.listener.start(self.options.bind, self.options.port)
        if not _is_loopback(self.options.bind):
            self.ctx.log.warning("the component listener is on %s: XEP-0114 streams are not "
                                 "encrypted, expose it only on a trusted network",
                                 self.options.bind)

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.shutdown()

    # -- the table of connected components (used by the connections) ----------------------
    def claim(self, conn: ComponentConnection) -> bool:
        """Register an authenticated connection for its domain; False if one is there."""
        assert conn.domain is not None
        if conn.domain in self.connected:
            return False
        self.connected[conn.domain] = conn
        # Listed while connected; the connection owns the item, so it goes when it goes.
        self.ctx.services.disco.add_item(DiscoItem(conn.domain), owner=conn)
        return True

    def release(self, conn: ComponentConnection) -> None:
        if conn.domain is not None and self.connected.get(conn.domain) is conn:
            del self.connected[conn.domain]
        self.ctx.services.disco.remove_owner(conn)

    # -- routing -------------------------------------------------------------------------
    @hook(events.ROUTE_REMOTE, priority=100)
    async def to_component(self, event: events.ToRemote) -> bool:
        """Stanzas for a component domain (the s2s feature handles the rest: a lower
        priority)."""
        domain = event.to.domain
        if domain not in self.secrets:
            return False
        conn = self.connected.get(domain)
        if conn is not None and conn.send(event.stanza):
            return True
        self.ctx.log.info("component %s is not connected; %s to %s answered with %s",
                          domain, event.stanza.name, event.to, NOT_CONNECTED)
        await self.ctx.services.router.bounce(
            event.stanza, StanzaError(NOT_CONNECTED, "the component is not connected"))
        return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
