"""Table-driven tests for blether.jid (RFC 7622).

Property tests (idempotence, fast path == slow path) live in test_jid_properties.py.
"""

from __future__ import annotations

import copy
import pickle

import pytest

from blether.jid import (
    JID,
    JIDError,
    domain_to_ascii,
    prep_domain,
    prep_local,
    prep_resource,
)

# --------------------------------------------------------------------------- RFC 7622 §3.5

# (input, localpart, domainpart, resourcepart) -- RFC 7622 §3.5.1, examples 1-15.
RFC_VALID = [
    ("juliet@example.com", "juliet", "example.com", None),
    ("juliet@example.com/foo", "juliet", "example.com", "foo"),
    ("juliet@example.com/foo bar", "juliet", "example.com", "foo bar"),
    ("juliet@example.com/foo@bar", "juliet", "example.com", "foo@bar"),
    ("foo\\20bar@example.com", "foo\\20bar", "example.com", None),
    ("fussball@example.com", "fussball", "example.com", None),
    ("fu\u00dfball@example.com", "fu\u00dfball", "example.com", None),  # ß is kept
    ("\u03c0@example.com", "\u03c0", "example.com", None),  # π
    ("\u03a3@example.com/foo", "\u03c3", "example.com", "foo"),  # capital sigma is lowercased
    ("\u03c3@example.com/foo", "\u03c3", "example.com", "foo"),  # small sigma
    ("\u03c2@example.com/foo", "\u03c2", "example.com", "foo"),  # final sigma is kept
    ("king@example.com/\u265a", "king", "example.com", "\u265a"),  # ♚ fine in a resource
    ("example.com", None, "example.com", None),
    ("example.com/foobar", None, "example.com", "foobar"),
    ("a.example.com/b@example.net", None, "a.example.com", "b@example.net"),
]

# (input, part named in the error) -- RFC 7622 §3.5.2, examples 16-23 minus 18.
RFC_INVALID = [
    ('"juliet"@example.com', "localpart"),  # 16: quotation marks
    ("foo bar@example.com", "localpart"),  # 17: space
    ("@example.com/", "resourcepart"),  # 19: empty localpart and resourcepart
    ("henry\u2163@example.com", "localpart"),  # 20: ROMAN NUMERAL FOUR (compatibility)
    ("\u265a@example.com", "localpart"),  # 21: BLACK CHESS KING in a localpart
    ("juliet@", "domainpart"),  # 22: empty domainpart
    ("/foobar", "domainpart"),  # 23: empty domainpart
]


@pytest.mark.parametrize(("text", "local", "domain", "resource"), RFC_VALID)
def test_rfc7622_valid_examples(
    text: str, local: str | None, domain: str, resource: str | None
) -> None:
    jid = JID.parse(text)
    assert (jid.local, jid.domain, jid.resource) == (local, domain, resource)


@pytest.mark.parametrize(("text", "part"), RFC_INVALID)
def test_rfc7622_invalid_examples(text: str, part: str) -> None:
    with pytest.raises(JIDError, match=part):
        JID.parse(text)


def test_rfc7622_example_18_leading_space_follows_opaquestring() -> None:
    # §3.5.2 lists "juliet@example.com/ foo" as invalid, but the OpaqueString profile
    # (RFC 8265 §4.2) that §3.4 mandates has no rule against a leading space.  We follow
    # the profile; the space is preserved, and the result round-trips.
    jid = JID.parse("juliet@example.com/ foo")
    assert jid.resource == " foo"
    assert JID.parse(str(jid)) == jid


# ---------------------------------------------------------------------- more valid input

