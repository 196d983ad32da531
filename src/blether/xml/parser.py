"""Incremental, restricted, bounded XML stream parser (sans-IO).

Implements the parsing side of RFC 6120: §4.2-§4.4 (stream header, first-level children as
stanzas, stream close), §4.3.3 (stream restart: `reset()`), §4.6.1 (whitespace keep-alives
between stanzas are ignored), §4.9.3 (every failure carries its stream error condition),
§11.1 (restricted XML: no DTD, entity declarations or references beyond the predefined
ones, comments or processing instructions), §11.2 (unbound prefixes), §11.3
(well-formedness), §11.6 (UTF-8 only) and §11.8 (XML 1.0 only).

Decisions (RFC 6120 gives no dedicated condition for these):

* An XML declaration with a version other than "1.0" raises `RestrictedXML`: §11.8 confines
  XMPP to XML 1.0, and `unsupported-version` (§4.9.3) is about the stream header's XMPP
  `version` attribute, not about XML. Expat itself would accept XML 1.1.
* Non-whitespace text directly inside the stream root (between stanzas) raises `BadFormat`
  (condition `bad-format`, §4.9.3): the XML is well-formed, so `not-well-formed` would be
  wrong, and §11.7 allows only whitespace there. `BadFormat` subclasses `NotWellFormed`.
* Bytes that are not valid UTF-8 raise `UnsupportedEncoding` (§11.6), checked before expat
  sees them, so no other decoding can ever apply (SECURITY.md point 4).

Limits are enforced outside expat, before feeding it (SECURITY.md point 2: libexpat 2.5
re-scans a partial token on every Parse call, quadratic for a huge token in small reads):
expat never gets more bytes than would take the unit being read past its limit. The header
counts from the stream's first byte; a stanza from the `<` of its start tag to the `>` of
its end tag (= `ElementParsed.size`). Whitespace between stanzas is not counted, so
keep-alives never accumulate and results do not depend on how reads were split.

Memory (docs/performance.md, "Idle memory"): an expat parser costs ~10 KiB once it has
parsed a stream header, most of a quiet session's memory. `release()` drops it between
stanzas; the next `feed` makes a new one and primes it with a synthetic start tag that
re-declares the root's namespaces, so the stanzas that follow parse exactly as before (the
priming bytes are not part of the stream: offsets and limits are unchanged). All parsers
share one bounded intern dict and one name cache; expat's text buffer is 1 KiB, not 8.
"""

from __future__ import annotations

import codecs
import copy
import re
from collections.abc import Callable
from typing import NoReturn
from xml.parsers import expat

from blether.xml.element import XML_NS, Element

__all__ = [
    "POST_AUTH_C2S", "POST_AUTH_S2S", "PRE_AUTH", "BadFormat", "BadNamespacePrefix",
    "ElementParsed", "NotWellFormed", "ParserEvent", "ParserLimits", "PolicyViolation",
    "RestrictedXML", "StreamFooter", "StreamHeader", "UnsupportedEncoding", "XMLError",
    "XMLStreamParser",
]


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

SEP = "\x01"  # namespace separator: U+0001 is not allowed anywhere in XML 1.0
_WS = " \t\r\n"  # XML whitespace (str.isspace would also accept NBSP and friends)
_WS_BYTES = _WS.encode()
# End of a start tag: skips quoted attribute values, which may contain a literal `>`.
_TAG_END = re.compile(rb"""[^'">]*(?:(?:'[^']*'|"[^"]*")[^'">]*)*>""")
# Shared by every parser; both are emptied when they grow past their bound, so a peer
# sending random names can make them slower for a moment but never make them grow.
_NAMES: dict[str, tuple[str, str]] = {}  # expat name -> (local, uri)
_NAMES_MAX = 4096
_INTERN: dict[str, str] = {}  # pyexpat's intern table for element and attribute names
_INTERN_MAX = 16384
_TEXT_BUFFER = 1024  # expat's text buffer (8 KiB by default); longer text comes in pieces


def _codes(*names: str) -> frozenset[int]:
    e = expat.errors
    return frozenset(e.codes[getattr(e, n)] for n in names if hasattr(e, n))


