"""XEP-0030 Service Discovery, XEP-0128 extended info and XEP-0157 contact addresses.

The server answers disco#info and disco#items for each hosted domain (XEP-0030 §3, §4) and, on
the account's behalf, for its accounts' bare JIDs (XEP-0030 §3.1 "Requesting info from a bare
JID", with the access rules of §8). Everything advertised comes from the core `DiscoRegistry`,
which modules fill by declaring features and identities: nothing is listed here by hand, so the
answer is exactly what is loaded. This module registers its own identities and features there
like any other module does.

XEP-0128: every form in the registry's `extensions` is appended to the host's disco#info.
XEP-0157: the contact addresses from this module's options are published as the
`http://jabber.org/network/serverinfo` form.

Nodes (XEP-0030 §3.2, §4.2): other modules answer for nodes of the host or of accounts by adding
a `NodeProvider` (caps answers `node#ver`, ad-hoc commands its command list); a node nobody
claims gets <item-not-found/>.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from blether import ns
from blether.core.disco import DiscoItem, Identity
from blether.core.iq import IqRequest, Target
from blether.core.module import XEP, Module, ModuleContext, iq_handler
from blether.errors import StanzaError
from blether.jid import JID, JIDError
from blether.xml.element import Element

if TYPE_CHECKING:
    from blether.core.services import Services

SERVERINFO = "http://jabber.org/network/serverinfo"
SERVER_IDENTITY = ("server", "im")
ACCOUNT_IDENTITY = Identity("account", "registered")

# RFC 3986 §3.1: a URI starts with a scheme and a colon; XEP-0157 §3 wants URIs as values.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")


def _check_uri(value: str) -> str:
    if not _URI.fullmatch(value):
        raise ValueError(f"{value!r} is not a URI (e.g. 'mailto:xmpp@example.org', "
                         "'xmpp:admin@example.org', 'https://example.org/support')")
    return value


URI = Annotated[str, AfterValidator(_check_uri)]


class DiscoOptions(BaseModel):
    """`module_options.disco`: the server's name and its XEP-0157 contact addresses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("Blether", description="name of the server/im identity (XEP-0030)")
    # None means "the xmpp: URIs of the configured admins", as Prosody's
    # mod_server_contact_info does; an empty list publishes none.
    admin_addresses: list[URI] | None = Field(
        None, description="XEP-0157 admin contact URIs; unset = xmpp: URIs of `admins`")
    abuse_addresses: list[URI] = Field([], description="XEP-0157 abuse contact URIs")
    feedback_addresses: list[URI] = Field([], description="XEP-0157 feedback contact URIs")
    sales_addresses: list[URI] = Field([], description="XEP-0157 sales contact URIs")
    security_addresses: list[URI] = Field([], description="XEP-0157 security contact URIs")
    status_addresses: list[URI] = Field([], description="XEP-0157 service status URIs")
    support_addresses: list[URI] = Field([], description="XEP-0157 support contact URIs")


@dataclass(frozen=True, slots=True)
class DiscoInfo:
    """One disco#info answer: identities, features and XEP-0128 forms."""

    identities: tuple[Identity, ...]
    features: tuple[str, ...]
    forms: tuple[Element, ...] = field(default=())

    def to_query(self, node: str | None = None) -> Element:
        query = Element("query", ns.DISCO_INFO, {"node": node} if node else {})
        for ident in sorted(self.identities):
            attrs = {"category": ident.category, "type": ident.type}
            if ident.name:
                attrs["name"] = ident.name
            if ident.lang:
                attrs["xml:lang"] = ident.lang
            query.append(Element("identity", ns.DISCO_INFO, attrs))
        for var in sorted(self.features):
            query.append(Element("feature", ns.DISCO_INFO, {"var": var}))
        for form in self.forms:
            query.append(form)
        return query


def items_query(items: list[DiscoItem], node: str | None = None) -> Element:
    query = Element("query", ns.DISCO_ITEMS, {"node": node} if node else {})
    for item in items:
        attrs = {"jid": item.jid}
        if item.name:
            attrs["name"] = item.name
        if item.node:
            attrs["node"] = item.node
        query.append(Element("item", ns.DISCO_ITEMS, attrs))
    return query


