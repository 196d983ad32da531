"""The s2s encryption/authentication policy, as a table (Prosody's s2s_* options)."""

from __future__ import annotations

import pytest

from blether.s2s.policy import Policy

DEFAULT = Policy()
SECURE = Policy(secure_auth=True, insecure_domains=frozenset({"lab.example"}))
LISTED = Policy(trusted_domains=frozenset({"bank.example"}),
                insecure_domains=frozenset({"lab.example"}))
NO_VERIFY = Policy(verify_certificates=False, secure_auth=True)
PLAIN = Policy(require_encryption=False)


@pytest.mark.parametrize(("policy", "peer", "secure", "cert_valid", "refusal"), [
    (DEFAULT, "a.example", True, False, None),              # dialback over TLS
    (DEFAULT, "a.example", False, False, "policy-violation"),   # not without TLS
    (DEFAULT, "a.example", True, True, None),
    (PLAIN, "a.example", False, False, None),               # encryption not required
    (LISTED, "lab.example", False, False, None),            # listed as insecure
    (LISTED, "bank.example", True, False, "not-authorized"),   # must show a certificate
    (LISTED, "bank.example", True, True, None),
    (LISTED, "other.example", True, False, None),
    (SECURE, "a.example", True, False, "not-authorized"),
    (SECURE, "a.example", True, True, None),
    (SECURE, "lab.example", False, False, None),
    (NO_VERIFY, "a.example", True, False, None),            # nothing is checked, nothing needed
])
def test_dialback_refusal(policy: Policy, peer: str, secure: bool, cert_valid: bool,
                          refusal: str | None) -> None:
    assert policy.dialback_refusal(peer, secure, cert_valid) == refusal


@pytest.mark.parametrize(("policy", "claimed", "direct", "asked"), [
    (DEFAULT, "a.example", False, False),   # nobody needs one: never ask (see certs.py)
    (LISTED, "bank.example", False, True),
    (LISTED, "other.example", False, False),
    (LISTED, None, True, False),            # direct TLS: the peer is not known yet
    (SECURE, None, True, True),
    (SECURE, "lab.example", False, False),
    (NO_VERIFY, "a.example", False, False),
])
def test_request_client_cert(policy: Policy, claimed: str | None, direct: bool,
                             asked: bool) -> None:
    assert policy.request_client_cert(claimed, direct) is asked


def test_tls_required() -> None:
    assert DEFAULT.tls_required("a.example")
    assert not LISTED.tls_required("lab.example")
    assert not PLAIN.tls_required("a.example")
