"""Corpus: the XML layer (SECURITY.md points 1-5; RFC 6120 §11): restricted XML, encodings,
oversized stanzas, tokens, attributes, depth and element counts before and after
authentication, and namespace tricks aimed at smuggling a second stanza to a recipient."""

from __future__ import annotations

from adversarial.corpus import (
    Case,
    Delivered,
    Silent,
    Stage,
    StreamErr,
    elements,
    message,
    nested,
)
from integration.rawclient import header

H = Stage.HEADER
T = Stage.PRE_TLS
A = Stage.PRE_AUTH
B = Stage.POST_BIND
HEAD = header("localhost", decl=False)
LAUGHS = (b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
          b"<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
          b"<!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>]>")

RESTRICTED = [
    Case("comment-before-header", H, b"<!-- hi -->" + HEAD, StreamErr("restricted-xml"),
         "restricted-xml"),
    Case("billion-laughs-doctype", H, LAUGHS + HEAD, StreamErr("restricted-xml"),
         "restricted-xml"),
    Case("external-entity-doctype", H, b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY x "
         b"SYSTEM 'file:///etc/passwd'>]>" + HEAD, StreamErr("restricted-xml"),
         "restricted-xml"),
    Case("xml-1.1-declaration", H, b"<?xml version='1.1'?>" + HEAD,
         StreamErr("restricted-xml"), "restricted-xml"),
    Case("latin1-declaration", H, b"<?xml version='1.0' encoding='ISO-8859-1'?>" + HEAD,
         StreamErr("unsupported-encoding"), "restricted-xml"),
    Case("utf16-bom", H, b"\xff\xfe<\x00?\x00x\x00m\x00l\x00", StreamErr("unsupported-encoding"),
         "restricted-xml"),
    Case("processing-instruction", T, b"<?evil payload?>", StreamErr("restricted-xml"),
         "restricted-xml"),
    Case("undeclared-entity", A, b"<iq type='get' id='e'><q xmlns='urn:x'>&lol;</q></iq>",
         StreamErr("restricted-xml"), "restricted-xml"),
    Case("comment-inside-stanza", B, message(b"<body>a<!-- b -->c</body>"),
         StreamErr("restricted-xml"), "restricted-xml"),
    Case("doctype-mid-stream", B, b"<!DOCTYPE x>", StreamErr("not-well-formed"),
         "restricted-xml"),
    Case("invalid-utf8-in-body", A, b"<iq type='get' id='u'><q xmlns='urn:x'>\xc3\x28</q></iq>",
         StreamErr("unsupported-encoding"), "restricted-xml"),
    Case("nul-character-reference", B, message(b"<body>&#0;</body>"),
         StreamErr("not-well-formed"), "restricted-xml"),
    Case("text-between-stanzas", B, b"not xml", StreamErr("bad-format"), "restricted-xml"),
]