class NodeProvider(Protocol):
    """Answers disco for some nodes of a target; None means "not one of my nodes"."""

    async def node_info(self, req: IqRequest, node: str) -> DiscoInfo | None: ...

    async def node_items(self, req: IqRequest, node: str) -> list[DiscoItem] | None: ...


def serverinfo_form(fields: dict[str, list[str]]) -> Element:
    """The XEP-0157 form: FORM_TYPE hidden (XEP-0128 §2), one list-multi field per role."""
    form = Element("x", ns.DATA_FORMS, {"type": "result"})
    form.append(Element("field", ns.DATA_FORMS, {"var": "FORM_TYPE", "type": "hidden"},
                        [Element("value", ns.DATA_FORMS, None, [SERVERINFO])]))
    for var in sorted(fields):
        values = fields[var]
        if values:
            form.append(Element("field", ns.DATA_FORMS, {"var": var, "type": "list-multi"},
                                [Element("value", ns.DATA_FORMS, None, [v]) for v in values]))
    return form


def contact_fields(options: DiscoOptions, admins: list[str]) -> dict[str, list[str]]:
    admin = options.admin_addresses
    if admin is None:
        admin = [f"xmpp:{a}" for a in admins]
    return {
        "abuse-addresses": list(options.abuse_addresses),
        "admin-addresses": list(admin),
        "feedback-addresses": list(options.feedback_addresses),
        "sales-addresses": list(options.sales_addresses),
        "security-addresses": list(options.security_addresses),
        "status-addresses": list(options.status_addresses),
        "support-addresses": list(options.support_addresses),
    }


def item_host(item_jid: str, hosts: frozenset[str]) -> str | None:
    """The hosted domain an item belongs under: its own domain or the nearest parent domain
    (conference.example.org under example.org, as Prosody lists subdomain components); None
    for items outside every hosted domain."""
    try:
        domain = JID.parse(item_jid).domain
    except JIDError:
        return None
    while True:
        if domain in hosts:
            return domain
        if "." not in domain:
            return None
        domain = domain.split(".", 1)[1]


async def may_see_presence(services: Services, account: JID, requester: JID) -> bool:
    """RFC 6121 §4: may `requester` see `account`'s presence (the account itself, or a contact
    the account's roster has a subscription 'from' or 'both' for)? XEP-0030 §8 and XEP-0012 §3
    grant account information only to those."""
    if requester.bare == account:
        return True
    roster = services.module("roster")
    if roster is not None and hasattr(roster, "is_subscribed_from"):
        return bool(await roster.is_subscribed_from(account, requester.bare))
    item = await services.storage.roster.get(str(account), str(requester.bare))
    return item is not None and item.subscription in ("from", "both")


def _node(req: IqRequest) -> str | None:
    # An empty node attribute means no node (XEP-0030 §4.2: a node MUST NOT be null; Prosody
    # treats node='' as absent too).
    return req.payload.attrs.get("node") or None


