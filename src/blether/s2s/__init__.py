"""Server-to-server federation (RFC 6120 §§4-6 for `jabber:server` streams, XEP-0220 Server
Dialback with XEP-0185 keys, XEP-0178 SASL EXTERNAL, XEP-0368 direct TLS).

Sans-IO pieces: `dialback` (keys, elements), `resolver.order_srv`/`parse_override`, `certs`
(identity checks), `stream` (framing and per-stanza address checks), `policy` (who must do
what). Drivers: `incoming` (the receiving side of a stream), `outgoing` (one stream per
(local, remote) domain pair), `manager` (listeners, the table of streams, dialback verify
plumbing). The feature module `blether.features.s2s` wires it to the router.
"""
