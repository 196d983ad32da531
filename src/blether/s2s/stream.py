"""Framing of `jabber:server` streams (RFC 6120 §4) and per-stanza address rules (§8.1.1.2,
§8.1.2.2, §4.9.3.6/.9/.10), sans-IO.

Inside Blether every stanza is in `jabber:client` (features look children up with
`stanza.xmlns` and the c2s transport writes stanzas unqualified). So stanzas arriving on an
s2s stream are moved from `jabber:server` to `jabber:client` once, at the door, and on the way
out a stanza is written as if its parent's default namespace were `jabber:client`: its
`jabber:client` elements come out unqualified and inherit the stream's `jabber:server`.
Dialback elements are written with the `db:` prefix declared on our stream headers.
"""

from __future__ import annotations

import secrets

from blether import ns
from blether.errors import StanzaError, StreamError
from blether.jid import JID, JIDError, prep_domain
from blether.s2s.dialback import DIALBACK, PREFIXES
from blether.stream.connection import StreamOpened, XMPPStream
from blether.xml.element import Element, serialize
from blether.xml.parser import ParserLimits, StreamHeader

IQ_TYPES = frozenset({"get", "set", "result", "error"})
PRESENCE_TYPES = frozenset({"available", "unavailable", "subscribe", "subscribed", "unsubscribe",
                            "unsubscribed", "probe", "error"})


def _attr(value: str) -> str:
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


def _header(stream_id: str | None, frm: str, to: str | None, lang: str) -> bytes:
    parts = ["<?xml version='1.0'?><stream:stream xmlns='", ns.SERVER, "' xmlns:stream='",
             ns.STREAMS, "' xmlns:db='", DIALBACK, "'"]
    if stream_id is not None:
        parts += [" id='", stream_id, "'"]
    parts += [" from='", _attr(frm), "'"]
    if to:
        parts += [" to='", _attr(to), "'"]
    parts += [" version='1.0' xml:lang='", _attr(lang), "'>"]
    return "".join(parts).encode()


class ServerStream(XMPPStream):
    """The receiving entity's side of a `jabber:server` stream."""

    def __init__(self, hosts: frozenset[str], limits: ParserLimits) -> None:
        super().__init__(ns.SERVER, hosts, limits)
        self.peer_from: str | None = None     # the initiating server's claimed domain

    def _validate_header(self, h: StreamHeader) -> StreamOpened:
        opened = super()._validate_header(h)
        frm = h.attrs.get("from")
        try:
            self.peer_from = prep_domain(frm) if frm else None
        except JIDError:
            self.peer_from = None
        return opened

    def header(self, from_domain: str | None = None, to: str | None = None) -> bytes:
        """Our response header: fresh id (RFC 6120 §4.7.3), xmlns:db (XEP-0220 §2.4.1)."""
        self.stream_id = secrets.token_hex(16)
        self.header_sent = True
        frm = from_domain or self.to or next(iter(sorted(self.hosts)))
        return _header(self.stream_id, frm, to or self.peer_from, self.lang)

    def element(self, el: Element) -> bytes:
        return serialize(el, ns.CLIENT, prefixes=PREFIXES).encode()


class InitiatingStream(ServerStream):
    """The initiating server's side: we send the first header and validate the answer."""

    def __init__(self, local: str, remote: str, limits: ParserLimits) -> None:
        super().__init__(frozenset({local}), limits)
        self.local = local
        self.remote = remote
        self.peer_id = ""
        self.peer_namespaces: dict[str, str] = {}

    def initial_header(self) -> bytes:
        self.header_sent = True
        return _header(None, self.local, self.remote, "en")

    def _validate_header(self, h: StreamHeader) -> StreamOpened:
        """RFC 6120 §4.7, seen from the initiating entity: namespaces, version, an id."""
        if h.ns != ns.STREAMS or h.name != "stream":
            raise StreamError("invalid-namespace", "not an XMPP stream")
        if h.prefix != "stream":
            raise StreamError("bad-namespace-prefix", "use the 'stream' prefix")
        if h.content_ns != ns.SERVER:
            raise StreamError("invalid-namespace", "the content namespace must be jabber:server")
        version = h.attrs.get("version", "0.9")
        if version.split(".", 1)[0] != "1":
            raise StreamError("unsupported-version", "only XMPP 1.0 streams are supported")
        stream_id = h.attrs.get("id")
        if not stream_id:
            raise StreamError("invalid-xml", "the response stream header needs an 'id'")
        self.peer_id = stream_id
        self.peer_namespaces = dict(h.namespaces)
        self.lang = h.attrs.get("xml:lang") or "en"
        return StreamOpened(h.attrs.get("to"), h.attrs.get("from"), self.lang, version)

    @property
    def peer_supports_dialback(self) -> bool:
        return DIALBACK in self.peer_namespaces.values()


# -- stanzas --------------------------------------------------------------------------------

def to_internal(el: Element) -> Element:
    """A copy with every `jabber:server` element moved to `jabber:client`.

    xml:lang is left as it came: like the c2s path (and Prosody), the stream's default
    language is not copied onto stanzas (RFC 6120 §8.1.5 makes that a SHOULD)."""
    return Element(el.name, ns.CLIENT if el.xmlns == ns.SERVER else el.xmlns, dict(el.attrs),
                   [c if isinstance(c, str) else to_internal(c) for c in el.children])


def check_addresses(stanza: Element, hosts: frozenset[str],
                    authenticated: set[tuple[str, str]]) -> tuple[JID, JID]:
    """RFC 6120 §8.1.1.2/§8.1.2.2 for a stanza received on an s2s stream: (to, from).

    Both addresses are required (improper-addressing); 'to' must be a hosted domain
    (host-unknown); the pair (from domain, to domain) must have been authenticated on this
    stream by SASL EXTERNAL or dialback (invalid-from). A 'to' that is not a JID is answered
    with a jid-malformed error (raised as StanzaError), like Prosody does.
    """
    to_text = stanza.attrs.get("to")
    from_text = stanza.attrs.get("from")
    if not to_text or not from_text:
        raise StreamError("improper-addressing", "stanzas on s2s streams need 'to' and 'from'")
    try:
        frm = JID.parse(from_text)
    except JIDError:
        raise StreamError("invalid-from", f"'from' is not a JID: {from_text!r}") from None
    try:
        to = JID.parse(to_text)
    except JIDError as exc:
        raise StanzaError("jid-malformed", str(exc)) from None
    if to.domain not in hosts:
        raise StreamError("host-unknown", f"this server does not serve {to.domain}")
    if (frm.domain, to.domain) not in authenticated:
        raise StreamError("invalid-from",
                          f"{frm.domain} is not authenticated for {to.domain} on this stream")
    return to, frm


def check_stanza(stanza: Element) -> None:
    """RFC 6120 §8.2.3 and type checks; a StanzaError to bounce when the stanza is broken."""
    stype = stanza.attrs.get("type")
    if stanza.name == "iq":
        if "id" not in stanza.attrs:
            raise StanzaError("bad-request", "IQ stanzas need an 'id'")
        if stype not in IQ_TYPES:
            raise StanzaError("bad-request", "unknown IQ type")
        if stype in ("get", "set") and len(stanza.elements()) != 1:
            raise StanzaError("bad-request", "IQ get/set must contain exactly one child")
    elif stanza.name == "presence" and (stype or "available") not in PRESENCE_TYPES:
        raise StanzaError("bad-request", "unknown presence type")
