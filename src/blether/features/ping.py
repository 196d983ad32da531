"""XEP-0199: XMPP Ping — the server answers pings to itself and to accounts."""

from __future__ import annotations

from blether import ns
from blether.core.iq import IqRequest, Target
from blether.core.module import XEP, Module, iq_handler
from blether.xml.element import Element


class PingModule(Module):
    name = "ping"
    specs = (XEP(199, "2.0.1", "complete", "answers pings to the server and to accounts; "
                                             "the keepalive module pings idle clients"),)
    host_features = (ns.PING,)
    account_features = (ns.PING,)

    @iq_handler("get", ns.PING, Target.HOST)
    async def ping_server(self, req: IqRequest) -> Element:
        return req.result()

    @iq_handler("get", ns.PING, Target.ACCOUNT)
    async def ping_account(self, req: IqRequest) -> Element:
        # XEP-0199 §4.3: the server answers on behalf of the account's bare JID.
        return req.result()
