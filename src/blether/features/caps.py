"""XEP-0115 Entity Capabilities: the server's own caps, offered as a stream feature.

The server is a generating entity (XEP-0115 §6.3 "Stream Feature"): every stream-features
element (before and after authentication) carries
`<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='…' ver='…'/>`, where `ver` is the
verification string of §5.1 computed from the host's disco#info (identities, features and
XEP-0128 forms, exactly what the disco module answers). A disco#info query for `node#ver`
(§6.2) is answered with that same information.

The ver is not fixed at start: modules may register features in their own start(), and the
answer must always match what disco#info returns. It is cached keyed on the disco#info content
(every login's stream features carry it, and hashing the sorted string each time showed up in
the login profile).

Not implemented: caps optimization (§8.4, the server caching and filtering its clients' caps);
that belongs with PEP.
"""

from __future__ import annotations

import base64
import hashlib

from pydantic import BaseModel, ConfigDict, Field

from blether import ns
from blether.core import events
from blether.core.disco import DiscoItem, Identity
from blether.core.iq import IqRequest, Target
from blether.core.module import XEP, Module, hook
from blether.features.disco import DiscoInfo, DiscoModule
from blether.xml.element import Element

DEFAULT_NODE = "https://blether.example/caps"


def _form_type(form: Element) -> str | None:
    """The FORM_TYPE of a XEP-0128 form; None if it has no hidden FORM_TYPE field.

    §5.4 step 3.6: a receiver ignores such forms, so the generator leaves them out too, or the
    two sides would hash different strings.
    """
    for fld in form.find_all("field", ns.DATA_FORMS):
        if fld.attrs.get("var") == "FORM_TYPE":
            if fld.attrs.get("type") != "hidden":
                return None
            values = [v.text for v in fld.find_all("value", ns.DATA_FORMS)]
            return values[0] if values else None
    return None


def verification_string_input(identities: tuple[Identity, ...] | list[Identity],
                              features: tuple[str, ...] | list[str],
                              forms: tuple[Element, ...] | list[Element] = ()) -> str:
    """The string S of XEP-0115 §5.1 (steps 1 to 7).

    Sorting is "i;octet" (RFC 4790 §9.3), i.e. by UTF-8 bytes, which for Python strings is the
    same order as by code points.
    """
    s: list[str] = []
    for ident in sorted(identities, key=lambda i: (i.category, i.type, i.lang, i.name)):
        s.append(f"{ident.category}/{ident.type}/{ident.lang}/{ident.name}<")
    for var in sorted(features):
        s.append(f"{var}<")
    typed = [(ft, form) for form in forms if (ft := _form_type(form)) is not None]
    for form_type, form in sorted(typed, key=lambda pair: pair[0]):
        s.append(f"{form_type}<")
        fields = [f for f in form.find_all("field", ns.DATA_FORMS)
                  if f.attrs.get("var") != "FORM_TYPE"]
        for fld in sorted(fields, key=lambda f: f.attrs.get("var", "")):
            s.append(f"{fld.attrs.get('var', '')}<")
            for value in sorted(v.text for v in fld.find_all("value", ns.DATA_FORMS)):
                s.append(f"{value}<")
    return "".join(s)


def verification_string(identities: tuple[Identity, ...] | list[Identity],
                        features: tuple[str, ...] | list[str],
                        forms: tuple[Element, ...] | list[Element] = ()) -> str:
    """XEP-0115 §5.1 with SHA-1 (the mandatory-to-implement hash, §9.1): base64 of the digest."""
    data = verification_string_input(identities, features, forms).encode("utf-8")
    digest = hashlib.sha1(data, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


class CapsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # §4: a URI identifying the software, RECOMMENDED to be an HTTP URL about it.
    node: str = Field(DEFAULT_NODE, description="XEP-0115 'node' of the server's caps")


class CapsModule(Module):
    name = "caps"
    specs = (XEP(115, "1.6.0", "partial",
                 "the server's own caps in stream features (§6.3) and node#ver disco (§6.2); "
                 "caps optimization (§8.4) is not implemented"),)
    depends = ("disco",)
    host_features = (ns.CAPS,)
    Options = CapsOptions

    @property
    def _disco(self) -> DiscoModule:
        disco: DiscoModule = self.ctx.services.module("disco")
        return disco

    _ver_cache: tuple[object, str] | None = None

    async def start(self) -> None:
        self._disco.add_node_provider(Target.HOST, self, owner=self)

    async def stop(self) -> None:
        self._disco.remove_node_providers(self)

    def ver(self) -> str:
        info = self._disco.host_info()
        # Forms are mutable Elements: their content (equality), not their identity, is the key.
        key = (info.identities, info.features, tuple(f.copy() for f in info.forms))
        cached = self._ver_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        ver = verification_string(info.identities, info.features, info.forms)
        self._ver_cache = (key, ver)
        return ver

    def element(self) -> Element:
        return Element("c", ns.CAPS, {"hash": "sha-1", "node": self.options.node,
                                      "ver": self.ver()})

    @hook(events.COLLECT_FEATURES)
    async def stream_feature(self, event: events.StreamFeatures) -> None:
        # Offered before and after authentication alike: the information is public and a
        # client may want to skip the disco#info round trip either way.
        event.features.append(self.element())

    # -- NodeProvider for the disco module -----------------------------------------------
    async def node_info(self, req: IqRequest, node: str) -> DiscoInfo | None:
        if node == f"{self.options.node}#{self.ver()}":
            return self._disco.host_info()
        return None

    async def node_items(self, req: IqRequest, node: str) -> list[DiscoItem] | None:
        # §6.2: the caps node is a virtual node for disco#info only; it has no items.
        return None
