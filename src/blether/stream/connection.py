"""XML stream framing (RFC 6120 §4): header validation, restarts, stanza and error output.

Sans-IO: bytes in, events out; bytes out for what must be written. No sockets here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from blether import ns
from blether.errors import StreamError
from blether.xml.element import Element, serialize
from blether.xml.parser import (
    ElementParsed,
    ParserLimits,
    StreamFooter,
    StreamHeader,
    XMLError,
    XMLStreamParser,
)


def _attr(value: str) -> str:
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer's (validated) stream header."""

    to: str | None
    from_: str | None
    lang: str
    version: str


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The peer sent </stream:stream>."""


StreamEvent = StreamOpened | Element | StreamClosed | StreamError


class XMPPStream:
    """One side (the receiving entity) of an XML stream for `content_ns`."""

    __slots__ = ("content_ns", "header_sent", "hosts", "lang", "parser", "stream_id", "to")

    def __init__(self, content_ns: str, hosts: frozenset[str], limits: ParserLimits) -> None:
        self.content_ns = content_ns
        self.hosts = hosts
        self.parser = XMLStreamParser(limits)
        self.header_sent = False
        self.stream_id = ""
        self.lang = "en"
        self.to: str | None = None

    def set_limits(self, limits: ParserLimits) -> None:
        self.parser.limits = limits

    def compact(self) -> None:
        """The stream is quiet: let the parser drop its expat parser until more bytes come."""
        self.parser.release()

    def restart(self) -> None:
        """RFC 6120 §4.3.3: after TLS or SASL both sides start a new stream from scratch."""
        self.parser.reset()
        self.header_sent = False

    def receive(self, data: bytes) -> list[StreamEvent]:
        """Feed bytes; return events in order.

        A fatal XML problem ends the list as a StreamError event, after the stanzas that
        arrived intact before the bad bytes (they were sent first and are processed first).
        A bad stream header raises StreamError directly.
        """
        error: StreamError | None = None
        try:
            raw = self.parser.feed(data)
        except XMLError as exc:
            raw = list(exc.events)
            error = StreamError(exc.condition, str(exc))
        out: list[StreamEvent] = []
        for ev in raw:
            if isinstance(ev, ElementParsed):
                out.append(ev.element)
            elif isinstance(ev, StreamHeader):
                out.append(self._validate_header(ev))
            elif isinstance(ev, StreamFooter):
                out.append(StreamClosed())
        if error is not None:
            out.append(error)
        return out

    def _validate_header(self, h: StreamHeader) -> StreamOpened:
        """RFC 6120 §4.7, §4.8, §4.9.3: check what the initiating entity sent."""
        to = h.attrs.get("to")
        self.to = to
        lang = h.attrs.get("xml:lang") or "en"
        self.lang = lang
        if h.ns != ns.STREAMS or h.name != "stream":
            raise StreamError("invalid-namespace", "the stream element must be "
                              "{http://etherx.jabber.org/streams}stream")
        if h.prefix != "stream":
            raise StreamError("bad-namespace-prefix", "use the 'stream' prefix for the stream")
        if h.content_ns != self.content_ns:
            raise StreamError("invalid-namespace",
                              f"the content namespace must be {self.content_ns}")
        version = h.attrs.get("version", "0.9")
        try:
            major = int(version.split(".", 1)[0])
        except ValueError:
            raise StreamError("unsupported-version", f"bad version {version!r}") from None
        if major != 1:
            raise StreamError("unsupported-version", "only XMPP version 1.0 is supported")
        if to is None:
            raise StreamError("host-unknown", "the stream header needs a 'to' attribute")
        from blether.jid import JIDError, prep_domain
        try:
            domain = prep_domain(to)
        except JIDError:
            raise StreamError("host-unknown", f"{to!r} is not a domain") from None
        if domain not in self.hosts:
            raise StreamError("host-unknown", f"this server does not serve {to}")
        self.to = domain
        return StreamOpened(domain, h.attrs.get("from"), lang, version)

    # -- output --------------------------------------------------------------------------
    def header(self, from_domain: str | None = None, to: str | None = None) -> bytes:
        """Our response stream header, with a fresh unpredictable id (RFC 6120 §4.7.3)."""
        self.stream_id = secrets.token_hex(16)
        self.header_sent = True
        frm = from_domain or self.to or next(iter(sorted(self.hosts)))
        parts = [
            "<?xml version='1.0'?><stream:stream xmlns='", self.content_ns,
            "' xmlns:stream='", ns.STREAMS, "' id='", self.stream_id, "' from='", _attr(frm),
            "'",
        ]
        if to:
            parts += [" to='", _attr(to), "'"]
        parts += [" version='1.0' xml:lang='", _attr(self.lang), "'>"]
        return "".join(parts).encode()

    @staticmethod
    def stream_element(el: Element) -> bytes:
        """Serialize a stream-namespace element (features, error) with the 'stream:' prefix."""
        inner = "".join(serialize(c, ns.STREAMS) if isinstance(c, Element) else _attr(c)
                        for c in el.children)
        return f"<stream:{el.name}>{inner}</stream:{el.name}>".encode()

    def features(self, features: list[Element]) -> bytes:
        return self.stream_element(Element("features", ns.STREAMS, None, list(features)))

    def element(self, el: Element) -> bytes:
        return serialize(el, self.content_ns).encode()

    def error(self, err: StreamError) -> bytes:
        """Stream error then closing tag; a header first if we had not sent ours (§4.9.1.2)."""
        head = b"" if self.header_sent else self.header()
        return head + self.stream_element(err.to_element()) + b"</stream:stream>"

    def footer(self) -> bytes:
        return b"</stream:stream>"
