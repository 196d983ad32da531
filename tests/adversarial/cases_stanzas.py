"""Corpus: stanzas from a bound client (SECURITY.md points 6 and 8; RFC 6120 §8, RFC 7622):
forged addresses, malformed JIDs in 'to', and IQ semantics abuse."""

from __future__ import annotations

from adversarial.corpus import Case, Delivered, Silent, Stage, StanzaErr, StreamErr, message

B = Stage.POST_BIND


def to(jid: bytes, mid: bytes = b"j") -> bytes:
    return b"<message to='" + jid + b"' id='" + mid + b"'><body>x</body></message>"


FORGERY = [
    Case("from-forged-as-victim", B, message(b"<body>I am you</body>", b" from='{victim}'"),
         Delivered(), "forgery"),
    Case("from-forged-as-server", B, message(b"<body>admin</body>", b" from='localhost'"),
         Delivered(), "forgery"),
    Case("from-forged-as-other-domain", B, message(b"<body>x</body>",
                                                   b" from='admin@example.net/x'"),
         Delivered(), "forgery"),
    Case("from-malformed", B, message(b"<body>x</body>", b" from='@@@'"), Delivered(),
         "forgery"),
    Case("iq-with-forged-from", B, b"<iq type='get' id='f' to='{victim}' from='localhost'>"
         b"<ping xmlns='urn:xmpp:ping'/></iq>", Delivered(), "forgery"),
]

JIDS = [
    Case("localpart-1024-octets", B, to(b"l" * 1024 + b"@localhost"),
         StanzaErr("jid-malformed", "j"), "jid"),
    Case("domainpart-1024-octets", B, to(b"a@" + b"d" * 1024),
         StanzaErr("jid-malformed", "j"), "jid"),
    Case("domain-label-64-octets", B, to(b"a@" + b"d" * 64 + b".example"),
         StanzaErr("jid-malformed", "j"), "jid"),
    Case("resourcepart-1024-octets", B, to(b"a@localhost/" + b"r" * 1024),
         StanzaErr("jid-malformed", "j"), "jid"),
    Case("empty-localpart", B, to(b"@localhost"), StanzaErr("jid-malformed", "j"), "jid"),
    Case("empty-domainpart", B, to(b"a@"), StanzaErr("jid-malformed", "j"), "jid"),
    Case("empty-resourcepart", B, to(b"a@localhost/"), StanzaErr("jid-malformed", "j"), "jid"),
    Case("two-at-signs", B, to(b"a@b@localhost"), StanzaErr("jid-malformed", "j"), "jid"),
    Case("forbidden-char-in-localpart", B, to(b"a&lt;b@localhost"),
         StanzaErr("jid-malformed", "j"), "jid"),
    Case("space-in-localpart", B, to(b"a b@localhost"), StanzaErr("jid-malformed", "j"), "jid"),
    Case("control-char-in-resource", B, to(b"a@localhost/x&#x85;"),
         StanzaErr("jid-malformed", "j"), "jid"),
    Case("space-in-domain", B, to(b"a@local host"), StanzaErr("jid-malformed", "j"), "jid"),
    Case("broken-ipv6-literal", B, to(b"a@[::1"), StanzaErr("jid-malformed", "j"), "jid"),
    Case("empty-to", B, to(b""), StanzaErr("jid-malformed", "j"), "jid"),
]

IQ = [
    Case("iq-without-id", B, b"<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
         StanzaErr("bad-request", None), "iq"),
    Case("iq-two-children", B, b"<iq type='get' id='two' to='localhost'>"
         b"<ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>",
         StanzaErr("bad-request", "two"), "iq"),
    Case("iq-no-child", B, b"<iq type='set' id='none' to='localhost'/>",
         StanzaErr("bad-request", "none"), "iq"),
    Case("iq-unknown-type", B, b"<iq type='poke' id='poke' to='localhost'>"
         b"<ping xmlns='urn:xmpp:ping'/></iq>", StanzaErr("bad-request", "poke"), "iq"),
    Case("iq-unknown-payload", B, b"<iq type='get' id='unk' to='localhost'>"
         b"<q xmlns='urn:example:nothing'/></iq>", StanzaErr("service-unavailable", "unk"),
         "iq"),
    Case("iq-unknown-payload-to-account", B, b"<iq type='set' id='acc' to='{victim_bare}'>"
         b"<q xmlns='urn:example:nothing'/></iq>", StanzaErr("service-unavailable", "acc"),
         "iq"),
    Case("iq-to-unknown-resource", B, b"<iq type='get' id='res' to='{victim_bare}/nope'>"
         b"<ping xmlns='urn:xmpp:ping'/></iq>", StanzaErr("service-unavailable", "res"), "iq"),
    Case("unsolicited-iq-result", B, b"<iq type='result' id='r' to='localhost'/>", Silent(),
         "iq"),
    Case("unsolicited-iq-error", B, b"<iq type='error' id='e' to='localhost'><error "
         b"type='cancel'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
         b"</iq>", Silent(), "iq"),
    Case("error-message-to-nobody", B, b"<message type='error' to='nobody@localhost'/>",
         Silent(), "iq"),
    Case("error-message-to-remote", B, b"<message type='error' to='a@example.net'/>",
         Silent(), "iq"),
    Case("rebind-after-bind", B, b"<iq type='set' id='rebind'><bind "
         b"xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>again</resource></bind></iq>",
         StanzaErr("service-unavailable", "rebind"), "iq"),
    Case("iq-in-wrong-namespace", B, b"<iq xmlns='urn:example:x' type='get' id='w'/>",
         StreamErr("unsupported-stanza-type"), "iq"),
]

CASES = FORGERY + JIDS + IQ
