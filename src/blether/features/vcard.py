"""XEP-0054: vcard-temp, and the server side of XEP-0153: vCard-Based Avatars.

XEP-0054 §3.1/§3.2: an account gets and replaces its own vCard (IQ without 'to', or to its
bare JID); §3.3: anyone may read an account's vCard, the server answering on the account's
behalf (vCards are world-readable, XEP-0054 §6). The vCard is kept whole, serialized, in the
key-value store (store ``vcard``), as Prosody's mod_vcard and ejabberd's mod_vcard do.

XEP-0153 gives the client, not the server, the job of putting ``<x xmlns='vcard-temp:x:update'>``
in presence (§3.1, §4.1); the router passes it through untouched like any extension. What the
server does is bookkeeping: when a vCard with a PHOTO is stored, the SHA-1 of the decoded image
(§3.1) is kept next to it, so later features can use it without decoding the vCard again.

Extension point for XEP-0398 (User Avatar to vCard-Based Avatars Conversion), for the future
PEP module:

* vCard → PEP: handle ``VCARD_UPDATED`` (``VcardUpdated(user, vcard, avatar, origin)``), fired
  after every stored change; ``avatar`` is the decoded PHOTO (or None). Changes the PEP
  module makes itself arrive with ``origin == "pep"`` so it can ignore its own echo.
* PEP → vCard: call ``module("vcard").set_photo(user, data, mime_type, origin="pep")`` when
  an XEP-0084 avatar is published (``data=None`` removes the PHOTO).
* Presence: ``await module("vcard").photo_hash(user)`` gives the stored hash ("" for no
  photo, None for no vCard), for a module that injects XEP-0153 hashes into presence the way
  ejabberd's mod_vcard_xupdate does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from blether import ns
from blether.core.hooks import Hook
from blether.core.iq import IqRequest, Target
from blether.core.module import XEP, Module, iq_handler
from blether.errors import StanzaError
from blether.jid import JID
from blether.xml.element import Element, serialize
from blether.xml.parser import POST_AUTH_C2S, ElementParsed, XMLStreamParser

STORE = "vcard"
KEY_VCARD = "vcard"
KEY_PHOTO = "photo"    # SHA-1 hex of the PHOTO's BINVAL; "" when the vCard has no photo


@dataclass(frozen=True, slots=True)
class Avatar:
    """The image in a vCard's PHOTO/BINVAL (XEP-0153 §3.1)."""

    sha1: str             # lower-case hex, as the ecosystem emits it (XEP-0153 §3.1)
    mime_type: str        # the TYPE hint, "" if absent
    data: bytes


@dataclass(slots=True)
class VcardUpdated:
    """An account's stored vCard changed; ``vcard`` None means it was removed."""

    user: JID
    vcard: Element | None
    avatar: Avatar | None
    origin: str          # "client" (an IQ set), "pep" (XEP-0398 conversion), "server"


VCARD_UPDATED: Hook[VcardUpdated] = Hook("vcard-updated")


class VcardOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_bytes: int = Field(65536, ge=1024, description="largest vCard stored, serialized")
    server_vcard: dict[str, str] = Field(
        default_factory=dict,
        description="simple vCard fields (FN, URL, DESC…) answered for the server's own JID")


def decode_photo(vcard: Element) -> Avatar | None:
    """The PHOTO's image, or None; raises StanzaError for BINVAL that is not base64."""
    photo = vcard.find("PHOTO", ns.VCARD)
    if photo is None:
        return None
    binval = photo.find_text("BINVAL", ns.VCARD)
    if not binval:
        return None
    # XEP-0153 §4.5: whitespace (line breaks every 76 characters) MUST be ignored.
    compact = "".join(binval.split())
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise StanzaError("bad-request", "PHOTO BINVAL is not valid base64") from None
    if not data:
        return None
    mime = (photo.find_text("TYPE", ns.VCARD) or "").strip()
    return Avatar(hashlib.sha1(data).hexdigest(), mime, data)   # SHA-1: XEP-0153 §3.1


def dump(el: Element) -> str:
    return serialize(el, "")


def load(text: str) -> Element:
    """Parse one stored element (written by `dump`) back into an Element."""
    parser = XMLStreamParser(POST_AUTH_C2S)
    header = (f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAMS}' "
              "version='1.0'>").encode()
    for event in parser.feed(header + text.encode()):
        if isinstance(event, ElementParsed):
            return event.element
    raise ValueError("stored vCard is not a complete element")


def _empty() -> Element:
    return Element("vCard", ns.VCARD)


