"""Who must do what on s2s streams: encryption and authentication policy, as pure decisions.

The knobs mirror Prosody's (`s2s_require_encryption`, `s2s_secure_auth`,
`s2s_secure_domains`, `s2s_insecure_domains`):

* TLS is required on every s2s stream unless `require_encryption` is off or the peer domain is
  in `insecure_domains` (RFC 7590; SECURITY.md).
* A peer must prove its identity with a certificate valid for its domain (XEP-0178 SASL
  EXTERNAL, or dialback with such a certificate) when `secure_auth` is on or it is listed in
  `trusted_domains` — only meaningful while `verify_certificates` is on. Every other peer may
  fall back to Server Dialback (XEP-0220), over TLS unless it is listed as insecure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Policy:
    require_encryption: bool = True
    verify_certificates: bool = True
    secure_auth: bool = False
    trusted_domains: frozenset[str] = frozenset()
    insecure_domains: frozenset[str] = frozenset()

    def tls_required(self, peer: str | None) -> bool:
        return self.require_encryption and peer not in self.insecure_domains

    def cert_required(self, peer: str | None) -> bool:
        if not self.verify_certificates or peer in self.insecure_domains:
            return False
        return self.secure_auth or peer in self.trusted_domains

    def request_client_cert(self, claimed_peer: str | None, direct_tls: bool) -> bool:
        """Ask an inbound peer for its certificate in the TLS handshake?

        With STARTTLS the peer's claimed domain is known from its first stream header; with
        direct TLS it is not, so only a server-wide `secure_auth` asks everyone.
        """
        if not self.verify_certificates:
            return False
        if direct_tls or claimed_peer is None:
            return self.secure_auth
        return self.cert_required(claimed_peer)

    def dialback_refusal(self, peer: str, secure: bool, cert_valid: bool) -> str | None:
        """Why dialback for `peer` is not acceptable (a stanza error condition), or None."""
        if not secure and self.tls_required(peer):
            return "policy-violation"       # XEP-0220 §2.4: TLS required before dialback
        if self.cert_required(peer) and not cert_valid:
            return "not-authorized"         # XEP-0220 §2.4: a valid certificate is required
        return None
