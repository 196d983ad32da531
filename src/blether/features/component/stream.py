"""The sans-IO side of XEP-0114 (Jabber Component Protocol, `jabber:component:accept`).

* `ComponentStream`: the server's side of the stream. The header rules are XEP-0114 §3, not
  RFC 6120 §4.7: 'to' names the component (not a server domain) and must be configured
  (host-unknown otherwise), there is no 'version' (components send none, and the server's
  answer carries none either, as in the XEP's examples and as Prosody answers) and there are
  no stream features.
* `handshake_digest` / `handshake_ok`: XEP-0114 §3 steps 1-4, hex(SHA-1(stream id + secret)),
  compared in constant time.
* `inbound`: what the server checks on a stanza the component sends (XEP-0114 §3 last
  paragraph, RFC 6120 §4.9.3.9/§4.9.3.10), and the move from the component namespace into
  `jabber:client`, the namespace every stanza has inside Blether.

Nothing here touches a socket; tests/unit/features/test_component_handshake.py drives it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from blether import ns
from blether.errors import StanzaError, StreamError
from blether.jid import JID, JIDError, prep_domain
from blether.stream.connection import StreamOpened, XMPPStream
from blether.xml.element import Element, serialize
from blether.xml.parser import ParserLimits, StreamHeader

# Namespaces a component's stanzas may be in: its stream's own and, as Prosody accepts too,
# jabber:client (slixmpp's `use_jc_ns` components write that).
STANZA_NAMESPACES = frozenset({ns.COMPONENT, ns.CLIENT})


def _attr(value: str) -> str:
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


class ComponentStream(XMPPStream):
    """The receiving (server) side of a `jabber:component:accept` stream.

    `hosts` is the set of configured component domains: the only names a header may ask for.
    """

    def __init__(self, domains: frozenset[str], limits: ParserLimits) -> None:
        super().__init__(ns.COMPONENT, domains, limits)
        self.to = None

    def _validate_header(self, h: StreamHeader) -> StreamOpened:
        lang = h.attrs.get("xml:lang") or "en"
        self.lang = lang
        if h.ns != ns.STREAMS or h.name != "stream":
            raise StreamError("invalid-namespace", "the stream element must be "
                              "{http://etherx.jabber.org/streams}stream")
        if h.prefix != "stream":
            raise StreamError("bad-namespace-prefix", "use the 'stream' prefix for the stream")
        if h.content_ns != ns.COMPONENT:
            # XEP-0114 §3: a namespace the server does not support → invalid-namespace.
            raise StreamError("invalid-namespace",
                              f"the content namespace must be {ns.COMPONENT}")
        to = h.attrs.get("to")
        if not to:
            # Prosody's answer; XEP-0114 §3 requires 'to' (the component's name).
            raise StreamError("improper-addressing", "the stream header needs a 'to' attribute "
                              "naming the component")
        try:
            domain = prep_domain(to)
        except JIDError:
            raise StreamError("host-unknown", f"{to!r} is not a domain") from None
        if domain not in self.hosts:
            raise StreamError("host-unknown", f"{to} is not a configured component")
        self.to = domain
        # XEP-0114 streams have no version; whatever a component sends there is ignored.
        return StreamOpened(domain, h.attrs.get("from"), lang, h.attrs.get("version", ""))

    def header(self, from_domain: str | None = None, to: str | None = None) -> bytes:
        """XEP-0114 §3: our header with a fresh unpredictable id (the handshake hashes it,
        so it must never repeat: RFC 6120 §4.7.3) and 'from' = the component's name.

        Before the component's name is known (an error on a bad header) there is no 'from'
        rather than one naming some configured component to a stranger."""
        self.stream_id = secrets.token_hex(16)
        self.header_sent = True
        frm = from_domain or self.to
        parts = ["<?xml version='1.0'?><stream:stream xmlns:stream='", ns.STREAMS,
                 "' xmlns='", ns.COMPONENT, "' id='", self.stream_id, "'"]
        if frm:
            parts += [" from='", _attr(frm), "'"]
        parts.append(">")
        return "".join(parts).encode()

    def element(self, el: Element) -> bytes:
        # Stanzas inside Blether are in jabber:client: written as if the parent's default
        # namespace were jabber:client, they come out unqualified and so inherit the stream's
        # jabber:component:accept (what Prosody does by dropping the xmlns attribute).
        return serialize(el, ns.CLIENT).encode()

    def handshake_element(self) -> bytes:
        """The empty <handshake/> of a successful handshake, in the stream's namespace."""
        return serialize(Element("handshake", ns.COMPONENT), ns.COMPONENT).encode()


