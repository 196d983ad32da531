"""Property tests for blether.jid: idempotence, fast path == slow path, no silent collapse.

SECURITY.md point 8: JID preparation must be idempotent, or one account name can be
registered that later prepares to another (Spotify's nodeprep takeover with ᴮᴵᴳᴮᴵᴿᴰ).
"""

from __future__ import annotations

import contextlib
import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from precis_i18n import get_profile

from blether import jid as jidmod
from blether.jid import JID, JIDError

_USERNAME = get_profile("UsernameCaseMapped")
_OPAQUE = get_profile("OpaqueString")

# Characters that make JIDs interesting: separators (raw and fullwidth), case, width,
# combining marks, spaces of several kinds, symbols, compatibility characters, RTL.
_TRICKY = (
    "aAzZ09.-_@/\"&':<>!~ \t\x00\u00a0\u2000\u3000\u00df\u03a3\u03c2\u0130\u0131"
    "\u00e9e\u0301\u212a\u017f\ufb01\uff20\uff0f\uff21\uff41\uff11\u3002\uff0e"
    "\u1d2e\u1d35\u2163\u24b7\U0001d41b\u265a\u200b\u200c\u200d\u00ad\u05d0\u0627"
    "\u0661\u00b7\u30fb\u4e2d\U00020000\ufe0f"
)
tricky_text = st.text(alphabet=st.sampled_from(_TRICKY), max_size=12)
any_text = st.text(max_size=24)
part_text = st.one_of(tricky_text, any_text)
domains = st.one_of(
    st.sampled_from(
        [
            "localhost",
            "LOCALHOST.",
            "example.com",
            "M\u00fcller.Example",
            "xn--mller-kva.example",
            "\u4f8b\u3048.\u30c6\u30b9\u30c8",
            "192.0.2.1",
            "[::1]",
            "[::FFFF:c000:0201]",
            "\uff45\uff58.com",
            "example\u3002com",
            "\u05d0\u05d1.example",
        ]
    ),
    st.from_regex(r"[a-zA-Z0-9\-]{1,10}(\.[a-zA-Z0-9\-]{1,10}){0,3}\.?", fullmatch=True),
    tricky_text,
)


def _assert_stable(jid: JID) -> None:
    again = JID.parse(str(jid))
    assert again == jid
    assert str(again) == str(jid)
    assert (again.local, again.domain, again.resource) == (jid.local, jid.domain, jid.resource)
    assert JID.from_parts(jid.local, jid.domain, jid.resource) == jid


@settings(max_examples=1500, deadline=None)
@given(st.one_of(any_text, tricky_text))
@example("\u1d2e\u1d35\u1d33\u1d2e\u1d35\u1d3f\u1d30@localhost")
@example("\uff22\uff29\uff27\uff22\uff29\uff32\uff24@localhost/\uff32")
@example("\u0130@localhost")
def test_parse_is_idempotent_on_random_text(text: str) -> None:
    try:
        jid = JID.parse(text)
    except JIDError:
        return
    _assert_stable(jid)


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(st.none(), part_text),
    domains,
    st.one_of(st.none(), part_text),
)
def test_parse_is_idempotent_on_structured_text(
    local: str | None, domain: str, resource: str | None
) -> None:
    text = domain if local is None else f"{local}@{domain}"
    if resource is not None:
        text = f"{text}/{resource}"
    try:
        jid = JID.parse(text)
    except JIDError:
        return
    _assert_stable(jid)


@settings(max_examples=1000, deadline=None)
@given(part_text)
def test_localpart_is_the_profile_and_nothing_more(text: str) -> None:
    """Only UsernameCaseMapped collapses inputs, and its output is NFKC- and case-stable.

    So a prepared localpart cannot be turned into another one by a later nodeprep-style
    NFKC + case fold (the Spotify bug): the result is already a fixed point of both.
    """
    try:
        local = jidmod.prep_local(text)
    except JIDError:
        return
    assert local == _USERNAME.enforce(text)
    assert not set(local) & set("\"&'/:<>@")
    assert unicodedata.normalize("NFKC", local) == local
    assert unicodedata.normalize("NFC", local.lower()) == local
    assert jidmod.prep_local(local) == local


@settings(max_examples=1000, deadline=None)
@given(part_text)
def test_resourcepart_is_the_profile(text: str) -> None:
    try:
        resource = jidmod.prep_resource(text)
    except JIDError:
        return
    assert resource == _OPAQUE.enforce(text)
    assert jidmod.prep_resource(resource) == resource


