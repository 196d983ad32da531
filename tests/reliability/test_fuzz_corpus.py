"""The fuzz targets (fuzz/fuzz_*.py) without atheris: every corpus file replayed on every
`make test` (seeds and former crashers alike: a crash, once fixed, stays fixed), a short
hypothesis run of each target, and the parser bugs the stream target found, as strict xfails
with minimal inputs until blether/xml/parser.py is fixed.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blether.xml.parser import XMLError, XMLStreamParser

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
TARGETS = sorted(p.stem.removeprefix("fuzz_") for p in FUZZ.glob("fuzz_*.py"))


def target(name: str) -> Callable[[bytes], None]:
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    check: Callable[[bytes], None] = importlib.import_module(f"fuzz_{name}").check
    return check


def corpus() -> list[tuple[str, Path]]:
    return [(name, f) for name in TARGETS for f in sorted((FUZZ / "corpus" / name).iterdir())]


def test_every_target_has_a_corpus() -> None:
    assert TARGETS == ["jid", "negotiation", "stream"]
    for name in TARGETS:
        assert any((FUZZ / "corpus" / name).iterdir()), name


@pytest.mark.parametrize(("name", "path"), corpus(), ids=lambda v: getattr(v, "name", v))
def test_corpus_case(name: str, path: Path) -> None:
    target(name)(path.read_bytes())


@pytest.mark.parametrize("name", TARGETS)
def test_random_inputs(name: str) -> None:
    check = target(name)
    seeds = [f.read_bytes() for f in sorted((FUZZ / "corpus" / name).iterdir())]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(seeds), st.binary(max_size=64), st.integers(0, 4096))
    def run(seed: bytes, junk: bytes, at: int) -> None:
        # Splice random bytes into a real input: mostly well-formed, broken somewhere.
        at = min(at, len(seed))
        check(seed[:at] + junk + seed[at:])

    run()


HEADER = (b"<stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")


def condition(*reads: bytes) -> str | None:
    parser = XMLStreamParser()
    try:
        for data in reads:
            parser.feed(data)
    except XMLError as exc:
        return exc.condition
    return None


def test_text_between_stanzas_is_reported_whatever_follows_it() -> None:
    data = HEADER + b"<presence/>junk<a b='1'c/>"
    assert condition(data[:len(HEADER) + 15], data[len(HEADER) + 15:]) == "bad-format"
    assert condition(data) == "bad-format"


def test_invalid_utf8_condition_does_not_depend_on_read_sizes() -> None:
    data = HEADER + b"<message a=\xdc\xca/>"
    cut = data.index(b"\xdc") + 1
    assert condition(data) == "unsupported-encoding"
    assert condition(data[:cut], data[cut:]) == "unsupported-encoding"


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_stream_is_refused(encoding: str) -> None:
    data = (HEADER.decode() + "<message to='a@localhost'><body>hi</body></message>").encode(
        encoding)
    assert condition(data) == "unsupported-encoding"


def test_sasl_failure_text_is_well_formed_xml() -> None:
    from blether import ns
    from blether.errors import SASLFailure
    from blether.stream.connection import XMPPStream
    from blether.stream.sasl import ScramServerSession

    async def lookup(_user: str, _mech: str) -> None:
        return None

    session = ScramServerSession("SCRAM-SHA-256-PLUS", "localhost", lookup,
                                 {"tls-server-end-point": b"x" * 32}, b"k" * 32)
    coro = session.start(b"p=tls-server-end-\x16oint,,n=juliet,r=abc")
    with pytest.raises(SASLFailure) as failure:
        coro.send(None)
    stream = XMPPStream(ns.CLIENT, frozenset({"localhost"}), XMLStreamParser().limits)
    written = stream.header("localhost") + stream.element(failure.value.to_element())
    XMLStreamParser().feed(written)   # what a client's parser does with it