# expat error codes with a more specific condition than not-well-formed (RFC 6120 §4.9.3).
_RESTRICTED = _codes(*(f"XML_ERROR_{n}" for n in (
    "UNDEFINED_ENTITY", "RECURSIVE_ENTITY_REF", "ASYNC_ENTITY", "BINARY_ENTITY_REF",
    "ATTRIBUTE_EXTERNAL_ENTITY_REF", "EXTERNAL_ENTITY_HANDLING", "NOT_STANDALONE",
    "ENTITY_DECLARED_IN_PE", "AMPLIFICATION_LIMIT_BREACH", "PARAM_ENTITY_REF")))
_BAD_PREFIX = _codes(*(f"XML_ERROR_{n}" for n in (
    "UNBOUND_PREFIX", "UNDECLARING_PREFIX", "RESERVED_PREFIX_XML", "RESERVED_PREFIX_XMLNS",
    "RESERVED_NAMESPACE_URI")))
_BAD_ENCODING = _codes("XML_ERROR_UNKNOWN_ENCODING", "XML_ERROR_INCORRECT_ENCODING")


def _qualify(attrs: dict[str, str]) -> dict[str, str]:
    """Rename expat's `uri SEP local SEP prefix` attribute keys to Element's key scheme."""
    out: dict[str, str] = {}
    for key, value in attrs.items():
        if SEP in key:
            uri, _, rest = key.partition(SEP)
            local = rest.partition(SEP)[0]
            key = f"xml:{local}" if uri == XML_NS else f"{{{uri}}}{local}"
        out[key] = value
    return out


def _forbid(what: str) -> Callable[..., NoReturn]:
    def handler(*_: object) -> NoReturn:
        raise RestrictedXML(f"{what} not allowed in XMPP (RFC 6120 §11.1)")

    return handler


# Made once, shared by every parser (one closure per parser reset was 1.2 KiB each).
_FORBIDDEN = (
    ("StartDoctypeDeclHandler", _forbid("DOCTYPE")),
    ("EntityDeclHandler", _forbid("entity declaration")),
    ("ExternalEntityRefHandler", _forbid("external entity")),
    ("SkippedEntityHandler", _forbid("entity reference")),
    ("CommentHandler", _forbid("comment")),
    ("ProcessingInstructionHandler", _forbid("processing instruction")),
)


def _attr_value(value: str) -> str:
    """`value` escaped for a single-quoted attribute, whitespace kept exactly (as references:
    a literal tab or newline would be normalised to a space when parsed again)."""
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")
            .replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;"))


def _split(name: str) -> tuple[str, str]:
    """expat name (`uri SEP local [SEP prefix]` or `local`) -> (local, uri), cached."""
    uri, sep, rest = name.partition(SEP)
    split = (rest.partition(SEP)[0], uri) if sep else (name, "")
    if len(_NAMES) >= _NAMES_MAX:
        _NAMES.clear()
    _NAMES[name] = split
    return split