class VcardModule(Module):
    name = "vcard"
    specs = (
        XEP(54, "1.3.0", "complete"),
        XEP(153, "1.1.1", "complete",
            "presence updates pass through; the server keeps the photo hash; XEP-0398 hook"),
    )
    host_features = (ns.VCARD,)
    account_features = (ns.VCARD,)
    Options = VcardOptions
    options: VcardOptions

    # -- XEP-0054 §3.1, §3.3: retrieval ---------------------------------------------------
    @iq_handler("get", ns.VCARD, Target.ACCOUNT)
    async def get_account(self, req: IqRequest) -> Element:
        self._check_payload(req.payload)
        stored = await self.ctx.services.storage.kv.get(str(req.to), STORE, KEY_VCARD)
        if stored is not None:
            return req.result(load(stored))
        if req.is_self:
            # §3.1: either item-not-found or an empty vCard; the empty vCard is what
            # ejabberd and Prosody's mod_vcard_legacy answer, and what clients handle best.
            return req.result(_empty())
        # §3.3 (1.3.0): same error as for a non-existent account, against harvesting.
        raise StanzaError("service-unavailable")

    @iq_handler("get", ns.VCARD, Target.HOST)
    async def get_host(self, req: IqRequest) -> Element:
        self._check_payload(req.payload)
        vcard = _empty()
        for field, value in self.options.server_vcard.items():
            vcard.append(Element(field.upper(), ns.VCARD, None, [value]))
        return req.result(vcard)

    # -- XEP-0054 §3.2: update -------------------------------------------------------------
    @iq_handler("set", ns.VCARD, Target.ACCOUNT)
    async def set_account(self, req: IqRequest) -> Element:
        if not req.is_self:
            raise StanzaError("forbidden", "only the account itself may change its vCard")
        self._check_payload(req.payload)
        await self.store(req.to, req.payload, origin="client")
        return req.result()

    @iq_handler("set", ns.VCARD, Target.HOST)
    async def set_host(self, req: IqRequest) -> Element:
        # The server's vCard comes from the configuration (module_options.vcard.server_vcard).
        raise StanzaError("forbidden", "the server's vCard is set in the configuration")

    # -- API for other modules (XEP-0398) -------------------------------------------------
    async def get_vcard(self, user: JID) -> Element | None:
        stored = await self.ctx.services.storage.kv.get(str(user.bare), STORE, KEY_VCARD)
        return None if stored is None else load(stored)

    async def photo_hash(self, user: JID) -> str | None:
        """SHA-1 of the stored photo, "" if the vCard has none, None if there is no vCard."""
        return await self.ctx.services.storage.kv.get(str(user.bare), STORE, KEY_PHOTO)

    async def store(self, user: JID, vcard: Element, origin: str = "server") -> Avatar | None:
        """Validate, store (or, for an empty vCard, remove) and announce an account's vCard."""
        text = dump(vcard)
        if len(text.encode()) > self.options.max_bytes:
            # Prosody/XEP-0060 answer too-large payloads with not-acceptable.
            raise StanzaError("not-acceptable",
                              f"the vCard is larger than {self.options.max_bytes} bytes")
        avatar = decode_photo(vcard)
        kv = self.ctx.services.storage.kv
        owner = str(user.bare)
        if not vcard.children:
            # An empty vCard is "no vCard": others get service-unavailable again (§3.3).
            await kv.delete(owner, STORE, KEY_VCARD)
            await kv.delete(owner, STORE, KEY_PHOTO)
            stored: Element | None = None
        else:
            await kv.set(owner, STORE, KEY_VCARD, text)
            await kv.set(owner, STORE, KEY_PHOTO, avatar.sha1 if avatar else "")
            stored = vcard
        await self.ctx.services.hooks.notify(
            VCARD_UPDATED, VcardUpdated(user.bare, stored, avatar, origin))
        return avatar

    async def set_photo(self, user: JID, data: bytes | None, mime_type: str = "",
                        origin: str = "pep") -> None:
        """Replace (or with None remove) the PHOTO of an account's vCard, keeping the rest."""
        current = await self.get_vcard(user) or _empty()
        children: list[Element | str] = [c for c in current.children
                                         if not (isinstance(c, Element) and c.name == "PHOTO")]
        if data is not None:
            photo = Element("PHOTO", ns.VCARD)
            if mime_type:
                photo.append(Element("TYPE", ns.VCARD, None, [mime_type]))
            photo.append(Element("BINVAL", ns.VCARD, None,
                                 [base64.b64encode(data).decode("ascii")]))
            children.append(photo)
        await self.store(user, Element("vCard", ns.VCARD, dict(current.attrs), children),
                         origin=origin)

    @staticmethod
    def _check_payload(payload: Element) -> None:
        if payload.name != "vCard":
            raise StanzaError("bad-request", "expected <vCard xmlns='vcard-temp'/>")
