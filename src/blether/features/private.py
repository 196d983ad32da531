"""XEP-0049: Private XML Storage (jabber:iq:private).

§2.3: an account stores arbitrary namespaced XML fragments on the server and gets them back
by asking for an empty element of the same name and namespace. Only the account itself may
do either: anyone else gets ``forbidden`` (the preferable of the two conditions §2.3 allows).

Choices where the XEP leaves room, following the reference servers:

* A fragment is keyed by its name and namespace (``{namespace}name``, as Prosody keys it by
  ``name:namespace``), in the key-value store ``private``.
* A set may carry several fragments (§2.3: "an IQ set … MAY contain multiple elements", which
  ejabberd supports); all are checked before any is stored. A get asks for exactly one.
* A query with no child is ``not-acceptable`` (the MUST of §2.3; the "Bad Format" of the
  get example is the legacy code 406, i.e. not-acceptable too).
* Setting an empty element deletes the fragment (Prosody); getting a missing fragment returns
  the empty element asked for (both servers).
* Reserved namespaces (§2.3: 'jabber:*', 'http://jabber.org/*', 'vcard-temp') are refused
  with ``not-acceptable`` — optional in the XEP, on by default here, switchable.
* Size limits (neither server has one beyond the stanza size): each fragment and the number
  of fragments per account are capped so one account cannot fill the database.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from blether import ns
from blether.core.iq import IqRequest, Target
from blether.core.module import XEP, Module, iq_handler
from blether.errors import StanzaError
from blether.xml.element import Element, serialize
from blether.xml.parser import POST_AUTH_C2S, ElementParsed, XMLStreamParser

STORE = "private"
RESERVED_PREFIXES = ("jabber:", "http://jabber.org/")
RESERVED_NAMESPACES = frozenset({"vcard-temp"})


class PrivateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_item_bytes: int = Field(65536, ge=256, description="largest fragment, serialized")
    max_items: int = Field(100, ge=1, description="fragments (namespaces) per account")
    reject_reserved_namespaces: bool = True


def key_of(el: Element) -> str:
    return f"{{{el.xmlns}}}{el.name}"


def is_reserved(namespace: str) -> bool:
    return namespace in RESERVED_NAMESPACES or namespace.startswith(RESERVED_PREFIXES)


def load(text: str) -> Element:
    """Parse one stored fragment (serialized with its own xmlns) back into an Element."""
    parser = XMLStreamParser(POST_AUTH_C2S)
    header = (f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAMS}' "
              "version='1.0'>").encode()
    for event in parser.feed(header + text.encode()):
        if isinstance(event, ElementParsed):
            return event.element
    raise ValueError("stored fragment is not a complete element")


class PrivateModule(Module):
    name = "private"
    specs = (XEP(49, "1.2", "complete"),)
    account_features = (ns.PRIVATE,)
    Options = PrivateOptions
    options: PrivateOptions

    def _fragments(self, req: IqRequest) -> list[Element]:
        if not req.is_self:
            raise StanzaError("forbidden", "private data belongs to the account alone")
        if req.payload.name != "query":
            raise StanzaError("bad-request", "expected <query xmlns='jabber:iq:private'/>")
        children = req.payload.elements()
        if not children:
            raise StanzaError("not-acceptable", "include the element to store or retrieve")
        for child in children:
            if not child.xmlns or child.xmlns == ns.CLIENT:
                raise StanzaError("not-acceptable", "the stored element needs its own namespace")
            if self.options.reject_reserved_namespaces and is_reserved(child.xmlns):
                raise StanzaError("not-acceptable", f"{child.xmlns} is a reserved namespace")
        return children

    @iq_handler("get", ns.PRIVATE, Target.ACCOUNT)
    async def get_private(self, req: IqRequest) -> Element:
        children = self._fragments(req)
        if len(children) != 1:
            # §2.3: "A client MUST NOT query for more than one namespace in a single IQ get".
            raise StanzaError("bad-request", "ask for one element at a time")
        wanted = children[0]
        stored = await self.ctx.services.storage.kv.get(str(req.to), STORE, key_of(wanted))
        found = load(stored) if stored is not None else Element(wanted.name, wanted.xmlns)
        return req.result(Element("query", ns.PRIVATE, None, [found]))

    @iq_handler("set", ns.PRIVATE, Target.ACCOUNT)
    async def set_private(self, req: IqRequest) -> Element:
        children = self._fragments(req)
        kv = self.ctx.services.storage.kv
        owner = str(req.to)
        writes: dict[str, str | None] = {}
        for child in children:
            if not child.children and set(child.attrs) <= {"xml:lang"}:
                writes[key_of(child)] = None          # an empty element clears (Prosody)
                continue
            text = serialize(child, "")
            if len(text.encode()) > self.options.max_item_bytes:
                raise StanzaError("not-acceptable", f"<{child.name}/> is larger than "
                                  f"{self.options.max_item_bytes} bytes")
            writes[key_of(child)] = text
        existing = set(await kv.keys(owner, STORE))
        after = (existing | {k for k, v in writes.items() if v is not None}) - \
            {k for k, v in writes.items() if v is None}
        if len(after) > self.options.max_items and len(after) > len(existing):
            raise StanzaError("resource-constraint",
                              f"at most {self.options.max_items} private elements per account")
        for key, value in writes.items():
            if value is None:
                await kv.delete(owner, STORE, key)
            else:
                await kv.set(owner, STORE, key, value)
        return req.result()
