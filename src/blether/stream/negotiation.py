"""c2s stream negotiation (RFC 6120 §5 STARTTLS, §6 SASL, §7 binding; XEP-0440 CB types).

Pure helpers: which features to offer at each stage, and how to read negotiation elements.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from enum import Enum

from blether import ns
from blether.errors import SASLFailure
from blether.xml.element import Element


class Stage(Enum):
    START = "start"            # before TLS (if TLS is required)
    AUTH = "auth"              # TLS done (or not required), SASL next
    BIND = "bind"              # authenticated, resource binding next
    BOUND = "bound"            # session established: stanzas flow


def starttls_feature(required: bool) -> Element:
    el = Element("starttls", ns.TLS)
    if required:
        el.append(Element("required", ns.TLS))
    return el


def mechanisms_feature(names: list[str]) -> Element:
    mechs = Element("mechanisms", ns.SASL)
    for name in names:
        mechs.append(Element("mechanism", ns.SASL, None, [name]))
    return mechs


def channel_binding_feature(types: list[str]) -> Element:
    """XEP-0440: tell clients which channel-binding types this server supports."""
    el = Element("sasl-channel-binding", ns.SASL_CB)
    for t in types:
        el.append(Element("channel-binding", ns.SASL_CB, {"type": t}))
    return el


def bind_features() -> list[Element]:
    session = Element("session", ns.SESSION)
    session.append(Element("optional", ns.SESSION))
    return [Element("bind", ns.BIND), session]


def decode_sasl_payload(el: Element) -> bytes:
    """RFC 6120 §6.4.2: base64 payload; '=' is the empty response; nothing means none."""
    text = el.text.strip()
    if text == "" or text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SASLFailure("incorrect-encoding") from None


def sasl_element(name: str, data: bytes | None) -> Element:
    el = Element(name, ns.SASL)
    if data is not None:
        el.children.append(base64.b64encode(data).decode() if data else "=")
    return el


def generate_resource() -> str:
    return secrets.token_hex(8)
