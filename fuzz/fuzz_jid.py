"""Fuzz target: RFC 7622 JID parsing and preparation (`blether.jid`).

SECURITY.md point 8: preparation must be idempotent and applied once (the Spotify
nodeprep account takeover). Hypothesis checks these properties on generated text in
tests/unit/test_jid_properties.py; this target lets coverage guidance search the PRECIS and
IDNA code paths for inputs generators do not think of. Properties on every input:

* `JID.parse` raises nothing but `JIDError`;
* a parsed JID's text parses back to an equal JID with the same text (idempotence);
* `bare` and `with_resource` round-trip; each prepared part is a fixed point of its
  preparation function (`prep_local`, `prep_domain`, `prep_resource`).

Input: UTF-8 (undecodable bytes replaced), the text given to `JID.parse`.
"""

from __future__ import annotations

from _common import fuzz_main, instrumented

with instrumented():
    from blether.jid import JID, JIDError, prep_domain, prep_local, prep_resource


def check(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        jid = JID.parse(text)
    except JIDError:
        return
    again = JID.parse(str(jid))
    assert again == jid and str(again) == str(jid), f"not idempotent: {text!r} -> {jid!s}"
    assert prep_domain(jid.domain) == jid.domain
    if jid.local is not None:
        assert prep_local(jid.local) == jid.local
    if jid.resource is not None:
        assert prep_resource(jid.resource) == jid.resource
        assert jid.bare.with_resource(jid.resource) == jid
    assert JID.parse(str(jid.bare)) == jid.bare


if __name__ == "__main__":
    fuzz_main(check)
