"""Shared pieces of the fuzz targets (atheris, libFuzzer engine; SECURITY.md point 10).

Every target is a module `fuzz_<name>.py` with a `check(data: bytes) -> None` function that
raises `AssertionError` (or any exception not in its documented set) on a finding, and a
`__main__` block that hands `check` to atheris. The same `check` is replayed on every file of
`fuzz/corpus/<name>/` by `tests/reliability/test_fuzz_corpus.py`, so a crasher that was turned
into a corpus case stays a regression test without atheris.

The inputs are split deterministically (a tiny PRNG seeded from the input), not with
`atheris.FuzzedDataProvider`, so `check` needs no atheris at replay time.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class Reader:
    """Consumes parameters from the front of a fuzz input; the rest is the payload."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        b = self.data[self.pos]
        self.pos += 1
        return b

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out


def chunks(payload: bytes, seed: int) -> list[bytes]:
    """Split `payload` into reads of pseudo-random sizes (1..64 bytes, or one read if seed is 0).

    TCP delivers a stream in arbitrary pieces; the parser must not care where they fall.
    """
    if seed == 0:
        return [payload]
    out, pos, state = [], 0, seed
    while pos < len(payload):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF   # a classic LCG: deterministic
        size = 1 + (state >> 16) % 64
        out.append(payload[pos:pos + size])
        pos += size
    return out


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never really suspends (in-memory lookups), without an event loop.

    An event loop per input would cost more than the code under test; if the coroutine does
    suspend, something awaited real I/O, which a sans-IO piece must not do.
    """
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("a sans-IO coroutine suspended on real I/O")


def instrumented() -> contextlib.AbstractContextManager[Any]:
    """Wrap the imports of the code under test: atheris instruments them for coverage when a
    target runs as a fuzzer; imported by the corpus replay test, nothing is instrumented."""
    if not Path(sys.argv[0]).name.startswith("fuzz_"):
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=["blether", "scramp"])  # type: ignore[no-any-return]


def fuzz_main(check: Callable[[bytes], None]) -> None:
    """atheris entry point (the target's imports were instrumented by `instrumented()`)."""
    import atheris

    def one_input(data: bytes) -> None:
        check(data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
