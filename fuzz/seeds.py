"""Regenerate the hand-written seed corpus in fuzz/corpus/<target>/ (run from the repo root).

Seeds give the fuzzer the shapes real clients send (RFC 6120 §9 examples: stream header,
STARTTLS, SCRAM and PLAIN exchanges, binding, stanzas) and the attack classes of SECURITY.md
(entities, DOCTYPE, comments, deep nesting, many attributes, non-UTF-8), so mutation starts
close to the interesting code. Crashers copied in from fuzz/crashes/ sit next to them.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import scramp

CORPUS = Path(__file__).parent / "corpus"
HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
SASL = b"urn:ietf:params:xml:ns:xmpp-sasl"


def sasl(name: str, data: bytes | None, mech: str | None = None) -> bytes:
    attrs = f" mechanism='{mech}'" if mech else ""
    payload = b"" if data is None else (base64.b64encode(data) if data else b"=")
    return b"<" + name.encode() + b" xmlns='" + SASL + b"'" + attrs.encode() + b">" + \
        payload + b"</" + name.encode() + b">"


def stream_seeds() -> list[bytes]:
    stanzas = [
        b"<message to='romeo@example.net' type='chat' xml:lang='en'><body>Art thou not "
        b"Romeo, and a Montague?</body><thread>e0ffe42b</thread></message>",
        b"<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        b"<presence><show>away</show><status>&lt;gone&gt; &amp; back</status>"
        b"<priority>-1</priority></presence>",
        b"<message><body><![CDATA[<not markup>]]></body><x xmlns='a' xmlns:p='b' p:q='1'/>"
        b"</message>",
        b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>"
        b"\xc3\xa9t\xc3\xa9</resource></bind></iq>",
        b" \n\t<presence/>  <message>&#x1F600;&#13;&#10;</message>",
    ]
    seeds = [HEADER + s + b"</stream:stream>" for s in stanzas]
    seeds += [
        HEADER + b"<!-- comment --><message/>",
        b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'>]><stream:stream/>",
        HEADER + b"<message><body>&a;</body></message>",
        HEADER + b"<?pi data?>",
        b"<?xml version='1.1'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
        b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream>\xe9",
        HEADER + b"<message>" + b"<a>" * 70 + b"</a>" * 70 + b"</message>",
        HEADER + b"<message " + b" ".join(f"a{i}='{i}'".encode() for i in range(70)) + b"/>",
        HEADER + b"<message><body>" + b"x" * 9000 + b"</body></message>",
        HEADER + b"text between stanzas",
        HEADER + b"<message><body>\xc3</body></message>",
        HEADER + b"<x:message xmlns:x='jabber:client'/><y:z/>",
        b"<stream xmlns='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
        b" to='example.org' version='2.0'>",
    ]
    # byte 0: limits (0 pre-auth, 1 post-auth, 2 tiny); byte 1: read-size seed
    return [bytes([i % 3, (i * 37) % 256]) + s for i, s in enumerate(seeds)]


def negotiation_seeds() -> list[bytes]:
    client = scramp.ScramClient(["SCRAM-SHA-256"], "juliet", "r0m30myr0m30")
    first = client.get_client_first().encode()
    starttls = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    bind = (b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            b"<resource>balcony</resource></bind></iq>")
    plain_ok = sasl("auth", b"\0juliet\0r0m30myr0m30", "PLAIN")
    seeds = [
        # flags: bit 0 TLS, bit 1 channel binding, bit 2 raw SASL
        b"\x00\x00" + starttls + HEADER + plain_ok + HEADER + bind,
        b"\x01\x05" + plain_ok + HEADER + bind + b"<presence/>",
        b"\x01\x00" + sasl("auth", first, "SCRAM-SHA-256") +
        sasl("response", b"c=biws,r=x,p=dGhpcyBpcyBub3QgYSBwcm9vZg=="),
        b"\x03\x00" + sasl("auth", b"p=tls-server-end-point,,n=juliet,r=abc",
                           "SCRAM-SHA-256-PLUS"),
        b"\x01\x00" + sasl("auth", None, "SCRAM-SHA-1") + sasl("response", first),
        b"\x01\x00" + sasl("auth", b"juliet@localhost\0juliet\0wrong", "PLAIN") +
        sasl("auth", b"romeo@localhost\0juliet\0r0m30myr0m30", "PLAIN") + sasl("abort", None),
        b"\x01\x00" + sasl("auth", b"n,a=romeo@localhost,n=juliet,r=abc", "SCRAM-SHA-1"),
        b"\x01\x00" + sasl("auth", b"n,,n=jul=2Ciet=3D,r=abc", "SCRAM-SHA-256") +
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!notbase64"
        b"</auth>",
        b"\x05\x00\x00" + b"n,,n=juliet,r=fyko+d2lbbFgONRv9qkxdawL\xffc=biws,r=fyko,p=AAAA",
        b"\x05\x00\x04" + b"\0juliet\0r0m30myr0m30",
        b"\x07\x00\x02" + b"p=tls-exporter,,n=juliet,r=abc\xffc=cD10bHMt,r=abc,p=AA==",
        b"\x05\x00\x01" + b"y,,n=\xe2\x84\xab,r=1",
    ]
    return seeds


def jid_seeds() -> list[bytes]:
    return [s.encode() for s in [
        "juliet@example.com/balcony", "Juliet@EXAMPLE.com/Balcony", "example.com",
        "\u1d2e\u1d35\u1d33\u1d2e\u1d35\u1d3f\u1d30@example.com", "user@[::1]/r",
        "user@127.0.0.1", "xn--mller-kva.example", "a@b/c@d/e", "\uff20@x.y",
        "user@example.com./res", "@example.com", "user@", "u@1.2.3", "u@ex_ample.com",
        "\u0130stanbul@\u00c9xample.com/\u2163", "x" * 1024 + "@example.com",
    ]]


def main() -> None:
    for name, seeds in (("stream", stream_seeds()), ("negotiation", negotiation_seeds()),
                        ("jid", jid_seeds())):
        d = CORPUS / name
        d.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            (d / f"seed-{hashlib.sha1(seed).hexdigest()[:16]}").write_bytes(seed)


if __name__ == "__main__":
    main()
