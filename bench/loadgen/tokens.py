"""Benchmark tokens: `#<a>:<b>:<t>#` carried in a message body or presence status.

`a` and `b` are small integers a scenario gives meaning to (sender and sequence number, change
number…), `t` the generator's `perf_counter_ns()` when the stanza was written, so end-to-end
latency needs no table of send times. Servers re-serialize stanzas (attribute order, quotes,
namespace declarations differ), but character data made of digits, ':' and '#' survives
unchanged, so the receiving side finds tokens in the raw bytes with one regular expression
instead of parsing XML.
"""

from __future__ import annotations

import re
from collections.abc import Callable

TOKEN = re.compile(rb"#(\d+):(\d+):(\d+)#")
_MAX_TOKEN = 64


def token(a: int, b: int, t: int) -> bytes:
    return b"#%d:%d:%d#" % (a, b, t)


class TokenScanner:
    """Feed raw stream bytes; `on_tokens(list of (a, b, t))` is called once per chunk that
    holds any. A token split across two reads is completed with the next one."""

    __slots__ = ("_tail", "on_tokens")

    def __init__(self, on_tokens: Callable[[list[tuple[int, int, int]]], None]) -> None:
        self.on_tokens = on_tokens
        self._tail = b""

    def feed(self, data: bytes) -> None:
        if self._tail:
            data = self._tail + data
            self._tail = b""
        found = [(int(a), int(b), int(t)) for a, b, t in TOKEN.findall(data)]
        # Keep a trailing fragment that may be the start of a token cut by the read.
        cut = data.rfind(b"#", max(0, len(data) - _MAX_TOKEN))
        if cut >= 0:
            rest = data[cut:]
            if not TOKEN.match(rest) and re.fullmatch(rb"#[\d:]*", rest):
                self._tail = rest
        if found:
            self.on_tokens(found)
