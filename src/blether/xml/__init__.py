"""XML layer: the `Element` value type, its XMPP-aware serializer (RFC 6120 §4.8, §11) and the
incremental, restricted, bounded stream parser (RFC 6120 §4, §11)."""

from blether.xml.element import XML_NS, E, Element, serialize, to_bytes
from blether.xml.events import (
    POST_AUTH_C2S,
    POST_AUTH_S2S,
    PRE_AUTH,
    BadFormat,
    BadNamespacePrefix,
    ElementParsed,
    NotWellFormed,
    ParserEvent,
    ParserLimits,
    PolicyViolation,
    RestrictedXML,
    StreamFooter,
    StreamHeader,
    UnsupportedEncoding,
    XMLError,
)
from blether.xml.parser import XMLStreamParser

__all__ = [
    "POST_AUTH_C2S",
    "POST_AUTH_S2S",
    "PRE_AUTH",
    "XML_NS",
    "BadFormat",
    "BadNamespacePrefix",
    "E",
    "Element",
    "ElementParsed",
    "NotWellFormed",
    "ParserEvent",
    "ParserLimits",
    "PolicyViolation",
    "RestrictedXML",
    "StreamFooter",
    "StreamHeader",
    "UnsupportedEncoding",
    "XMLError",
    "XMLStreamParser",
    "serialize",
    "to_bytes",
]
