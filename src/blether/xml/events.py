"""What the XML stream parser reports (RFC 6120 §4.2-§4.4) and how it fails (§4.9.3, §11).

The events (`StreamHeader`, `ElementParsed`, `StreamFooter`), the limits that bound a stream
(SECURITY.md points 2-3) and the exceptions, each carrying its stream error condition. Kept
apart from `parser.py` so the stream layer can use them without the parser's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from blether.xml.element import Element

__all__ = [
    "POST_AUTH_C2S", "POST_AUTH_S2S", "PRE_AUTH", "BadFormat", "BadNamespacePrefix",
    "ElementParsed", "NotWellFormed", "ParserEvent", "ParserLimits", "PolicyViolation",
    "RestrictedXML", "StreamFooter", "StreamHeader", "UnsupportedEncoding", "XMLError",
]


@dataclass(frozen=True, slots=True)
class ParserLimits:
    max_stanza_bytes: int = 8192  # bytes of one first-level element, `<` to `>`
    max_depth: int = 16  # nesting inside a stanza; the stanza itself is depth 1
    max_attrs: int = 64  # attributes per element, namespace declarations included
    max_elements: int = 32  # elements per stanza, the stanza itself included
    max_header_bytes: int = 4096  # bytes from the start of the stream to the header's `>`


PRE_AUTH = ParserLimits()
POST_AUTH_C2S = ParserLimits(262144, 64, 64, 10000, 4096)
POST_AUTH_S2S = ParserLimits(524288, 64, 64, 10000, 4096)


@dataclass(frozen=True, slots=True)
class StreamHeader:
    name: str  # local name of the root, normally "stream"
    ns: str  # namespace URI of the root, normally http://etherx.jabber.org/streams
    prefix: str  # prefix used on the root ("stream"), "" if default-namespaced
    content_ns: str  # default namespace declared on the root, "" if none
    attrs: dict[str, str]  # to, from, id, version, "xml:lang"
    namespaces: dict[str, str]  # prefix -> URI declared on the root, "" = default


@dataclass(frozen=True, slots=True)
class ElementParsed:
    element: Element
    size: int  # bytes of the element on the wire, start tag through end tag


@dataclass(frozen=True, slots=True)
class StreamFooter:
    pass


ParserEvent: TypeAlias = StreamHeader | ElementParsed | StreamFooter


class XMLError(Exception):
    """Base of every parser failure; `condition` is the RFC 6120 §4.9.3 stream error.

    `events` holds what the failing `feed` call parsed before the error, in order, so the
    stream layer can still process stanzas that preceded the bad bytes in the same read.
    """

    condition = "bad-format"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.events: list[ParserEvent] = []


class NotWellFormed(XMLError):
    condition = "not-well-formed"


class BadFormat(NotWellFormed):
    """Well-formed XML that is not an XMPP stream (text between stanzas)."""

    condition = "bad-format"


class RestrictedXML(XMLError):
    condition = "restricted-xml"


class UnsupportedEncoding(XMLError):
    condition = "unsupported-encoding"


class BadNamespacePrefix(XMLError):
    condition = "bad-namespace-prefix"


class PolicyViolation(XMLError):
    """A limit was exceeded; `limit` is one of stanza-too-big, depth, attributes, elements,
    header."""

    condition = "policy-violation"

    def __init__(self, message: str, limit: str = "stanza-too-big") -> None:
        super().__init__(message)
        self.limit = limit
