"""XEP-0050: Ad-Hoc Commands at the server's JID, carrying the XEP-0133 Service Administration
commands for the JIDs listed in the `admins` setting.

* §2.1 the server advertises ``http://jabber.org/protocol/commands``; §2.2 the command list
  is the disco#items of that node, filtered per requester (XEP-0050 §2.2 "not required to send
  the same list to all requesters"): admins see every command, others none. A command node's
  disco#info has identity automation/command-node; for a non-admin it is forbidden (§2.2).
* Executing a command as a non-admin is ``forbidden`` (XEP-0133 §5, §6 MUST NOT).

Discovery of the command nodes goes through the disco feature's node providers
(`add_node_provider`); without the disco feature the commands still run, undiscovered.
"""

from __future__ import annotations

from blether import ns
from blether.core.disco import DiscoItem, Identity
from blether.core.iq import IqRequest, Target
from blether.core.module import XEP, Module, ModuleContext, iq_handler
from blether.errors import StanzaError
from blether.features.admin.adhoc import SessionTable, execute
from blether.features.admin.commands import COMMANDS, AdminCommand
from blether.features.disco import DiscoInfo
from blether.jid import JID, JIDError
from blether.xml.element import Element

COMMAND_LIST = Identity("automation", "command-list", "Commands")


class AdminModule(Module):
    name = "admin"
    depends = ("register",)     # account creation/removal goes through the same code as IBR
    specs = (
        XEP(50, "1.3.0", "complete", "single- and two-stage commands; no 'prev' stage"),
        XEP(133, "1.3.1", "partial", "add/delete user, end session, change password, user "
            "counts, online users list, announce"),
    )
    host_features = (ns.COMMANDS,)

    def __init__(self, ctx: ModuleContext, options: object) -> None:
        super().__init__(ctx, options)
        self.commands: dict[str, AdminCommand] = {
            cls.node: cls(ctx.services) for cls in COMMANDS}
        self.sessions = SessionTable()
        admins = set()
        for text in ctx.services.config.admins:
            try:
                admins.add(JID.parse(text).bare)
            except JIDError:
                ctx.log.warning("ignoring invalid admin JID %r", text)
        self.admins = frozenset(admins)

    def is_admin(self, jid: JID) -> bool:
        return jid.bare in self.admins

    async def start(self) -> None:
        disco = self.ctx.services.module("disco")
        if disco is not None:
            disco.add_node_provider(Target.HOST, self, owner=self)

    async def stop(self) -> None:
        disco = self.ctx.services.module("disco")
        if disco is not None:
            disco.remove_node_providers(self)

    # -- XEP-0050 §2.2 discovery (a NodeProvider of the disco feature) ---------------------
    async def node_info(self, req: IqRequest, node: str) -> DiscoInfo | None:
        if node == ns.COMMANDS:
            return DiscoInfo((COMMAND_LIST,), ())
        command = self.commands.get(node)
        if command is None:
            return None
        if not self.is_admin(req.sender):
            raise StanzaError("forbidden", "only administrators may run this command")
        return DiscoInfo((Identity("automation", "command-node", command.name),),
                         (ns.COMMANDS, ns.DATA_FORMS))

    async def node_items(self, req: IqRequest, node: str) -> list[DiscoItem] | None:
        if node == ns.COMMANDS:
            if not self.is_admin(req.sender):
                return []
            return [DiscoItem(req.to.domain, c.name, c.node) for c in self.commands.values()]
        if node in self.commands:
            return []
        return None

    # -- XEP-0050 §3.4 execution -----------------------------------------------------------
    @iq_handler("set", ns.COMMANDS, Target.HOST)
    async def command(self, req: IqRequest) -> Element:
        if req.payload.name != "command" or not req.payload.attrs.get("node"):
            raise StanzaError("bad-request", "expected <command node='…'/>")
        command = self.commands.get(req.payload.attrs["node"])
        if command is None:
            raise StanzaError("item-not-found", "no such command")
        if not self.is_admin(req.sender):
            raise StanzaError("forbidden", "only administrators may run this command")
        self.ctx.log.info("%s runs %s", req.sender, command.node)
        return await execute(req, command, self.sessions)