MORE_VALID = [
    # case folding: localpart and domainpart yes, resourcepart no
    ("Juliet@Example.COM/Balcony", "juliet", "example.com", "Balcony"),
    ("ALICE@LOCALHOST/Phone", "alice", "localhost", "Phone"),
    ("\u00c9MILE@example.com", "\u00e9mile", "example.com", None),
    # width mapping (fullwidth -> ASCII) in the localpart, not in the resourcepart
    ("\uff2a\uff55\uff4c\uff49\uff45\uff54@example.com", "juliet", "example.com", None),
    ("\uff55\uff53\uff45\uff52\uff11@example.com", "user1", "example.com", None),
    ("u@example.com/\uff32\uff45\uff53", "u", "example.com", "\uff32\uff45\uff53"),
    # OpaqueString maps non-ASCII spaces to U+0020 and applies NFC
    ("u@example.com/a\u00a0b", "u", "example.com", "a b"),
    ("u@example.com/e\u0301", "u", "example.com", "\u00e9"),
    ("e\u0301@example.com", "\u00e9", "example.com", None),  # NFC in the localpart
    # the resourcepart is everything after the first "/"
    ("u@example.com/a/b@c", "u", "example.com", "a/b@c"),
    ("example.com/@", None, "example.com", "@"),
    # ASCII punctuation allowed by IdentifierClass and not excluded by RFC 7622 §3.3.1
    ("a!#$%()*+,-.;=?[\\]^_`{|}~z@example.com", "a!#$%()*+,-.;=?[\\]^_`{|}~z", "example.com", None),
    # domains
    ("localhost", None, "localhost", None),
    ("user@localhost", "user", "localhost", None),
    ("juliet@example.com.", "juliet", "example.com", None),  # one trailing dot stripped
    ("example.com./res", None, "example.com", "res"),
    ("EXAMPLE.COM.", None, "example.com", None),
    ("x@example\u3002com", "x", "example.com", None),  # IDEOGRAPHIC FULL STOP is a dot
    ("x@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "x", "example.com", None),
    ("x@a-b.example", "x", "a-b.example", None),
    ("x@123.example", "x", "123.example", None),  # numeric label, but not the last one
    ("x@m\u00fcller.example", "x", "m\u00fcller.example", None),
    ("x@xn--mller-kva.example", "x", "m\u00fcller.example", None),
    ("x@XN--MLLER-KVA.EXAMPLE", "x", "m\u00fcller.example", None),
    ("x@M\u00dcLLER.example", "x", "m\u00fcller.example", None),
    ("x@\u4f8b\u3048.\u30c6\u30b9\u30c8", "x", "\u4f8b\u3048.\u30c6\u30b9\u30c8", None),
    # IP literals
    ("juliet@192.0.2.1", "juliet", "192.0.2.1", None),
    ("192.0.2.1/res", None, "192.0.2.1", "res"),
    ("juliet@127.0.0.1.", "juliet", "127.0.0.1", None),
    ("juliet@[::1]", "juliet", "[::1]", None),
    ("juliet@[0:0:0:0:0:0:0:1]/r", "juliet", "[::1]", "r"),
    ("[2001:DB8::1]", None, "[2001:db8::1]", None),
    ("x@[::ffff:192.0.2.1]", "x", "[::ffff:192.0.2.1]", None),
    ("x@[::FFFF:C000:0201]", "x", "[::ffff:192.0.2.1]", None),
    ("x@\uff11\uff12\uff17.0.0.1", "x", "127.0.0.1", None),  # fullwidth digits map first
]


@pytest.mark.parametrize(("text", "local", "domain", "resource"), MORE_VALID)
def test_valid(text: str, local: str | None, domain: str, resource: str | None) -> None:
    jid = JID.parse(text)
    assert (jid.local, jid.domain, jid.resource) == (local, domain, resource)


@pytest.mark.parametrize("text", [row[0] for row in RFC_VALID + MORE_VALID])
def test_round_trip(text: str) -> None:
    jid = JID.parse(text)
    again = JID.parse(str(jid))
    assert again == jid
    assert str(again) == str(jid)
    assert (again.local, again.domain, again.resource) == (jid.local, jid.domain, jid.resource)
    assert JID.from_parts(jid.local, jid.domain, jid.resource) == jid


# -------------------------------------------------------------------- more invalid input

MORE_INVALID = [
    # empty parts
    ("", "domainpart"),
    ("@example.com", "localpart"),
    ("user@", "domainpart"),
    ("user@example.com/", "resourcepart"),
    ("example.com/", "resourcepart"),
    ("/res", "domainpart"),
    ("@", "localpart"),
    ("/", "resourcepart"),
    ("@/", "resourcepart"),
    ("@/res", "localpart"),
    ("node@/res", "domainpart"),
    (".", "domainpart"),
    ("user@.", "domainpart"),
    # XMPP-excluded characters in the localpart (RFC 7622 §3.3.1)
    ('a"b@example.com', "localpart"),
    ("a&b@example.com", "localpart"),
    ("a'b@example.com", "localpart"),
    ("a:b@example.com", "localpart"),
    ("a<b@example.com", "localpart"),
    ("a>b@example.com", "localpart"),
    # ... including ones that only appear after width mapping
    ("a\uff20b@example.com", "localpart"),  # FULLWIDTH COMMERCIAL AT
    ("a\uff0fb@example.com", "localpart"),  # FULLWIDTH SOLIDUS
    ("a\uff02b@example.com", "localpart"),  # FULLWIDTH QUOTATION MARK
    ("a\uff1ab@example.com", "localpart"),  # FULLWIDTH COLON
    # other localpart refusals
    ("a\tb@example.com", "localpart"),
    ("a\u00a0b@example.com", "localpart"),  # no space of any kind in a localpart
    ("\u1d2e\u1d35\u1d33\u1d2e\u1d35\u1d3f\u1d30@localhost", "localpart"),  # ᴮᴵᴳᴮᴵᴿᴰ
    ("\ufb01sh@example.com", "localpart"),  # LATIN SMALL LIGATURE FI
    ("\u24b7ob@example.com", "localpart"),  # CIRCLED LATIN CAPITAL LETTER B
    ("\U0001d41bob@example.com", "localpart"),  # MATHEMATICAL BOLD SMALL B
    ("a\u200bb@example.com", "localpart"),  # ZERO WIDTH SPACE
    # resourcepart refusals
    ("u@example.com/a\x01b", "resourcepart"),
    ("u@example.com/a\tb", "resourcepart"),
    ("u@example.com/a\u200bb", "resourcepart"),
    ("u@example.com/\ud800", "resourcepart"),  # lone surrogate
    # domainpart refusals
    ("user@@example.com", "domainpart"),
    ("user@a@example.com", "domainpart"),
    ("user@under_score.example", "domainpart"),
    ("user@exa mple.com", "domainpart"),
    ("user@example.com..", "domainpart"),  # only one trailing dot is stripped
    ("user@a..b", "domainpart"),
    ("user@.example.com", "domainpart"),
    ("user@-a.example", "domainpart"),
    ("user@a-.example", "domainpart"),
    ("user@ab--cd.example", "domainpart"),  # reserved LDH label (RFC 5890)
    ("user@xn--abc.example", "domainpart"),  # not a valid A-label
    ("user@xn--.example", "domainpart"),
    ("user@xn---bbk.example", "domainpart"),  # non-canonical Punycode for xn--bbk
    ("user@exa\u2665mple.com", "domainpart"),  # symbol
    ("user@example.com\u3002", "domainpart"),  # a mapped trailing dot is an empty label
    ("user@a\u00adb.example\ud800", "domainpart"),
    # numeric domains must be dotted-quad IPv4
    ("user@1.2.3", "domainpart"),
    ("user@256.1.1.1", "domainpart"),
    ("user@01.2.3.4", "domainpart"),
    ("user@1.2.3.4.5", "domainpart"),
    ("user@0x7f.0.0.1", "domainpart"),
    ("user@example.0x7f", "domainpart"),
    ("user@example.123", "domainpart"),
    ("user@2130706433", "domainpart"),
    # IP literals
    ("user@::1", "domainpart"),
    ("user@[::1", "domainpart"),
    ("user@[]", "domainpart"),
    ("user@[::g]", "domainpart"),
    ("user@[fe80::1%eth0]", "domainpart"),
    ("user@[192.0.2.1]", "domainpart"),
    ("user@[v1.fe80::1]", "domainpart"),
    ("user@[::1]x", "domainpart"),
]


@pytest.mark.parametrize(("text", "part"), MORE_INVALID)
def test_invalid(text: str, part: str) -> None:
    with pytest.raises(JIDError, match=part):
        JID.parse(text)


def test_error_is_value_error_and_describes_code_point() -> None:
    with pytest.raises(ValueError, match=r"localpart: .*U\+265A"):
        JID.parse("\u265a@example.com")


def test_error_message_does_not_echo_long_input() -> None:
    text = "x" * 5000 + "\u265a@example.com"
    with pytest.raises(JIDError) as info:
        JID.parse(text)
    assert len(str(info.value)) < 200


# --------------------------------------------------------------------- length limits


def _sized(unit: str, octets: int) -> str:
    """A string of exactly ``octets`` UTF-8 octets: repeated ``unit``, topped up with "a"."""
    size = len(unit.encode())
    text = unit * (octets // size) + "a" * (octets % size)
    assert len(text.encode()) == octets
    return text


@pytest.mark.parametrize("unit", ["a", "\u00e9", "\u4e2d", "\U00020000"])
def test_localpart_length(unit: str) -> None:
    ok = _sized(unit, 1023)
    assert JID.parse(f"{ok}@example.com").local == ok
    with pytest.raises(JIDError, match="localpart: longer than 1023 octets"):
        JID.parse(f"{_sized(unit, 1024)}@example.com")


@pytest.mark.parametrize("unit", ["r", "\u00e9", "\u265a", "\U0001f37a"])
def test_resourcepart_length(unit: str) -> None:
    ok = _sized(unit, 1023)
    assert JID.parse(f"u@example.com/{ok}").resource == ok
    with pytest.raises(JIDError, match="resourcepart: longer than 1023 octets"):
        JID.parse(f"u@example.com/{_sized(unit, 1024)}")


def test_length_is_counted_after_preparation() -> None:
    # 1023 FULLWIDTH LATIN CAPITAL LETTER A: 3069 octets in, 1023 octets out.
    jid = JID.parse("\uff21" * 1023 + "@example.com")
    assert jid.local == "a" * 1023
    with pytest.raises(JIDError, match="localpart: longer than 1023 octets"):
        JID.parse("\uff21" * 1024 + "@example.com")


def _domain_of(label: str, octets: int) -> str:
    """``label`` repeated, dot-separated, topped up with ASCII labels: ``octets`` long."""
    parts: list[str] = []
    remaining = octets
    step = len(label.encode()) + 1
    while remaining > 63 and remaining - step >= 2:
        parts.append(label)
        remaining -= step
    if remaining > 63:
        parts.append("a" * (remaining - 2))
        remaining = 1
    parts.append("a" * remaining)
    text = ".".join(parts)
    assert len(text.encode()) == octets
    return text


@pytest.mark.parametrize("label", ["a" * 63, "b" * 10, "\u00fc" * 20, "\u4f8b" * 15])
def test_domainpart_length(label: str) -> None:
    ok = _domain_of(label, 1023)
    assert JID.parse(f"u@{ok}").domain == ok
    assert prep_domain(ok + ".") == ok  # the trailing dot does not count
    with pytest.raises(JIDError, match="domainpart: longer than 1023 octets"):
        JID.parse(f"u@{_domain_of(label, 1024)}")


def test_domain_label_length() -> None:
    assert prep_domain("a" * 63 + ".example") == "a" * 63 + ".example"
    with pytest.raises(JIDError, match="label 0 longer than 63 octets"):
        prep_domain("a" * 64 + ".example")
    # The limit is on the A-label: 59 octets of UTF-8, but 65 octets as an A-label.
    label = "a" * 57 + "\u00fc"
    assert len(label.encode()) < 63
    assert len("xn--" + label.encode("punycode").decode()) > 63
    with pytest.raises(JIDError, match="label 0 longer than 63 octets"):
        prep_domain(label + ".example")


def test_longer_than_dns_but_within_rfc7622() -> None:
    # RFC 7622 allows 1023 octets; DNS would stop at 253.  We follow RFC 7622.
    domain = ".".join(["a" * 63] * 5)
    assert len(domain) > 253
    assert JID.parse(f"u@{domain}").domain == domain


def test_hostile_lengths_are_refused_cheaply() -> None:
    for text in ("a" * 100_000 + "@example.com", "u@" + "a" * 100_000, "u@x/" + "\u00e9" * 100_000):
        with pytest.raises(JIDError, match="longer than"):
            JID.parse(text)


# ------------------------------------------------------------------ IDN and IP literals


def test_idn_ulabel_and_alabel_are_equal() -> None:
    a = JID.parse("user@m\u00fcller.example")
    b = JID.parse("user@xn--mller-kva.example")
    c = JID.parse("USER@M\u00dcLLER.EXAMPLE.")
    assert a == b == c
    assert hash(a) == hash(b) == hash(c)
    assert a.domain == "m\u00fcller.example"  # stored as U-labels (RFC 7622 §3.2.1)
    assert domain_to_ascii(a.domain) == "xn--mller-kva.example"
    assert domain_to_ascii("localhost") == "localhost"


def test_ip_literals_are_canonical() -> None:
    assert JID.parse("u@[0:0::1]") == JID.parse("u@[::1]")
    assert JID.parse("u@[2001:DB8:0:0::1]").domain == "[2001:db8::1]"
    assert prep_domain("[::ffff:c000:201]") == "[::ffff:192.0.2.1]"
    assert prep_domain("192.0.2.1.") == "192.0.2.1"


# ------------------------------------------------------------ equality, views, helpers


def test_equality_and_hash_on_prepared_parts() -> None:
    assert JID.parse("Alice@LOCALHOST") == JID.parse("alice@localhost")
    assert hash(JID.parse("Alice@LOCALHOST")) == hash(JID.parse("alice@localhost"))
    assert JID.parse("a@b/R") != JID.parse("a@b/r")  # resource keeps its case
    assert JID.parse("a@b") != JID.parse("a@b/r")
    assert JID.parse("b") != JID.parse("a@b")
    assert JID.parse("a@b") != "a@b"
    assert JID.parse("a@b") != ("a", "b", None)
    assert len({JID.parse("ALICE@localhost"), JID.parse("alice@LocalHost.")}) == 1
    assert {JID.parse("alice@localhost"): 1}[JID.parse("Alice@LOCALHOST")] == 1


def test_str_and_repr() -> None:
    jid = JID.parse("Alice@LOCALHOST/Phone")
    assert str(jid) == "alice@localhost/Phone"
    assert repr(jid) == "JID('alice@localhost/Phone')"
    assert str(JID.parse("LOCALHOST")) == "localhost"
    assert str(JID.parse("localhost/R")) == "localhost/R"


def test_bare() -> None:
    full = JID.parse("alice@localhost/phone")
    bare = full.bare
    assert bare == JID.parse("alice@localhost")
    assert bare.resource is None
    assert bare.is_bare and not full.is_bare
    assert full.bare is bare  # computed once
    assert bare.bare is bare  # already bare: the same object
    assert JID.parse("localhost/x").bare == JID.parse("localhost")


def test_is_domain() -> None:
    assert JID.parse("localhost").is_domain
    assert not JID.parse("localhost/r").is_domain
    assert not JID.parse("a@localhost").is_domain


def test_with_resource() -> None:
    bare = JID.parse("alice@localhost")
    phone = bare.with_resource("Phone")
    assert phone == JID.parse("alice@localhost/Phone")
    assert JID.parse("alice@localhost/old").with_resource("new") == JID.parse("alice@localhost/new")
    assert bare.with_resource("a\u00a0b").resource == "a b"  # prepared
    assert phone.with_resource(None) == bare
    with pytest.raises(JIDError, match="resourcepart"):
        bare.with_resource("")
    with pytest.raises(JIDError, match="resourcepart"):
        bare.with_resource("a\x00")


def test_from_parts_prepares_each_part() -> None:
    jid = JID.from_parts("Alice", "LocalHost.", "Phone")
    assert (jid.local, jid.domain, jid.resource) == ("alice", "localhost", "Phone")
    assert JID.from_parts(None, "example.com", None) == JID.parse("example.com")
    assert JID("Alice", "localhost") == JID.parse("alice@localhost")  # same as from_parts
    for local, domain, resource in [
        ("", "example.com", None),  # "" is not "absent"
        ("a", "", None),
        ("a", "example.com", ""),
        ("a@b", "example.com", None),  # separators are never allowed inside a localpart
        ("a/b", "example.com", None),
        (None, "a@b", None),
        (None, "a/b", None),
    ]:
        with pytest.raises(JIDError):
            JID.from_parts(local, domain, resource)


def test_resource_may_hold_separators_via_from_parts() -> None:
    jid = JID.from_parts("a", "b", "c/d@e")
    assert JID.parse(str(jid)) == jid


def test_part_helpers() -> None:
    assert prep_local("ALICE") == "alice"
    assert prep_local("\uff21lice") == "alice"
    assert prep_resource("Phone") == "Phone"
    assert prep_domain("LOCALHOST.") == "localhost"
    assert prep_domain("xn--mller-kva.example") == "m\u00fcller.example"
    for func, bad in [(prep_local, "a b"), (prep_resource, ""), (prep_domain, "a_b")]:
        with pytest.raises(JIDError):
            func(bad)


def test_immutable() -> None:
    jid = JID.parse("alice@localhost/phone")
    with pytest.raises(AttributeError):
        jid.local = "mallory"  # type: ignore[misc]  # mypy: read-only property
    with pytest.raises(AttributeError):
        del jid.domain
    with pytest.raises(AttributeError):
        jid.extra = 1


def test_pickle_and_copy() -> None:
    jid = JID.parse("alice@localhost/phone")
    assert pickle.loads(pickle.dumps(jid)) == jid
    assert copy.copy(jid) is jid
    assert copy.deepcopy(jid) is jid


def test_match_args() -> None:
    match JID.parse("alice@localhost/phone"):
        case JID(local, "localhost", resource):
            assert (local, resource) == ("alice", "phone")
        case _:
            pytest.fail("no match")


# ------------------------------------------------------------------------------- cache


def test_parse_is_cached() -> None:
    assert JID.parse("cached@localhost/r") is JID.parse("cached@localhost/r")


def test_refusals_are_cached_but_raise_fresh_errors() -> None:
    with pytest.raises(JIDError) as first:
        JID.parse("bad bad@localhost")
    with pytest.raises(JIDError) as second:
        JID.parse("bad bad@localhost")
    assert first.value is not second.value
    assert str(first.value) == str(second.value)


def test_long_inputs_bypass_the_cache() -> None:
    text = "u@example.com/" + "r" * 400
    first = JID.parse(text)
    assert first == JID.parse(text)
    assert first is not JID.parse(text)
