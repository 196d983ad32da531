"""Small protocol helpers shared by the presence and offline scenarios."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable

from bench.loadgen.xmpp import CLIENT, XMPPConnection

IQ = f"{CLIENT}iq"
PRESENCE = f"{CLIENT}presence"
MESSAGE = f"{CLIENT}message"
ROSTER_ITEM = "{jabber:iq:roster}query/{jabber:iq:roster}item"


def bare(jid: str | None) -> str:
    return (jid or "").split("/", 1)[0]


class Dispatcher:
    """An element handler for a connection: answers IQ results to waiting futures, passes
    everything else to `fallback`."""

    def __init__(self, conn: XMPPConnection,
                 fallback: Callable[[ET.Element], None] | None = None) -> None:
        self.conn = conn
        self.fallback = fallback
        self.pending: dict[str, asyncio.Future[ET.Element]] = {}
        self._ids = 0
        conn.handle_elements(self)

    def __call__(self, el: ET.Element) -> None:
        if el.tag == IQ and el.get("type") in ("result", "error"):
            fut = self.pending.pop(el.get("id") or "", None)
            if fut is not None and not fut.done():
                fut.set_result(el)
                return
        if self.fallback is not None:
            self.fallback(el)

    async def query(self, payload: str, to: str | None = None, kind: str = "get",
                    timeout: float = 30.0) -> ET.Element:
        self._ids += 1
        iq_id = f"q{self._ids}"
        fut: asyncio.Future[ET.Element] = asyncio.get_running_loop().create_future()
        self.pending[iq_id] = fut
        to_attr = f" to='{to}'" if to else ""
        self.conn.send(f"<iq type='{kind}' id='{iq_id}'{to_attr}>{payload}</iq>".encode())
        return await asyncio.wait_for(fut, timeout)

    async def ping(self, to: str, timeout: float = 60.0) -> None:
        await self.query("<ping xmlns='urn:xmpp:ping'/>", to=to, timeout=timeout)
