"""The core's view of a bound client session (RFC 6120 §7) and its RFC 6121 presence state."""

from __future__ import annotations

import abc
import itertools
import time
from typing import Any

from blether.errors import StreamError
from blether.jid import JID
from blether.xml.element import Element

_ids = itertools.count(1)


class Session(abc.ABC):
    """A resource bound to an account. Transports subclass it to provide `send` and `close`.

    Slotted, and `directed` and `data` are made on first use: most sessions never send
    directed presence, and a quiet session should cost little (docs/performance.md).
    """

    __slots__ = ("_data", "_directed", "available", "bare", "closed", "id", "interested", "ip",
                 "jid", "lang", "last_active", "presence", "priority")

    def __init__(self, jid: JID, ip: str = "") -> None:
        self.id = f"c2s{next(_ids)}"
        self.jid = jid
        self.bare = jid.bare
        self.ip = ip
        # RFC 6121 §4: state kept per session by the presence and roster features.
        self.available = False           # sent initial presence and not unavailable since
        self.priority = 0
        self.presence: Element | None = None   # last broadcast available presence (stamped)
        self.interested = False           # requested the roster (RFC 6121 §2.1.6)
        self._directed: set[JID] | None = None
        self.closed = False
        self.last_active = time.monotonic()   # last time bytes arrived from the client
        self.lang = "en"                      # stream's default xml:lang (RFC 6120 §8.1.5)
        self._data: dict[str, Any] | None = None

    @property
    def directed(self) -> set[JID]:
        """Entities that got directed presence from this session (RFC 6121 §4.6)."""
        directed = self._directed
        if directed is None:
            directed = self._directed = set()
        return directed

    @property
    def data(self) -> dict[str, Any]:
        """Per-feature state, keyed by module name."""
        data = self._data
        if data is None:
            data = self._data = {}
        return data

    @abc.abstractmethod
    def send(self, stanza: Element) -> None:
        """Queue `stanza` for writing; never blocks, never raises for a closed session."""

    @abc.abstractmethod
    def send_bytes(self, data: bytes) -> None:
        """Queue bytes already serialized for this stream's content namespace."""

    @abc.abstractmethod
    async def close(self, error: StreamError | None = None) -> None:
        """End the stream, with a stream error if given."""

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.jid}>"
