"""RFC 6121 §2.1 roster items as XML: building items, results and pushes, parsing a roster set.

Parsing applies the §2.3.3 error rules in one place, so the IQ handler only decides what to
do with a valid request.
"""

from __future__ import annotations

from dataclasses import dataclass

from blether import ns
from blether.errors import StanzaError
from blether.jid import JID, JIDError
from blether.storage.api import RosterItem
from blether.xml.element import Element


def item_element(item: RosterItem) -> Element:
    """`<item/>` as the roster and pushes show it (§2.1.2): never a pending-in state."""
    attrs = {"jid": item.jid, "subscription": item.subscription}
    if item.name is not None:
        attrs["name"] = item.name
    if item.ask:
        attrs["ask"] = "subscribe"
    if item.approved:
        attrs["approved"] = "true"  # §2.1.2.1: never approved='false'
    groups: list[Element | str] = [Element("group", ns.ROSTER, None, [g]) for g in item.groups]
    return Element("item", ns.ROSTER, attrs, groups)


def removed_element(contact: str) -> Element:
    """The item of a removal push (§2.5.2)."""
    return Element("item", ns.ROSTER, {"jid": contact, "subscription": "remove"})


def query(version: int | None, items: list[Element]) -> Element:
    attrs = {} if version is None else {"ver": str(version)}
    children: list[Element | str] = list(items)
    return Element("query", ns.ROSTER, attrs, children)


def push(to: JID, account: JID, item: Element, version: int, iq_id: str) -> Element:
    """A roster push (§2.1.6): an IQ set from the account's bare JID, so that clients, which
    MUST ignore pushes from anyone else, accept it."""
    return Element("iq", ns.CLIENT, {"type": "set", "id": iq_id, "to": str(to),
                                     "from": str(account)}, [query(version, [item])])


def parse_version(ver: str | None) -> int | None:
    """The version a client presents (§2.6.3); None when it is absent or not one of ours."""
    if ver is None or not ver.isascii() or not ver.isdigit() or len(ver) > 30:
        return None
    return int(ver)


@dataclass(frozen=True, slots=True)
class RosterSet:
    """A validated roster set: one item to store exactly as given, or to remove."""

    contact: JID                 # bare
    remove: bool
    name: str | None = None
    groups: tuple[str, ...] = ()


def parse_set(payload: Element, max_name: int, max_group: int) -> RosterSet:
    """Validate `<query xmlns='jabber:iq:roster'>` of a roster set (RFC 6121 §2.3.3)."""
    items = payload.find_all("item", ns.ROSTER)
    if len(items) != 1 or len(payload.elements()) != 1:
        raise StanzaError("bad-request", "a roster set carries exactly one <item/>")
    item = items[0]
    text = item.attrs.get("jid")
    if text is None:
        raise StanzaError("bad-request", "the <item/> has no 'jid'")
    try:
        contact = JID.parse(text).bare
    except JIDError as exc:
        raise StanzaError("jid-malformed", f"invalid item JID: {exc}") from None
    # §2.1.2.5: any 'subscription' other than "remove" is ignored; the server owns it.
    if item.attrs.get("subscription") == "remove":
        return RosterSet(contact, remove=True)
    name = item.attrs.get("name")
    if name is not None and len(name) > max_name:
        raise StanzaError("not-acceptable", f"the name is longer than {max_name} characters")
    groups: list[str] = []
    for group in item.find_all("group", ns.ROSTER):
        value = group.text
        if not value:
            raise StanzaError("not-acceptable", "a <group/> name cannot be empty")
        if len(value) > max_group:
            raise StanzaError("not-acceptable",
                              f"a group name is longer than {max_group} characters")
        if value in groups:
            raise StanzaError("bad-request", f"duplicate <group/> {value!r}")
        groups.append(value)
    return RosterSet(contact, remove=False, name=name, groups=tuple(groups))