LIMITS = [
    Case("stanza-9k-before-tls", T, b"<iq type='get' id='big'><q xmlns='urn:x'>" +
         b"x" * 9000 + b"</q></iq>", StreamErr("policy-violation"), "limits"),
    Case("stanza-9k-after-tls", A, b"<iq type='get' id='big'><q xmlns='urn:x'>" +
         b"x" * 9000 + b"</q></iq>", StreamErr("policy-violation"), "limits"),
    Case("huge-attribute-value-pre-auth", A, b"<iq type='get' id='" + b"x" * 9000 + b"'/>",
         StreamErr("policy-violation"), "limits"),
    Case("huge-element-name-pre-auth", A, b"<" + b"n" * 9000 + b"/>",
         StreamErr("policy-violation"), "limits"),
    Case("unterminated-token-pre-auth", A, b"<iq type='get' id='" + b"x" * 20000,
         StreamErr("policy-violation"), "limits"),
    Case("many-attributes-pre-auth", A, b"<iq " + b" ".join(
        b"a%d='1'" % i for i in range(70)) + b"/>", StreamErr("policy-violation"), "limits"),
    Case("many-namespace-declarations", A, b"<iq " + b" ".join(
        b"xmlns:p%d='urn:%d'" % (i, i) for i in range(70)) + b"/>",
         StreamErr("policy-violation"), "limits"),
    Case("deep-nesting-pre-auth", A, b"<iq type='get' id='d'>" + nested(20) + b"</iq>",
         StreamErr("policy-violation"), "limits"),
    Case("many-elements-pre-auth", A, b"<iq type='get' id='n'><q xmlns='urn:x'>" +
         elements(40) + b"</q></iq>", StreamErr("policy-violation"), "limits"),
    Case("huge-header", H, header("localhost", extra="id='" + "i" * 5000 + "'"),
         StreamErr("policy-violation"), "limits"),
    Case("whitespace-before-header", H, b" " * 5000 + HEAD, StreamErr("policy-violation"),
         "limits"),
    Case("stanza-300k-post-bind", B, message(b"<body>" + b"x" * 300_000 + b"</body>"),
         StreamErr("policy-violation"), "limits"),
    Case("deep-nesting-post-bind", B, message(nested(70)), StreamErr("policy-violation"),
         "limits"),
    Case("10001-elements-post-bind", B, message(elements(10_001)),
         StreamErr("policy-violation"), "limits"),
    Case("many-attributes-post-bind", B, b"<message " + b" ".join(
        b"a%d='1'" % i for i in range(70)) + b"/>", StreamErr("policy-violation"), "limits"),
    # Whitespace keepalives are not stanzas: a megabyte of them is not over any limit.
    Case("whitespace-flood-post-bind", B, b" \n" * 500_000, Silent(), "limits"),
]

NAMESPACES = [
    Case("escaped-markup-in-body", B, message(
        b"<body>&lt;/body&gt;&lt;/message&gt;&lt;iq type='set' to='{victim}'&gt;"
        b"&lt;query xmlns='jabber:iq:roster'/&gt;&lt;/iq&gt;</body>"), Delivered(),
         "smuggling"),
    Case("cdata-with-markup", B, message(
        b"<body><![CDATA[</body></message><message to='{victim}'><body>2nd]]></body>"),
         Delivered(), "smuggling"),
    Case("markup-in-attribute", B, message(b"<body>x</body>",
                                           b" xml:lang='en&apos;/&gt;&lt;iq a=&apos;'"),
         Delivered(), "smuggling"),
    Case("prefixed-stanza", B, b"<c:message xmlns:c='jabber:client' to='{victim}' id='m'>"
         b"<c:body>prefixed</c:body></c:message>", Delivered(), "smuggling"),
    Case("stream-prefix-redeclared", B, message(
        b"<stream:error xmlns:stream='urn:example:fake'><conflict "
        b"xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"), Delivered(),
         "smuggling"),
    Case("default-namespace-switch", B, message(
        b"<body xmlns='urn:example:other'>not a body</body><body>real</body>"), Delivered(),
         "smuggling"),
    Case("namespaced-attributes", B, message(
        b"<x xmlns='urn:x' xmlns:a='urn:a' a:to='evil@localhost'/>"), Delivered(),
         "smuggling"),
    Case("message-in-server-namespace", B, b"<message xmlns='jabber:server' to='{victim}'/>",
         StreamErr("unsupported-stanza-type"), "namespace"),
    Case("nested-stream-header", B, header("localhost", decl=False)[:-1] + b"/>",
         StreamErr("unsupported-stanza-type"), "namespace"),
    Case("unbound-prefix", B, b"<evil:message to='{victim}'/>",
         StreamErr("bad-namespace-prefix"), "namespace"),
    Case("xml-prefix-rebound", B, b"<message xmlns:xml='urn:x' to='{victim}'/>",
         StreamErr("bad-namespace-prefix"), "namespace"),
]

CASES = RESTRICTED + LIMITS + NAMESPACES