def test_spotify_case_is_rejected_not_collapsed() -> None:
    # nodeprep (NFKC) mapped ᴮᴵᴳᴮᴵᴿᴰ to "bigbird" only on a *second* application;
    # UsernameCaseMapped refuses the superscript letters outright.
    with pytest.raises(JIDError, match="localpart: DISALLOWED/has_compat"):
        JID.parse("\u1d2e\u1d35\u1d33\u1d2e\u1d35\u1d3f\u1d30@localhost")
    # Every compatibility look-alike of "bigbird" is refused too ...
    for spoof in (
        "\u1d47igbird",  # MODIFIER LETTER SMALL B
        "bigbird\u2071",  # SUPERSCRIPT LATIN SMALL LETTER I
        "\u24b7igbird",  # CIRCLED LATIN CAPITAL LETTER B
        "\U0001d41bigbird",  # MATHEMATICAL BOLD SMALL B
        "b\u0131gb\u0131rd",  # dotless i is a letter of its own: accepted but distinct
    ):
        with contextlib.suppress(JIDError):
            assert JID.parse(f"{spoof}@localhost") != JID.parse("bigbird@localhost")
    # ... and the collapses that remain are the profile's own, done in one step.
    target = JID.parse("bigbird@localhost")
    for same in ("BigBird", "\uff22\uff29\uff27\uff22\uff29\uff32\uff24", "\uff42igbird"):
        jid = JID.parse(f"{same}@localhost")
        assert jid == target
        assert jidmod.prep_local(same) == jidmod.prep_local(jid.local or "") == "bigbird"


# ----------------------------------------------------------------- fast path == slow path

Prep = Callable[[str], str]


def _outcome(func: Prep, text: str) -> str | None:
    try:
        return func(text)
    except JIDError:
        return None


ascii_text = st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40)
long_ascii = st.text(alphabet=st.sampled_from('aZ9.-_ !~@/"\x7f'), min_size=1015, max_size=1030)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(ascii_text, long_ascii, tricky_text))
def test_local_fast_path_equals_slow_path(text: str) -> None:
    assert _outcome(jidmod._prep_local, text) == _outcome(jidmod._prep_local_slow, text)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(ascii_text, long_ascii, tricky_text))
def test_resource_fast_path_equals_slow_path(text: str) -> None:
    assert _outcome(jidmod._prep_resource, text) == _outcome(jidmod._prep_resource_slow, text)


@pytest.mark.parametrize("code_point", range(0x80))
def test_fast_paths_every_ascii_code_point(code_point: int) -> None:
    # For ASCII the profiles act code point by code point (no width mapping, lower() as
    # the case mapping, NFC the identity, no Bidi rule without RTL), so checking every
    # ASCII code point, alone and between letters, covers every ASCII string.
    char = chr(code_point)
    for text in (char, f"x{char}", f"{char}Y", f"a{char}B"):
        assert _outcome(jidmod._prep_local, text) == _outcome(jidmod._prep_local_slow, text)
        assert _outcome(jidmod._prep_resource, text) == _outcome(jidmod._prep_resource_slow, text)


def test_fast_paths_at_the_length_limit() -> None:
    for size in (1022, 1023, 1024):
        for func, slow in (
            (jidmod._prep_local, jidmod._prep_local_slow),
            (jidmod._prep_resource, jidmod._prep_resource_slow),
        ):
            text = "A" * size
            assert _outcome(func, text) == _outcome(slow, text)


def test_cached_domain_equals_uncached() -> None:
    for text in ("LOCALHOST", "xn--mller-kva.example.", "a_b", "[::1]", "1.2.3"):
        assert _outcome(jidmod.prep_domain, text) == _outcome(jidmod._prep_domain_uncached, text)


# ------------------------------------------------------------------ exhaustive (slow)


@pytest.mark.slow
def test_every_code_point_prepares_idempotently() -> None:
    """Each Unicode code point in each part: accepted results are fixed points (~30 s)."""
    failures = []
    parts: list[tuple[Prep, str, str]] = [
        (jidmod._prep_local_slow, "a", ""),
        (jidmod._prep_resource_slow, "a", ""),
        (jidmod._prep_domain_uncached, "a", "b.example"),
    ]
    for code_point in range(0x110000):
        char = chr(code_point)
        for func, before, after in parts:
            prepared = _outcome(func, before + char + after)
            if prepared is not None and _outcome(func, prepared) != prepared:
                failures.append((func.__name__, hex(code_point)))
    assert failures == []