# -- the handshake (XEP-0114 §3) ------------------------------------------------------------

def handshake_digest(stream_id: str, secret: str) -> str:
    """Steps 1-4: concatenate stream id and secret, SHA-1, lowercase hexadecimal."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


def handshake_ok(handshake: Element, stream_id: str, secret: str) -> bool:
    """Is this <handshake/> the right credential for the stream?

    Hex digits are compared case-insensitively (the XEP says the component converts to
    lowercase; Prosody lowercases both sides) and in constant time. A handshake with child
    elements is refused, as Prosody does.
    """
    if handshake.elements():
        return False
    supplied = handshake.text.strip().lower().encode("utf-8")
    expected = handshake_digest(stream_id, secret).encode("ascii")
    return hmac.compare_digest(supplied, expected)


# -- stanzas from the component -------------------------------------------------------------

def to_internal(el: Element) -> Element:
    """A copy with every `jabber:component:accept` element moved to `jabber:client`."""
    return Element(el.name, ns.CLIENT if el.xmlns == ns.COMPONENT else el.xmlns,
                   dict(el.attrs),
                   [c if isinstance(c, str) else to_internal(c) for c in el.children])


IQ_TYPES = frozenset({"get", "set", "result", "error"})
PRESENCE_TYPES = frozenset({"available", "unavailable", "subscribe", "subscribed", "unsubscribe",
                            "unsubscribed", "probe", "error"})


def check_stanza(stanza: Element) -> None:
    """RFC 6120 §8.2.3 and the type rules: a StanzaError to bounce when the stanza is broken."""
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


class BadStanza(Exception):
    """A stanza to answer with an error instead of routing; `stanza` is already in
    jabber:client with its 'from' checked, ready for `error_reply`."""

    def __init__(self, stanza: Element, error: StanzaError) -> None:
        super().__init__(str(error))
        self.stanza = stanza
        self.error = error


def inbound(el: Element, domain: str) -> tuple[Element, JID, JID]:
    """A stanza from the component for `domain`, checked: (stanza in jabber:client, to, from).

    XEP-0114 §3: every stanza MUST carry 'from' and 'to', and the domain part of 'from'
    MUST be the component's name (exactly: not a subdomain, not the server's domain); any
    local part and resource at that domain is allowed.

    * 'from' of another domain, or not a JID → <invalid-from/> stream error (RFC 6120
      §4.9.3.9; Prosody and ejabberd close the component's stream the same way).
    * no 'from' → stamped with the component's name: Prosody's compatibility rule, harmless
      because the stanza then still comes from the component's own domain.
    * no 'to' → <improper-addressing/> stream error (RFC 6120 §4.9.3.10; ejabberd).
    * a 'to' that is not a JID, or a malformed stanza → BadStanza, whose error is bounced
      to the component (as the s2s receiving side does).
    """
    stanza = to_internal(el)
    from_text = stanza.attrs.get("from")
    if from_text is None:
        frm = JID(None, domain)
    else:
        try:
            frm = JID.parse(from_text)
        except JIDError:
            raise StreamError("invalid-from", f"'from' is not a JID: {from_text!r}") from None
        if frm.domain != domain:
            raise StreamError("invalid-from", f"a component may only send from its own domain "
                                              f"{domain}, not from {from_text}")
    stanza.attrs["from"] = str(frm)
    to_text = stanza.attrs.get("to")
    if not to_text:
        raise StreamError("improper-addressing", "stanzas from a component need a 'to'")
    try:
        to = JID.parse(to_text)
    except JIDError as exc:
        raise BadStanza(stanza, StanzaError("jid-malformed", str(exc))) from None
    try:
        check_stanza(stanza)
    except StanzaError as exc:
        raise BadStanza(stanza, exc) from None
    stanza.attrs["to"] = str(to)
    return stanza, to, frm
