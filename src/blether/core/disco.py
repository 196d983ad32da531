"""Registry of what the server and its accounts advertise in service discovery (XEP-0030).

Modules declare features and identities; the disco feature answers from this registry, so
nothing is listed by hand and what is advertised is exactly what is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blether.xml.element import Element


@dataclass(frozen=True, slots=True, order=True)
class Identity:
    category: str
    type: str
    name: str = ""
    lang: str = ""


@dataclass(frozen=True, slots=True)
class DiscoItem:
    jid: str
    name: str = ""
    node: str = ""


class DiscoRegistry:
    def __init__(self) -> None:
        self.host_features: dict[str, object] = {}
        self.account_features: dict[str, object] = {}
        self.host_identities: dict[Identity, object] = {}
        self.account_identities: dict[Identity, object] = {}
        self.items: dict[DiscoItem, object] = {}
        self.extensions: dict[str, tuple[Element, object]] = {}   # FORM_TYPE -> XEP-0128 form

    def add_host_feature(self, var: str, owner: object = None) -> None:
        self.host_features[var] = owner

    def add_account_feature(self, var: str, owner: object = None) -> None:
        self.account_features[var] = owner

    def add_host_identity(self, identity: Identity, owner: object = None) -> None:
        self.host_identities[identity] = owner

    def add_account_identity(self, identity: Identity, owner: object = None) -> None:
        self.account_identities[identity] = owner

    def add_item(self, item: DiscoItem, owner: object = None) -> None:
        self.items[item] = owner

    def add_extension(self, form_type: str, form: Element, owner: object = None) -> None:
        self.extensions[form_type] = (form, owner)

    def remove_owner(self, owner: object) -> None:
        tables: list[dict[Any, object]] = [self.host_features, self.account_features,
                                           self.host_identities, self.account_identities,
                                           self.items]
        for table in tables:
            for key in [k for k, o in table.items() if o is owner]:
                del table[key]
        for key in [k for k, (_f, o) in self.extensions.items() if o is owner]:
            del self.extensions[key]
