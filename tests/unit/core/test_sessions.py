"""SessionRegistry (RFC 6120 §7.7): lookups by bare JID, full JID and (bare, resource)."""

from __future__ import annotations

from blether.core.session import Session
from blether.core.sessions import SessionRegistry
from blether.errors import StreamError
from blether.jid import JID
from blether.xml.element import Element


class Quiet(Session):
    def send(self, stanza: Element) -> None:
        pass

    def send_bytes(self, data: bytes) -> None:
        pass

    async def close(self, error: StreamError | None = None) -> None:
        self.closed = True


def test_get_and_get_resource_agree() -> None:
    reg = SessionRegistry()
    pc = Quiet(JID.parse("bob@localhost/pc"))
    phone = Quiet(JID.parse("bob@localhost/phone"))
    reg.add(pc)
    reg.add(phone)
    bare = JID.parse("bob@localhost")
    assert reg.get_resource(bare, "pc") is pc is reg.get(JID.parse("bob@localhost/pc"))
    assert reg.get_resource(bare, "phone") is phone
    assert reg.get_resource(bare, "tablet") is None
    assert reg.get_resource(JID.parse("alice@localhost"), "pc") is None
    assert reg.get(bare) is None  # a bare JID names no session
    reg.remove(pc)
    assert reg.get_resource(bare, "pc") is None and reg.get_resource(bare, "phone") is phone
    reg.remove(phone)
    assert reg.get_resource(bare, "phone") is None and not reg.is_online(bare)
