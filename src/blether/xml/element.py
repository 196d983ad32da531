"""The stanza value type and the XMPP-aware serializer.

Implements the XML side of RFC 6120 §4.8 (namespace inheritance: the stream's content
namespace is the default namespace of every stanza, so it is never repeated on the wire),
§11.2 (namespace names and prefixes: elements always use default-namespace declarations,
never invented prefixes) and §11.3 (well-formed output: `& < >` escaped in text, `& < > ' "`
in attribute values, which are quoted with `'`).

`Element` is deliberately dumb: four slots, no parent pointers, no lazy parsing. Stanzas are
values while routed (DESIGN.md §1.4): change an address with `with_attrs`, which returns a
new element sharing the children list, instead of mutating a stanza someone else holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import overload

__all__ = ["XML_NS", "E", "Element", "serialize", "to_bytes"]

#: The namespace bound to the reserved `xml` prefix (Namespaces in XML 1.0 §3).
XML_NS = "http://www.w3.org/XML/1998/namespace"


class Element:
    """One XML element: local name, resolved namespace URI, attributes, mixed content.

    Attribute keys: unqualified attributes by local name (`"to"`), attributes in the XML
    namespace as `"xml:<local>"` (`"xml:lang"`), any other namespaced attribute as
    `"{uri}local"`. `children` holds child elements and text strings in document order.
    """

    __slots__ = ("attrs", "children", "name", "xmlns")

    name: str
    xmlns: str
    attrs: dict[str, str]
    children: list[Element | str]

    def __init__(
        self,
        name: str,
        xmlns: str,
        attrs: dict[str, str] | None = None,
        children: list[Element | str] | None = None,
    ) -> None:
        self.name = name
        self.xmlns = xmlns
        # The dict and list are taken, not copied: the parser hands over fresh ones.
        self.attrs = {} if attrs is None else attrs
        self.children = [] if children is None else children

    # -- lookup ---------------------------------------------------------------------------

    def get(self, key: str, default: str | None = None) -> str | None:
        """Attribute value, or `default` when absent."""
        return self.attrs.get(key, default)

    def find(self, name: str, xmlns: str | None = None) -> Element | None:
        """First child element called `name` (in namespace `xmlns` unless it is None)."""
        for child in self.children:
            if (
                isinstance(child, Element)
                and child.name == name
                and (xmlns is None or child.xmlns == xmlns)
            ):
                return child
        return None

    def find_all(self, name: str | None = None, xmlns: str | None = None) -> list[Element]:
        """All child elements matching `name` and `xmlns` (None matches anything)."""
        return [
            c
            for c in self.children
            if isinstance(c, Element)
            and (name is None or c.name == name)
            and (xmlns is None or c.xmlns == xmlns)
        ]

    def elements(self) -> list[Element]:
        """Child elements only, text skipped."""
        return [c for c in self.children if isinstance(c, Element)]

    @property
    def text(self) -> str:
        """Concatenation of the direct text children (not the descendants' text)."""
        children = self.children
        if len(children) == 1 and isinstance(children[0], str):
            return children[0]  # the common case: <body>hello</body>
        return "".join(c for c in children if isinstance(c, str))

    def find_text(self, name: str, xmlns: str | None = None) -> str | None:
        """Text of the first matching child, or None if there is no such child."""
        child = self.find(name, xmlns)
        return None if child is None else child.text

    # -- building -------------------------------------------------------------------------

    @overload
    def append(self, child: Element) -> Element: ...
    @overload
    def append(self, child: str) -> str: ...
    def append(self, child: Element | str) -> Element | str:
        """Append a child element or text and return it (handy for building trees)."""
        self.children.append(child)
        return child

    def copy(self) -> Element:
        """Deep copy: nothing is shared with the original."""
        return Element(
            self.name,
            self.xmlns,
            dict(self.attrs),
            [c if isinstance(c, str) else c.copy() for c in self.children],
        )

    def with_attrs(
        self, changes: Mapping[str, str | None] | None = None, /, **kw: str | None
    ) -> Element:
        """A new element with some attributes changed; a value of None removes the key.

        The children list is shared with the original (stanzas are values while routed, so
        nobody mutates it). Keys can come as a mapping (`{"from": jid, "xml:lang": None}`)
        or as keywords; since `from` is a Python keyword a trailing underscore is stripped
        from keyword names (`from_=jid`) — no XMPP attribute name ends with `_`.
        """
        attrs = self.attrs.copy()
        # Inlined (no helper per key): this runs once per recipient of every presence
        # broadcast.
        if changes:
            for key, value in changes.items():
                if value is None:
                    attrs.pop(key, None)
                else:
                    attrs[key] = value
        for key, value in kw.items():
            if key[-1] == "_":
                key = key[:-1]
            if value is None:
                attrs.pop(key, None)
            else:
                attrs[key] = value
        return Element(self.name, self.xmlns, attrs, self.children)

    # -- value semantics ------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Element):
            return NotImplemented
        return (
            self.name == other.name
            and self.xmlns == other.xmlns
            and self.attrs == other.attrs
            and self.children == other.children
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared structurally

    def __repr__(self) -> str:
        # Serialized against an empty parent namespace so the element's own xmlns shows.
        return serialize(self, "")


def E(
    name: str, xmlns: str, attrs: dict[str, str] | None = None, *children: Element | str
) -> Element:
    """Terse constructor for building trees in code and tests.

    `E("message", "jabber:client", {"to": "a@b"}, E("body", "jabber:client", None, "hi"))`
    """
    return Element(name, xmlns, attrs, list(children))


# -- serializer ---------------------------------------------------------------------------

# One regex scan finds out whether any escaping is needed: most text and attribute values
# need none, and then no replace() runs at all. The bound `search` methods are called
# directly in `_write` (no helper call per value: this runs for every attribute of every
# stanza delivered).
_TEXT_SPECIAL = re.compile(r"[&<>\r]")
_ATTR_SPECIAL = re.compile(r"[&<>'\"\r\n\t]")
_text_special = _TEXT_SPECIAL.search
_attr_special = _ATTR_SPECIAL.search


def _esc_text(s: str) -> str:
    if _text_special(s) is None:
        return s
    # `>` is escaped too so that `]]>` can never appear; `\r` as a character reference
    # because a literal CR would be normalised to LF by the receiving parser (XML §2.11).
    return (
        s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _esc_attr(s: str) -> str:
    if _attr_special(s) is None:
        return s
    # Tab, LF and CR as character references: attribute-value normalisation (XML §3.3.3)
    # would otherwise turn them into spaces and the value would not round-trip.
    return (
        s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&apos;")
        .replace('"', "&quot;")
        .replace("\r", "&#13;")
        .replace("\n", "&#10;")
        .replace("\t", "&#9;")
    )


def _write(
    el: Element, default_ns: str, prefixes: Mapping[str, str] | None, out: list[str]
) -> None:
    name = el.name
    ns = el.xmlns
    if ns == default_ns:
        out.append("<" + name)
    elif prefixes is not None and ns in prefixes:
        # Namespace already bound to a prefix in scope (e.g. `stream:` from the stream
        # header): write it prefixed. The default namespace for the children is unchanged.
        name = f"{prefixes[ns]}:{name}"
        out.append("<" + name)
    else:
        out.append(f"<{name} xmlns='{_esc_attr(ns)}'")
        default_ns = ns
    attrs = el.attrs
    if attrs:
        declared: dict[str, str] | None = None
        for key, value in attrs.items():
            if key[0] == "{":
                uri, _, local = key[1:].partition("}")
                if uri == XML_NS:
                    key = f"xml:{local}"  # the xml prefix is predeclared and must be used
                else:
                    if declared is None:
                        declared = {}
                    prefix = declared.get(uri)
                    if prefix is None:
                        # Rare (XMPP uses few namespaced attributes); a prefix unique
                        # within this start tag is all correctness needs.
                        prefix = declared[uri] = f"a{len(declared)}"
                        out.append(f" xmlns:{prefix}='{_esc_attr(uri)}'")
                    key = f"{prefix}:{local}"
            if _attr_special(value) is None:
                out.append(f" {key}='{value}'")
            else:
                out.append(f" {key}='{_esc_attr(value)}'")
    children = el.children
    if not children:
        out.append("/>")
        return
    out.append(">")
    for child in children:
        if isinstance(child, str):
            out.append(child if _text_special(child) is None else _esc_text(child))
        else:
            _write(child, default_ns, prefixes, out)
    out.append(f"</{name}>")


def serialize(
    el: Element, parent_ns: str = "jabber:client", *, prefixes: Mapping[str, str] | None = None
) -> str:
    """Serialize `el` as it would appear inside a parent whose default namespace is `parent_ns`.

    The default (`jabber:client`) fits stanzas written on a c2s stream; pass the stream's
    content namespace otherwise. `xmlns` is written only where an element's namespace
    differs from the one it inherits. `prefixes` maps namespace URIs to prefixes already
    declared in scope (the stream header's `{STREAMS: "stream"}`), for elements that should
    be written as `<stream:features>` rather than with a default-namespace declaration.
    """
    out: list[str] = []
    _write(el, parent_ns, prefixes, out)
    return "".join(out)


def to_bytes(
    el: Element, parent_ns: str = "jabber:client", *, prefixes: Mapping[str, str] | None = None
) -> bytes:
    """`serialize` encoded as UTF-8, the only encoding XMPP allows (RFC 6120 §11.6)."""
    return serialize(el, parent_ns, prefixes=prefixes).encode("utf-8")
