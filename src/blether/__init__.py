"""Blether: an XMPP server (RFC 6120, RFC 6121, RFC 7622 and the XEPs it declares)."""

__version__ = "0.1.0"
