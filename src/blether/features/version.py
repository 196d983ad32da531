"""XEP-0092 Software Version: the server reports its name and version (jabber:iq:version).

Only for the hosted domain: a query to an account's bare JID is the client's business and gets
<service-unavailable/> from the router like any unhandled IQ (RFC 6121 §8.5.2.1.3). The operating
system is left out unless `show_os = true`: XEP-0092 §5 asks that administrators can disable
revealing it, and both Prosody (mod_version `hide_os_type`) and ejabberd (`show_os`) make it a
switch; we default to hidden.
"""

from __future__ import annotations

import platform

from pydantic import BaseModel, ConfigDict, Field

import blether
from blether import ns
from blether.core.iq import IqRequest, Target
from blether.core.module import XEP, Module, iq_handler
from blether.xml.element import Element

SOFTWARE_NAME = "Blether"


class VersionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    show_os: bool = Field(False, description="include the operating system in answers")


def os_description() -> str:
    """e.g. 'Linux 6.1.0' (the kernel name and release, as Prosody reports it)."""
    return f"{platform.system()} {platform.release()}".strip()


class VersionModule(Module):
    name = "version"
    specs = (XEP(92, "1.1", "complete", "for the server; <os/> only with show_os = true"),)
    host_features = (ns.VERSION,)
    Options = VersionOptions

    @iq_handler("get", ns.VERSION, Target.HOST)
    async def version(self, req: IqRequest) -> Element:
        query = Element("query", ns.VERSION)
        query.append(Element("name", ns.VERSION, None, [SOFTWARE_NAME]))
        query.append(Element("version", ns.VERSION, None, [blether.__version__]))
        if self.options.show_os:
            query.append(Element("os", ns.VERSION, None, [os_description()]))
        return req.result(query)
