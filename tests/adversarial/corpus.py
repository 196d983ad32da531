"""The adversarial corpus: what a case is, and how its expected reaction is checked.

A case is exact bytes sent at one stage of a c2s stream, and the one reaction RFC 6120 and
SECURITY.md call for: a stream error (§4.9.3), a stanza error (§8.3.3), a SASL failure (§6.5),
silence (the stream stays usable), or delivery of exactly the stanza sent (no smuggling).
The case tables live in cases_*.py; test_corpus.py runs them against a real server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from blether.xml.parser import ElementParsed, ParserLimits, StreamHeader, XMLStreamParser
from integration.rawclient import SASL_NS, RawClient, condition


class Stage(Enum):
    HEADER = "header"        # TCP connected, nothing sent: the bytes include the header
    PRE_TLS = "pre-tls"      # header exchanged, features read, before STARTTLS
    PRE_AUTH = "pre-auth"    # TLS done, features read, before SASL
    POST_BIND = "post-bind"  # authenticated and bound


@dataclass(frozen=True)
class Ctx:
    """Values a case's bytes may refer to as {me}, {victim}, {victim_bare}, {user}."""

    me: str
    victim: str
    victim_bare: str
    user: str

    def fill(self, data: bytes) -> bytes:
        for key in ("victim_bare", "victim", "me", "user"):
            data = data.replace(b"{" + key.encode() + b"}", getattr(self, key).encode())
        return data


class Expect:
    async def check(self, attacker: RawClient, victim: RawClient | None, sent: bytes,
                    ctx: Ctx) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class StreamErr(Expect):
    condition: str

    async def check(self, attacker: RawClient, victim: RawClient | None, sent: bytes,
                    ctx: Ctx) -> None:
        assert await attacker.stream_error() == self.condition


@dataclass(frozen=True)
class StanzaErr(Expect):
    condition: str
    id: str | None  # None: the offending stanza had no id, nor has the error

    async def check(self, attacker: RawClient, victim: RawClient | None, sent: bytes,
                    ctx: Ctx) -> None:
        reply = await attacker.stanza(lambda e: e.attrs.get("id") == self.id)
        assert reply.attrs.get("type") == "error", reply
        assert condition(reply) == self.condition, reply
        await attacker.silence(0.2)  # exactly one answer


@dataclass(frozen=True)
class SaslFail(Expect):
    condition: str
    after_challenge: bool = False  # the bytes start a valid exchange first

    async def check(self, attacker: RawClient, victim: RawClient | None, sent: bytes,
                    ctx: Ctx) -> None:
        if self.after_challenge:
            challenge = await attacker.element()
            assert (challenge.name, challenge.xmlns) == ("challenge", SASL_NS), challenge
        failure = await attacker.element()
        assert (failure.name, failure.xmlns) == ("failure", SASL_NS), failure
        assert condition(failure, SASL_NS) == self.condition, failure
        # A SASL failure is not the end of the stream: a correct retry is still possible.
        await attacker.silence(0.2)


@dataclass(frozen=True)
class Silent(Expect):
    """No answer, and the stream stays open (and usable, after bind)."""

    async def check(self, attacker: RawClient, victim: RawClient | None, sent: bytes,
                    ctx: Ctx) -> None:
        await attacker.silence(0.5)
        if attacker.jid is not None:
            await attacker.ping()


def _client_parser() -> XMLStreamParser:
    p = XMLStreamParser(ParserLimits(1 << 22, 200, 200, 100_000, 4096))
    [h] = p.feed(b"<stream:stream xmlns='jabber:client' "
                 b"xmlns:stream='http://etherx.jabber.org/streams'>")
    assert isinstance(h, StreamHeader)
    return p


@dataclass(frozen=True)
class Delivered(Expect):
    """The victim re-parses exactly one stanza: what the attacker sent, 'from' stamped with
    the attacker's full JID and nothing else changed (no smuggled second stanza)."""

    also: dict[str, str] = field(default_factory=dict)  # attributes the server may add

    async def check(self, attacker: RawClient, victim: RawClient | None, sent: bytes,
                    ctx: Ctx) -> None:
        assert victim is not None
        before = len(victim.received)
        got = await victim.element()
        [original] = [e.element for e in _client_parser().feed(sent)
                      if isinstance(e, ElementParsed)]
        # RFC 6120 §8.1.5: a stanza without xml:lang gets the stream's default ('en' here).
        lang = {} if "xml:lang" in original.attrs else {"xml:lang": "en"}
        expected = original.with_attrs({"from": ctx.me, **lang, **self.also})
        assert got == expected, f"\nsent:     {original!r}\nreceived: {got!r}"
        await victim.silence(0.3)
        events = _client_parser().feed(bytes(victim.received[before:]))
        assert len(events) == 1 and isinstance(events[0], ElementParsed), events
        assert events[0].element == expected
        await attacker.silence(0.1)


@dataclass(frozen=True)
class Case:
    name: str
    stage: Stage
    send: bytes | Callable[[Ctx], bytes]  # exact bytes, or built from the context
    expect: Expect
    kind: str  # the SECURITY.md attack class

    def __str__(self) -> str:
        return self.name

    def data(self, ctx: Ctx) -> bytes:
        return ctx.fill(self.send) if isinstance(self.send, bytes) else self.send(ctx)


def elements(n: int, name: bytes = b"a") -> bytes:
    """n empty sibling elements."""
    return (b"<" + name + b"/>") * n


def nested(depth: int) -> bytes:
    return b"<x>" * depth + b"</x>" * depth


def message(inner: bytes, attrs: bytes = b"") -> bytes:
    return b"<message to='{victim}' id='m'" + attrs + b">" + inner + b"</message>"