class XMLStreamParser:
    """Feed bytes, get `StreamHeader`, `ElementParsed` and `StreamFooter` events.

    `limits` may be replaced at any time (the stream layer raises them after SASL success);
    the new values apply from the next byte. After an error every `feed` raises again.
    """

    __slots__ = (
        "_at_tag",
        "_boundary",
        "_chunk",
        "_chunk_start",
        "_closed",
        "_count",
        "_decoder",
        "_depth",
        "_error",
        "_events",
        "_fed",
        "_fresh",
        "_head",
        "_header_done",
        "_held",
        "_last_byte",
        "_ns_decls",
        "_p",
        "_prime",
        "_root_ns",
        "_shift",
        "_stack",
        "_text",
        "_utf8_pending",
        "limits",
    )

    def __init__(self, limits: ParserLimits = PRE_AUTH) -> None:
        self.limits = limits
        self.reset()

    def _new_expat(self) -> expat.XMLParserType:
        # The encoding argument overrides any declaration in the document.
        p = expat.ParserCreate("UTF-8", SEP, _INTERN)
        p.namespace_prefixes = True
        p.buffer_size = _TEXT_BUFFER  # before buffer_text: the buffer is allocated once
        p.buffer_text = True
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        if hasattr(p, "SetReparseDeferralEnabled"):
            # expat >= 2.6 may hold a complete stanza back until more bytes arrive.
            p.SetReparseDeferralEnabled(False)
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        p.StartNamespaceDeclHandler = self._ns_decl
        p.XmlDeclHandler = self._xml_decl
        for attr, handler in _FORBIDDEN:
            setattr(p, attr, handler)
        return p

    def reset(self) -> None:
        """Start over with a brand-new expat parser, expecting a new stream header."""
        self._p: expat.XMLParserType | None = self._new_expat()
        self._events: list[ParserEvent] = []
        self._error: XMLError | None = None
        self._depth = 0  # open elements, the stream root included
        self._header_done = False
        self._closed = False
        self._fed = 0  # bytes of the stream handed to expat
        self._shift = 0  # stream offset of the current expat parser's byte 0 (see release)
        self._boundary = 0  # where the unit being counted against a limit starts
        self._at_tag = False  # between stanzas: _boundary is the `<` of a partial tag
        self._head: bytes | bytearray = bytearray()  # bytes until the header's `>` (bounded)
        self._chunk = b""  # the bytes expat is parsing right now ...
        self._chunk_start = 0  # ... and their offset in the stream
        self._last_byte = b""  # final byte of the previous chunk
        self._root_ns: dict[str, str] | None = {}  # declared on the root; until its `>`
        self._prime = b""  # the root's start tag with only those declarations (see _revive)
        self._ns_decls = 0  # namespace declarations on the element being opened
        self._stack: list[Element] = []
        self._text: list[str] = []  # pending text pieces, joined once (no quadratic +=)
        self._count = 0  # elements in the current stanza
        self._fresh = False  # no event since the last start tag
        self._decoder: codecs.IncrementalDecoder | None = None  # made at the first non-ASCII
        self._utf8_pending = 0
        self._held = b""  # trailing bytes of an incomplete UTF-8 sequence

    def release(self) -> bool:
        """Drop the expat parser if the stream is between stanzas with nothing pending.

        For a quiet stream: ~10 KiB less until the next `feed`, which makes a new parser
        (and costs about one stream header's parse). Returns whether it is released.
        """
        p = self._p
        if p is None:
            return True
        if (self._depth != 1 or self._at_tag or self._held or self._closed or self._stack
                or self._error is not None):
            return False
        if p.CurrentByteIndex + self._shift != self._fed:
            return False  # expat holds bytes it has not reported yet (a partial token)
        self._p = None
        self._chunk = b""
        self._events = []
        return True

    def _revive(self) -> expat.XMLParserType:
        """A new expat parser, positioned inside the stream root as the released one was."""
        p = self._p = self._new_expat()
        prime = self._prime
        self._shift = self._fed - len(prime)
        self._depth = 0  # _start_root sees _header_done: back to depth 1, no event
        p.Parse(prime, False)
        return p

    # -- feeding --------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[ParserEvent]:
        """Parse `data`; return the events it completed. Raises an `XMLError`."""
        if self._error is not None:
            again = copy.copy(self._error)
            again.events = []
            raise again
        events = self._events = []
        if len(_INTERN) > _INTERN_MAX:  # one read adds at most its own bytes' worth
            _INTERN.clear()
        try:
            if self._closed:
                if data.strip(_WS_BYTES):
                    raise NotWellFormed("data after the end of the stream")
                return events
            # A NUL is never XML; early in a stream it makes expat guess UTF-16 despite the
            # forced UTF-8 (a parser differential, SECURITY.md point 4). Only the bytes
            # before it are looked at, in the same order whatever the read sizes.
            nul = data.find(b"\x00")
            head = data if nul < 0 else data[:nul]
            bad = self._utf8_error(head)
            if bad >= 0:
                # Held-back bytes belong to the invalid sequence when it starts the read.
                self._feed(self._held + head[:bad] if bad > 0 else b"")
                raise UnsupportedEncoding(f"invalid UTF-8 at byte {self._fed}")
            # Hold back an incomplete UTF-8 sequence at the end of the read until the next
            # read completes it, so errors never depend on how TCP split the bytes.
            buf = self._held + head if self._held else head
            pending = self._utf8_pending
            if pending:
                self._held, buf = buf[-pending:], buf[:-pending]
            else:
                self._held = b""
            self._feed(buf)
            if nul >= 0:
                if pending or not self._header_done:
                    raise UnsupportedEncoding("NUL byte: the stream is not UTF-8")
                raise NotWellFormed("NUL byte in the stream")
        except XMLError as exc:
            exc.events = events
            self._error = exc
            raise
        return events

    def _utf8_error(self, data: bytes) -> int:
        """Offset of the first byte of `data` that is not valid UTF-8, or -1."""
        if not self._utf8_pending and data.isascii():
            return -1  # fast path for the usual all-ASCII read
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            decoder.decode(data)
        except UnicodeDecodeError as exc:
            return max(exc.start - self._utf8_pending, 0)
        self._utf8_pending = len(decoder.getstate()[0])
        return -1

    def _feed(self, data: bytes) -> None:
        pos, n = 0, len(data)
        while True:
            if self._closed:
                room = n - pos  # only expat's junk-after-root check is left
            elif self._header_done:
                room = self._boundary + self.limits.max_stanza_bytes - self._fed
            else:
                room = self.limits.max_header_bytes - self._fed
            if room < 0 or (room == 0 and pos < n):
                # The unit is provably over its limit: it already is, or it is exactly at
                # it, still open, and more bytes of it are waiting.
                if self._header_done:
                    raise PolicyViolation("XML stanza is too big", "stanza-too-big")
                raise PolicyViolation("stream header is too big", "header")
            if pos >= n:
                return
            chunk = data if pos == 0 and room >= n else data[pos : pos + room]
            pos += len(chunk)
            self._chunk, self._chunk_start = chunk, self._fed
            if not self._header_done:
                self._head += chunk
            p = self._p
            if p is None:
                p = self._revive()
            try:
                p.Parse(chunk, False)
            except expat.ExpatError as exc:
                raise self._expat_error(exc) from None
            self._fed += len(chunk)
            self._last_byte = chunk[-1:]
            if self._depth == 1 and not self._at_tag:
                self._skip_whitespace()

    def _skip_whitespace(self) -> None:
        # Between stanzas: everything after the boundary is whitespace (text would have
        # raised) up to the `<` of a tag expat has not finished. Count from that `<`.
        cs = self._chunk_start
        k = self._chunk.find(b"<", max(self._boundary - cs, 0))
        if k < 0:
            self._boundary = cs + len(self._chunk)
        else:
            self._boundary = cs + k
            self._at_tag = True

    def _expat_error(self, exc: expat.ExpatError) -> XMLError:
        # Text expat buffered before the bad markup is reported first (toggling buffer_text
        # flushes it to our handler), so the error never depends on how reads were split.
        p = self._p
        assert p is not None
        try:
            p.buffer_text = False
            p.buffer_text = True
        except XMLError as flushed:
            return flushed
        code = exc.code
        msg = f"{expat.errors.messages[code]} (line {exc.lineno}, column {exc.offset})"
        if code in _RESTRICTED:
            return RestrictedXML(msg)
        if code in _BAD_PREFIX:
            return BadNamespacePrefix(msg)
        if code in _BAD_ENCODING:
            return UnsupportedEncoding(msg)
        return NotWellFormed(msg)

    # -- expat handlers (the hot path) ----------------------------------------------------

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        depth = self._depth
        if depth == 0:
            self._start_root(name, attrs)
            return
        lim = self.limits
        if len(attrs) + self._ns_decls > lim.max_attrs:
            raise PolicyViolation("too many attributes", "attributes")
        self._ns_decls = 0
        if depth == 1:
            # A stanza starts: from its `<` on, its bytes count against the limit.
            self._boundary = self._p.CurrentByteIndex + self._shift  # type: ignore[union-attr]
            self._count = 1
        else:
            if depth > lim.max_depth:
                raise PolicyViolation("elements nested too deeply", "depth")
            self._count += 1
            if self._count > lim.max_elements:
                raise PolicyViolation("too many elements in one stanza", "elements")
            if self._text:
                self._flush_text()
        split = _NAMES.get(name)
        if split is None:
            split = _split(name)
        for key in attrs:
            if SEP in key:
                attrs = _qualify(attrs)
                break
        el = Element(split[0], split[1], attrs, [])
        if depth > 1:
            self._stack[-1].children.append(el)
        self._stack.append(el)
        self._depth = depth + 1
        self._fresh = True

    def _end(self, name: str) -> None:
        depth = self._depth = self._depth - 1
        if self._text:
            self._flush_text()
        if depth > 1:
            self._stack.pop()
        elif depth == 1:
            el = self._stack.pop()
            end = self._stanza_end()
            self._events.append(ElementParsed(el, end - self._boundary))
            self._boundary = end
            self._at_tag = False
        else:
            self._closed = True
            self._events.append(StreamFooter())
        self._fresh = False

    def _chars(self, data: str) -> None:
        if self._depth > 1:
            self._text.append(data)
            self._fresh = False
        elif data.strip(_WS):
            raise BadFormat("text outside a stanza at the stream level")

    def _ns_decl(self, prefix: str | None, uri: str | None) -> None:
        self._ns_decls += 1
        if self._depth == 0 and self._root_ns is not None:
            self._root_ns[prefix or ""] = uri or ""

    def _xml_decl(self, version: str | None, encoding: str | None, standalone: int) -> None:
        if encoding is not None and encoding.lower() != "utf-8":
            raise UnsupportedEncoding(f"XML declaration names encoding {encoding!r}")
        if version != "1.0":
            raise RestrictedXML(f"XML version {version!r}: XMPP is XML 1.0 only")

    # -- helpers --------------------------------------------------------------------------

    def _flush_text(self) -> None:
        text = self._text
        self._stack[-1].children.append(text[0] if len(text) == 1 else "".join(text))
        text.clear()

    def _stanza_end(self) -> int:
        """Stream offset just past the `>` that closed the stanza being ended."""
        # expat reports the end of an empty-element tag at the offset after the tag, but the
        # end of `</x>` at its `<`. Only an element with no content can be either; an empty
        # tag is the one whose last two bytes are `/>` (a start tag never ends in `/>`).
        i = self._p.CurrentByteIndex + self._shift  # type: ignore[union-attr]
        chunk, cs = self._chunk, self._chunk_start
        j = i - cs
        if self._fresh and j > 0:
            last2 = chunk[j - 2 : j] if j >= 2 else self._last_byte + chunk[:1]
            if last2 == b"/>":
                return i
        # An end tag holds no `>` before its last byte, and that byte is in this chunk.
        k = chunk.find(b">", max(j, 0))
        return cs + k + 1 if k >= 0 else cs + len(chunk)

    def _start_root(self, name: str, attrs: dict[str, str]) -> None:
        if self._header_done:  # the synthetic start tag of _revive: back inside the root
            self._ns_decls = 0
            self._depth = 1
            return
        if len(attrs) + self._ns_decls > self.limits.max_attrs:
            raise PolicyViolation("too many attributes", "attributes")
        self._ns_decls = 0
        uri, sep, rest = name.partition(SEP)
        local, _, prefix = rest.partition(SEP)
        if not sep:
            local, uri = name, ""
        for key in attrs:
            if SEP in key:
                attrs = _qualify(attrs)
                break
        match = _TAG_END.match(self._head, self._p.CurrentByteIndex)  # type: ignore[union-attr]
        self._boundary = match.end() if match else len(self._head)
        self._head = b""
        self._header_done = True
        self._depth = 1
        ns = self._root_ns or {}
        self._root_ns = None
        decls = "".join(f" xmlns{':' + k if k else ''}='{_attr_value(v)}'"
                        for k, v in ns.items())
        self._prime = f"<{f'{prefix}:{local}' if prefix else local}{decls}>".encode()
        self._events.append(StreamHeader(local, uri, prefix, ns.get("", ""), attrs, ns))