class DiscoModule(Module):
    name = "disco"
    specs = (
        XEP(30, "2.5.0", "complete",
            "host and account info/items; account answers only to the account and to contacts "
            "with a presence subscription (§8)"),
        XEP(128, "1.0.1", "complete", "forms registered by modules appear in host disco#info"),
        XEP(157, "1.1.1", "complete", "contact addresses from module_options.disco"),
    )
    host_features = (ns.DISCO_INFO, ns.DISCO_ITEMS)
    account_features = (ns.DISCO_INFO, ns.DISCO_ITEMS)
    Options = DiscoOptions

    def __init__(self, ctx: ModuleContext, options: DiscoOptions) -> None:
        super().__init__(ctx, options)
        self._providers: dict[Target, list[tuple[NodeProvider, object]]] = {
            Target.HOST: [], Target.ACCOUNT: []}

    async def start(self) -> None:
        disco = self.ctx.services.disco
        disco.add_host_identity(Identity(*SERVER_IDENTITY, self.options.name), self)
        disco.add_account_identity(ACCOUNT_IDENTITY, self)
        fields = contact_fields(self.options, list(self.ctx.services.config.admins))
        if any(fields.values()):
            disco.add_extension(SERVERINFO, serverinfo_form(fields), self)

    # -- what other modules use ----------------------------------------------------------
    def add_node_provider(self, target: Target, provider: NodeProvider,
                          owner: object = None) -> None:
        self._providers[target].append((provider, owner))

    def remove_node_providers(self, owner: object) -> None:
        for target, entries in self._providers.items():
            self._providers[target] = [(p, o) for p, o in entries if o is not owner]

    def host_info(self) -> DiscoInfo:
        """The disco#info of a hosted domain, built from the registry."""
        reg = self.ctx.services.disco
        return DiscoInfo(tuple(reg.host_identities), tuple(reg.host_features),
                         tuple(form for form, _owner in reg.extensions.values()))

    def account_info(self) -> DiscoInfo:
        reg = self.ctx.services.disco
        return DiscoInfo(tuple(reg.account_identities), tuple(reg.account_features))

    def host_items(self, host: str) -> list[DiscoItem]:
        hosts = self.ctx.services.hosts
        return [item for item in self.ctx.services.disco.items
                if item_host(item.jid, hosts) in (host, None)]

    # -- nodes ---------------------------------------------------------------------------
    async def _node_info(self, target: Target, req: IqRequest, node: str) -> Element:
        for provider, _owner in tuple(self._providers[target]):
            info = await provider.node_info(req, node)
            if info is not None:
                return req.result(info.to_query(node))
        raise StanzaError("item-not-found", "no such node")

    async def _node_items(self, target: Target, req: IqRequest, node: str) -> Element:
        for provider, _owner in tuple(self._providers[target]):
            items = await provider.node_items(req, node)
            if items is not None:
                return req.result(items_query(items, node))
        raise StanzaError("item-not-found", "no such node")

    # -- the hosted domain ---------------------------------------------------------------
    @iq_handler("get", ns.DISCO_INFO, Target.HOST)
    async def info_host(self, req: IqRequest) -> Element:
        node = _node(req)
        if node is not None:
            return await self._node_info(Target.HOST, req, node)
        return req.result(self.host_info().to_query())

    @iq_handler("get", ns.DISCO_ITEMS, Target.HOST)
    async def items_host(self, req: IqRequest) -> Element:
        node = _node(req)
        if node is not None:
            return await self._node_items(Target.HOST, req, node)
        return req.result(items_query(self.host_items(req.to.domain)))

    # -- accounts, answered by the server on their behalf (XEP-0030 §3.1, §8) -------------
    @iq_handler("get", ns.DISCO_INFO, Target.ACCOUNT)
    async def info_account(self, req: IqRequest) -> Element:
        if not await may_see_presence(self.ctx.services, req.to, req.sender):
            # §8 rule 1.2: MUST be <service-unavailable/>, whatever the node, so that a
            # stranger cannot tell an existing account from a missing one.
            raise StanzaError("service-unavailable")
        node = _node(req)
        if node is not None:
            return await self._node_info(Target.ACCOUNT, req, node)
        return req.result(self.account_info().to_query())

    @iq_handler("get", ns.DISCO_ITEMS, Target.ACCOUNT)
    async def items_account(self, req: IqRequest) -> Element:
        node = _node(req)
        if not await may_see_presence(self.ctx.services, req.to, req.sender):
            # §8 rule 2.2: an empty result, revealing neither resources nor nodes.
            return req.result(items_query([], node))
        if node is not None:
            return await self._node_items(Target.ACCOUNT, req, node)
        # The account's available resources, as in the XEP-0030 §4.1 example and as ejabberd
        # answers the account itself and its subscribed contacts.
        sessions = self.ctx.services.sessions.available(req.to)
        return req.result(items_query([DiscoItem(str(s.jid)) for s in sessions]))
