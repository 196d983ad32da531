"""Stanza helpers (RFC 6120 §8): kinds, replies and error replies built as new values."""

from __future__ import annotations

from blether import ns
from blether.errors import StanzaError
from blether.xml.element import Element, serialize

STANZA_NAMES = frozenset({"message", "presence", "iq"})
CONTENT_NAMESPACES = frozenset({ns.CLIENT, ns.SERVER, ns.COMPONENT})

PRESENCE_SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})


def is_stanza(el: Element) -> bool:
    return el.name in STANZA_NAMES and el.xmlns in CONTENT_NAMESPACES


def stanza_type(el: Element) -> str:
    """The effective 'type' (RFC 6120 §8.2.2: message defaults to normal, presence to available)."""
    t = el.attrs.get("type")
    if t:
        return t
    if el.name == "message":
        return "normal"
    if el.name == "presence":
        return "available"
    return ""


def iq_result(request: Element, *children: Element) -> Element:
    """An IQ result for `request`, addressed back to its sender (RFC 6120 §8.2.3)."""
    attrs: dict[str, str] = {"type": "result", "id": request.attrs.get("id", "")}
    frm = request.attrs.get("from")
    to = request.attrs.get("to")
    if frm:
        attrs["to"] = frm
    if to:
        attrs["from"] = to
    return Element("iq", request.xmlns, attrs, list(children))


ECHO_LIMIT = 8192  # bytes of the original payload an error reply may carry back


def error_reply(stanza: Element, error: StanzaError, *, from_: str | None = None) -> Element:
    """The error reply to `stanza` (RFC 6120 §8.3.1): same id, to/from swapped.

    The original payload is included (RFC 6120 §8.3.1 allows it, and clients use it to match
    the failure) unless it is large: bouncing a 200 KB message must not send 200 KB back.
    """
    attrs: dict[str, str] = {"type": "error"}
    sid = stanza.attrs.get("id")
    if sid is not None:
        attrs["id"] = sid
    frm = stanza.attrs.get("from")
    to = from_ if from_ is not None else stanza.attrs.get("to")
    if frm:
        attrs["to"] = frm
    if to:
        attrs["from"] = to
    payload = [c for c in stanza.children if isinstance(c, Element) and c.name != "error"]
    size = 0
    for child in payload:
        size += len(serialize(child, stanza.xmlns))
        if size > ECHO_LIMIT:
            payload = []
            break
    children: list[Element | str] = list(payload)
    children.append(error.to_element(stanza.xmlns))
    return Element(stanza.name, stanza.xmlns, attrs, children)


def can_bounce(stanza: Element) -> bool:
    """RFC 6120 §8.3.1: never reply to an error with an error; never answer an IQ result."""
    t = stanza.attrs.get("type")
    if t == "error":
        return False
    return not (stanza.name == "iq" and t == "result")
