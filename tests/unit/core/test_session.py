"""Session: slotted, with the rarely used per-session containers made on first use."""

from __future__ import annotations

import pytest

from blether.core.session import Session
from blether.errors import StreamError
from blether.jid import JID
from blether.xml.element import Element


class Plain(Session):
    __slots__ = ()

    def send(self, stanza: Element) -> None:
        pass

    def send_bytes(self, data: bytes) -> None:
        pass

    async def close(self, error: StreamError | None = None) -> None:
        self.closed = True


def test_directed_and_data_are_made_on_first_use_and_kept() -> None:
    s = Plain(JID.parse("juliet@example.com/balcony"), "192.0.2.1")
    assert s._directed is None and s._data is None
    assert not s.directed
    s.directed.add(JID.parse("romeo@example.net"))
    s.data["keepalive"] = 1
    assert s.directed == {JID.parse("romeo@example.net")} and s.data == {"keepalive": 1}
    assert s.bare == JID.parse("juliet@example.com") and s.id.startswith("c2s")


def test_sessions_have_no_instance_dict() -> None:
    s = Plain(JID.parse("juliet@example.com/balcony"))
    with pytest.raises(AttributeError):
        s.anything = 1  # type: ignore[attr-defined]
