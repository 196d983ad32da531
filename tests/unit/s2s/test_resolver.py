"""Peer discovery: override table, SRV ordering (RFC 2782, XEP-0368), A/AAAA fallback."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from blether.s2s.resolver import (
    OverrideError,
    Resolver,
    SrvRecord,
    Target,
    order_srv,
    parse_override,
)


@pytest.mark.parametrize(("text", "target"), [
    ("127.0.0.2:15269", Target("127.0.0.2", 15269)),
    ("xmpp.example.org", Target("xmpp.example.org", 5269)),
    ("tcp://h:1", Target("h", 1)),
    ("tls://h:5270", Target("h", 5270, True)),
    ("tls://h", Target("h", 5270, True)),
    ("[::1]:7000", Target("::1", 7000)),
    ("[::1]", Target("::1", 5269)),
])
def test_parse_override(text: str, target: Target) -> None:
    assert parse_override(text) == target


@pytest.mark.parametrize("text", ["", ":5269", "h:port", "h:0", "h:70000", "[::1", "[::1]x"])
def test_parse_override_refuses(text: str) -> None:
    with pytest.raises(OverrideError):
        parse_override(text)


def test_order_srv_by_priority_first() -> None:
    records = [SrvRecord(20, 0, 1, "c"), SrvRecord(10, 5, 1, "a"), SrvRecord(10, 5, 1, "b"),
               SrvRecord(30, 100, 1, "d")]
    for seed in range(20):
        order = [r.target for r in order_srv(records, random.Random(seed))]
        assert set(order[:2]) == {"a", "b"} and order[2:] == ["c", "d"]


def test_order_srv_weights_choose_proportionally() -> None:
    # RFC 2782: within a priority, the chance to come first is proportional to the weight.
    records = [SrvRecord(0, 90, 1, "heavy"), SrvRecord(0, 10, 1, "light")]
    rng = random.Random(1)
    firsts = Counter(order_srv(records, rng)[0].target for _ in range(2000))
    assert 0.85 < firsts["heavy"] / 2000 < 0.95


def _lookup(table: dict[str, list[SrvRecord] | Exception]):  # type: ignore[no-untyped-def]
    asked: list[str] = []

    async def lookup(name: str) -> list[SrvRecord]:
        asked.append(name)
        answer = table.get(name, [])
        if isinstance(answer, Exception):
            raise answer
        return answer

    return lookup, asked


async def test_override_wins_and_skips_dns() -> None:
    lookup, asked = _lookup({})
    r = Resolver({"example.org": "10.0.0.1:1234"}, lookup=lookup)
    assert await r.resolve("example.org") == [Target("10.0.0.1", 1234)]
    assert asked == []


async def test_direct_tls_targets_come_before_starttls_ones() -> None:
    lookup, asked = _lookup({
        "_xmpps-server._tcp.example.org.": [SrvRecord(5, 0, 5270, "tls.example.org")],
        "_xmpp-server._tcp.example.org.": [SrvRecord(20, 0, 5269, "b.example.org"),
                                           SrvRecord(10, 0, 5269, "a.example.org")],
    })
    targets = await Resolver({}, lookup=lookup).resolve("example.org")
    assert targets == [Target("tls.example.org", 5270, True), Target("a.example.org", 5269),
                       Target("b.example.org", 5269)]
    assert sorted(asked) == ["_xmpp-server._tcp.example.org.", "_xmpps-server._tcp.example.org."]


async def test_no_srv_falls_back_to_the_domain_on_5269() -> None:
    lookup, _ = _lookup({})
    assert await Resolver({}, lookup=lookup).resolve("example.org") == \
        [Target("example.org", 5269)]


async def test_dns_failure_also_falls_back() -> None:
    lookup, _ = _lookup({"_xmpp-server._tcp.example.org.": OSError("timeout")})
    assert await Resolver({}, lookup=lookup).resolve("example.org") == \
        [Target("example.org", 5269)]


async def test_a_dot_target_means_no_service() -> None:
    # RFC 2782: "." says the service is decidedly not available; no A/AAAA fallback then.
    lookup, _ = _lookup({"_xmpp-server._tcp.example.org.": [SrvRecord(0, 0, 0, ".")]})
    assert await Resolver({}, lookup=lookup).resolve("example.org") == []


async def test_idn_domains_are_looked_up_as_a_labels() -> None:
    lookup, asked = _lookup({})
    targets = await Resolver({}, lookup=lookup).resolve("müller.example")
    assert "_xmpp-server._tcp.xn--mller-kva.example." in asked
    assert targets == [Target("xn--mller-kva.example", 5269)]


async def test_ip_literal_domains_skip_srv() -> None:
    lookup, asked = _lookup({})
    assert await Resolver({}, lookup=lookup).resolve("192.0.2.7") == [Target("192.0.2.7", 5269)]
    assert asked == []
