"""Stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3) as exceptions and elements.

Features raise :class:`StanzaError`; the core turns it into the error reply. Nothing outside
this module builds error XML by hand.
"""

from __future__ import annotations

import re

from blether import ns
from blether.xml.element import Element

# RFC 6120 §8.3.3: the error type each condition is usually sent with.
DEFAULT_ERROR_TYPE: dict[str, str] = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}

_NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str | None) -> str | None:
    """Error texts may quote client input: replace characters XML 1.0 cannot carry."""
    return None if text is None else _NOT_XML_CHARS.sub("\ufffd", text)


STREAM_CONDITIONS = frozenset(
    {
        "bad-format", "bad-namespace-prefix", "conflict", "connection-timeout", "host-gone",
        "host-unknown", "improper-addressing", "internal-server-error", "invalid-from",
        "invalid-namespace", "invalid-xml", "not-authorized", "not-well-formed",
        "policy-violation", "remote-connection-failed", "reset", "resource-constraint",
        "restricted-xml", "see-other-host", "system-shutdown", "undefined-condition",
        "unsupported-encoding", "unsupported-feature", "unsupported-stanza-type",
        "unsupported-version",
    }
)


class StreamError(Exception):
    """A condition that ends the whole stream (RFC 6120 §4.9)."""

    def __init__(self, condition: str, text: str | None = None,
                 app: Element | None = None) -> None:
        if condition not in STREAM_CONDITIONS:
            raise ValueError(f"unknown stream error condition {condition!r}")
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = xml_safe(text)
        self.app = app

    def to_element(self) -> Element:
        err = Element("error", ns.STREAMS)
        err.append(Element(self.condition, ns.STREAM_ERRORS))
        if self.text:
            err.append(Element("text", ns.STREAM_ERRORS, {"xml:lang": "en"}, [self.text]))
        if self.app is not None:
            err.append(self.app)
        return err


class StanzaError(Exception):
    """A stanza-level error (RFC 6120 §8.3) raised by handlers and turned into a reply."""

    def __init__(self, condition: str, text: str | None = None, *,
                 type: str | None = None, app: Element | None = None,
                 by: str | None = None) -> None:
        if condition not in DEFAULT_ERROR_TYPE:
            raise ValueError(f"unknown stanza error condition {condition!r}")
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = xml_safe(text)
        self.type = type or DEFAULT_ERROR_TYPE[condition]
        self.app = app
        self.by = by

    def to_element(self, xmlns: str = ns.CLIENT) -> Element:
        attrs = {"type": self.type}
        if self.by:
            attrs["by"] = self.by
        err = Element("error", xmlns, attrs)
        err.append(Element(self.condition, ns.STANZA_ERRORS))
        if self.text:
            err.append(Element("text", ns.STANZA_ERRORS, {"xml:lang": "en"}, [self.text]))
        if self.app is not None:
            err.append(self.app)
        return err


class SASLFailure(Exception):
    """A SASL failure condition (RFC 6120 §6.5)."""

    CONDITIONS = frozenset(
        {
            "aborted", "account-disabled", "credentials-expired", "encryption-required",
            "incorrect-encoding", "invalid-authzid", "invalid-mechanism", "malformed-request",
            "mechanism-too-weak", "not-authorized", "temporary-auth-failure",
        }
    )

    def __init__(self, condition: str, text: str | None = None) -> None:
        if condition not in self.CONDITIONS:
            raise ValueError(f"unknown SASL condition {condition!r}")
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = xml_safe(text)

    def to_element(self) -> Element:
        el = Element("failure", ns.SASL)
        el.append(Element(self.condition, ns.SASL))
        if self.text:
            el.append(Element("text", ns.SASL, {"xml:lang": "en"}, [self.text]))
        return el
