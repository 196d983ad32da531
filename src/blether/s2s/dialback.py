"""Server Dialback (XEP-0220) with key generation per XEP-0185, sans-IO.

Keys: HMAC-SHA256(key=hex(SHA256(secret)), msg="Receiving Originating StreamID"), in hex
(XEP-0185 §3: the three values joined with a single space). Elements are built and read as
values; the transport writes them with the `db:` prefix declared on its stream header
(XEP-0220 §2: elements SHOULD be prefixed, some deployments accept only `db:`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from blether import ns
from blether.errors import StanzaError
from blether.jid import JIDError, prep_domain
from blether.xml.element import Element

DIALBACK = "jabber:server:dialback"
DIALBACK_FEATURES = "urn:xmpp:features:dialback"
PREFIXES = {DIALBACK: "db"}

RESULT_TYPES = frozenset({"valid", "invalid", "error"})


def generate_key(secret: bytes | str, receiving: str, originating: str, stream_id: str) -> str:
    """XEP-0185 §3: the dialback key for (receiving server, originating server, stream id)."""
    raw = secret.encode() if isinstance(secret, str) else secret
    hmac_key = hashlib.sha256(raw).hexdigest().encode()
    message = f"{receiving} {originating} {stream_id}".encode()
    return hmac.new(hmac_key, message, hashlib.sha256).hexdigest()


def check_key(secret: bytes | str, receiving: str, originating: str, stream_id: str,
              key: str) -> bool:
    """Constant-time comparison of a presented key with the one we would have generated."""
    expected = generate_key(secret, receiving, originating, stream_id)
    return hmac.compare_digest(expected.encode(), key.strip().lower().encode())


def feature() -> Element:
    """XEP-0220 §2.4.1: `<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>`."""
    return Element("dialback", DIALBACK_FEATURES, None, [Element("errors", DIALBACK_FEATURES)])


def _el(name: str, attrs: dict[str, str], key: str | None = None,
        error: StanzaError | None = None) -> Element:
    children: list[Element | str] = []
    if key is not None:
        children.append(key)
    if error is not None:
        # Implicitly in the stream's content namespace (XEP-0220 §2.4): built as jabber:client,
        # which the s2s serializer writes unqualified, so it inherits jabber:server.
        children.append(error.to_element(ns.CLIENT))
    return Element(name, DIALBACK, attrs, children)


def result_request(frm: str, to: str, key: str) -> Element:
    """Step 1: the initiating server's key for the domain pair (frm → to)."""
    return _el("result", {"from": frm, "to": to}, key)


def result_response(frm: str, to: str, rtype: str, error: StanzaError | None = None) -> Element:
    """Step 4: the receiving server's verdict (frm = target domain, to = sender domain)."""
    return _el("result", {"from": frm, "to": to, "type": rtype}, error=error)


def verify_request(frm: str, to: str, stream_id: str, key: str) -> Element:
    """Step 2: the receiving server asks the authoritative server about `key`."""
    return _el("verify", {"from": frm, "to": to, "id": stream_id}, key)


def verify_response(frm: str, to: str, stream_id: str, rtype: str,
                    error: StanzaError | None = None) -> Element:
    """Step 3: the authoritative server's answer, 'from'/'to' swapped, 'id' copied."""
    return _el("verify", {"from": frm, "to": to, "id": stream_id, "type": rtype}, error=error)


@dataclass(frozen=True, slots=True)
class DialbackElement:
    """A parsed <db:result/> or <db:verify/>, with prepared domains."""

    kind: str                 # "result" | "verify"
    frm: str
    to: str
    type: str | None          # None on requests
    stream_id: str | None     # verify only
    key: str                  # character data (requests)
    condition: str | None     # stanza error condition when type='error'


class DialbackError(ValueError):
    """An element that is not usable dialback (missing or malformed addresses)."""


def parse(el: Element) -> DialbackElement:
    if el.xmlns != DIALBACK or el.name not in ("result", "verify"):
        raise DialbackError(f"not a dialback element: <{el.name}/>")
    try:
        frm = prep_domain(el.attrs["from"])
        to = prep_domain(el.attrs["to"])
    except KeyError:
        raise DialbackError("dialback elements need 'from' and 'to'") from None
    except JIDError as exc:
        raise DialbackError(f"bad domain: {exc}") from None
    rtype = el.attrs.get("type")
    if rtype is not None and rtype not in RESULT_TYPES:
        raise DialbackError(f"unknown dialback type {rtype!r}")
    stream_id = el.attrs.get("id")
    if el.name == "verify" and not stream_id:
        raise DialbackError("<db:verify/> needs an 'id'")
    condition = None
    if rtype == "error":
        err = el.find("error")
        if err is not None:
            condition = next((c.name for c in err.elements()
                              if c.xmlns == ns.STANZA_ERRORS and c.name != "text"), None)
    return DialbackElement(el.name, frm, to, rtype, stream_id, el.text.strip(), condition)
