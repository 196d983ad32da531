"""SASL server mechanisms (RFC 6120 §6; RFC 5802 SCRAM; RFC 5929 bindings; RFC 4616 PLAIN).

Full exchanges run against `scramp.ScramClient` (an independent client implementation) with
credentials made by `make_credentials_sync`, looked up from a dict as storage would. Where
scramp cannot say something a real client may say (an authzid, a forged header), the client
messages are computed here by hand from RFC 5802 §3.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Awaitable, Callable

import pytest
import scramp

from blether.core.auth import make_credentials_sync
from blether.errors import SASLFailure
from blether.storage.api import ScramCredentials
from blether.stream.sasl import (
    PlainServerSession,
    SaslStep,
    ScramServerSession,
    mechanism_names,
)

DOMAIN = "localhost"
PASSWORD = "pencil"
SECRET = b"s" * 32
END_POINT = hashlib.sha256(b"the server certificate").digest()
UNIQUE = b"\x01finished-message\x02"
BINDINGS = {"tls-server-end-point": END_POINT, "tls-unique": UNIQUE}

_CREDS: dict[tuple[str, str], ScramCredentials] = {}


def _credentials() -> dict[tuple[str, str], ScramCredentials]:
    if not _CREDS:  # PBKDF2 once for the whole module
        for user in ("juliet", "romeo"):
            for cred in make_credentials_sync(PASSWORD):
                _CREDS[(f"{user}@{DOMAIN}", cred.mechanism)] = cred
    return _CREDS


Lookup = Callable[[str, str], Awaitable[ScramCredentials | None]]


def lookup_from(table: dict[tuple[str, str], ScramCredentials],
                calls: list[tuple[str, str]] | None = None) -> Lookup:
    async def lookup(user: str, mech: str) -> ScramCredentials | None:
        if calls is not None:
            calls.append((user, mech))
        return table.get((user, mech))

    return lookup


def server(mech: str, bindings: dict[str, bytes] | None = None) -> ScramServerSession:
    return ScramServerSession(mech, DOMAIN, lookup_from(_credentials()),
                              BINDINGS if bindings is None else bindings, SECRET)


async def expect_failure(step: Awaitable[SaslStep], condition: str) -> SASLFailure:
    with pytest.raises(SASLFailure) as info:
        await step
    assert info.value.condition == condition, info.value
    return info.value


async def scramp_exchange(mech: str, user: str, password: str,
                          cb: tuple[str, bytes] | None = None,
                          bindings: dict[str, bytes] | None = None) -> SaslStep:
    client = scramp.ScramClient([mech], user, password, channel_binding=cb)
    srv = server(mech, bindings)
    first = await srv.start(client.get_client_first().encode())
    assert first.challenge is not None and not first.success
    client.set_server_first(first.challenge.decode())
    final = await srv.step(client.get_client_final().encode())
    assert final.success and final.data is not None
    client.set_server_final(final.data.decode())  # verifies the server's signature
    return final


# -- a hand-made RFC 5802 client, for what scramp cannot send -----------------------------

def _hash(mech: str) -> str:
    return "sha256" if "SHA-256" in mech else "sha1"


def _hmac(name: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, name).digest()


def client_final(mech: str, password: str, server_first: str, gs2_header: str,
                 client_first_bare: str, cb_data: bytes = b"") -> str:
    """RFC 5802 §3: the client-final-message, channel binding = gs2 header + cb data."""
    name = _hash(mech)
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(name, password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = _hmac(name, salted, b"Client Key")
    stored_key = hashlib.new(name, client_key).digest()
    cbind = base64.b64encode(gs2_header.encode() + cb_data).decode()
    without_proof = f"c={cbind},r={attrs['r']}"
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = _hmac(name, stored_key, auth_message)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={base64.b64encode(proof).decode()}"


async def manual_exchange(mech: str, gs2_header: str, user: str = "juliet",
                          password: str = PASSWORD, cb_data: bytes = b"") -> SaslStep:
    bare = f"n={user},r=fyko+d2lbbFgONRv9qkxdawL"
    srv = server(mech)
    first = await srv.start((gs2_header + bare).encode())
    assert first.challenge is not None
    return await srv.step(client_final(mech, password, first.challenge.decode(), gs2_header,
                                       bare, cb_data).encode())


# -- SCRAM --------------------------------------------------------------------------------

@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
async def test_full_exchange(mech: str) -> None:
    final = await scramp_exchange(mech, "juliet", PASSWORD)
    assert final.username == "juliet"


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"])
@pytest.mark.parametrize("cb_type", ["tls-server-end-point", "tls-unique"])
async def test_full_exchange_with_channel_binding(mech: str, cb_type: str) -> None:
    final = await scramp_exchange(mech, "romeo", PASSWORD, (cb_type, BINDINGS[cb_type]))
    assert final.username == "romeo"


async def test_hand_made_client_agrees_with_the_server() -> None:
    # Guards the helper the authzid tests below rely on.
    final = await manual_exchange("SCRAM-SHA-256", "n,,")
    assert final.success and final.username == "juliet"
    final = await manual_exchange("SCRAM-SHA-1-PLUS", "p=tls-unique,,", cb_data=UNIQUE)
    assert final.success


@pytest.mark.parametrize("cb_type", ["tls-server-end-point", "tls-unique"])
async def test_channel_binding_of_another_channel_fails(cb_type: str) -> None:
    # The MITM case: the client's TLS channel is not the one the server sees.
    client = scramp.ScramClient(["SCRAM-SHA-256-PLUS"], "juliet", PASSWORD,
                                channel_binding=(cb_type, b"some other channel"))
    srv = server("SCRAM-SHA-256-PLUS")
    first = await srv.start(client.get_client_first().encode())
    assert first.challenge is not None
    client.set_server_first(first.challenge.decode())
    await expect_failure(srv.step(client.get_client_final().encode()), "not-authorized")


async def test_username_is_prepared() -> None:
    # RFC 7622 §3.3: the localpart is case-mapped; the account is juliet@localhost.
    final = await scramp_exchange("SCRAM-SHA-256", "Juliet", PASSWORD)
    assert final.username == "juliet"


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
async def test_wrong_password_fails_at_the_proof(mech: str) -> None:
    client = scramp.ScramClient([mech], "juliet", "wrong")
    srv = server(mech)
    first = await srv.start(client.get_client_first().encode())
    assert first.challenge is not None
    client.set_server_first(first.challenge.decode())
    await expect_failure(srv.step(client.get_client_final().encode()), "not-authorized")


def _server_first_attrs(challenge: bytes) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in challenge.decode().split(","))


async def first_attrs(user: str, mech: str = "SCRAM-SHA-256") -> dict[str, str]:
    """server-first of an exchange for `user`, which then fails even with a real password."""
    client = scramp.ScramClient([mech], user, PASSWORD)
    srv = server(mech)
    first = await srv.start(client.get_client_first().encode())
    assert first.challenge is not None
    client.set_server_first(first.challenge.decode())
    if (f"{user}@{DOMAIN}", mech.removesuffix("-PLUS")) not in _credentials():
        await expect_failure(srv.step(client.get_client_final().encode()), "not-authorized")
    return _server_first_attrs(first.challenge)


async def test_unknown_user_fails_only_at_the_proof_with_a_stable_salt() -> None:
    ghost1, ghost2, other = (await first_attrs("nobody"), await first_attrs("nobody"),
                             await first_attrs("somebody"))
    # Stable per user (asking twice reveals nothing), different between users.
    assert ghost1["s"] == ghost2["s"]
    assert ghost1["s"] != other["s"]
    assert ghost1["r"] != ghost2["r"]  # but a fresh nonce every time


async def test_unknown_user_salt_has_the_shape_of_a_real_one() -> None:
    real, ghost = await first_attrs("juliet"), await first_attrs("nobody")
    assert len(base64.b64decode(ghost["s"])) == len(base64.b64decode(real["s"]))
    assert ghost["i"] == real["i"]


async def test_unknown_user_salts_differ_per_hash_like_real_ones() -> None:
    real = {(await first_attrs("juliet", m))["s"] for m in ("SCRAM-SHA-1", "SCRAM-SHA-256")}
    assert len(real) == 2
    ghost = {(await first_attrs("nobody", m))["s"] for m in ("SCRAM-SHA-1", "SCRAM-SHA-256")}
    assert len(ghost) == 2


async def test_credentials_are_looked_up_for_the_hash_of_the_mechanism() -> None:
    calls: list[tuple[str, str]] = []
    srv = ScramServerSession("SCRAM-SHA-1-PLUS", DOMAIN, lookup_from(_credentials(), calls),
                             BINDINGS, SECRET)
    await srv.start(b"p=tls-unique,,n=romeo,r=abc")
    assert calls == [("romeo@localhost", "SCRAM-SHA-1")]


async def test_y_flag_when_bindings_are_offered_is_a_downgrade() -> None:
    # RFC 5802 §6: 'y' = "I support binding but think you do not"; we offered -PLUS.
    await expect_failure(server("SCRAM-SHA-256").start(b"y,,n=juliet,r=abc"),
                         "not-authorized")


async def test_y_flag_without_bindings_is_fine() -> None:
    # No TLS binding available (e.g. the server is behind a TLS-terminating proxy).
    client = scramp.ScramClient(["SCRAM-SHA-256"], "juliet", PASSWORD,
                                channel_binding=("tls-unique", b"x"))  # → 'y' header
    first_msg = client.get_client_first()
    assert first_msg.startswith("y,,")
    srv = server("SCRAM-SHA-256", bindings={})
    first = await srv.start(first_msg.encode())
    assert first.challenge is not None
    client.set_server_first(first.challenge.decode())
    final = await srv.step(client.get_client_final().encode())
    assert final.success


@pytest.mark.parametrize("authzid", ["juliet@localhost", "juliet"])
async def test_authzid_equal_to_the_user_is_accepted(authzid: str) -> None:
    # RFC 5802 §7: c= carries the whole gs2 header, authzid included.
    final = await manual_exchange("SCRAM-SHA-256", f"n,a={authzid},")
    assert final.success and final.username == "juliet"


async def test_channel_binding_field_must_repeat_the_gs2_header_sent() -> None:
    bare = "n=juliet,r=abc"
    srv = server("SCRAM-SHA-256")
    first = await srv.start(("n,a=juliet@localhost," + bare).encode())
    assert first.challenge is not None
    # c= claims a header without the authzid: not what the client sent.
    tampered = client_final("SCRAM-SHA-256", PASSWORD, first.challenge.decode(), "n,,", bare)
    await expect_failure(srv.step(tampered.encode()), "not-authorized")


@pytest.mark.parametrize("authzid", ["romeo@localhost", "romeo", "juliet@example.org",
                                     "juliet@localhost/balcony"])
async def test_authzid_of_someone_else_is_refused(authzid: str) -> None:
    await expect_failure(server("SCRAM-SHA-256").start(
        f"n,a={authzid},n=juliet,r=abc".encode()), "invalid-authzid")


@pytest.mark.parametrize(("mech", "message"), [
    ("SCRAM-SHA-256", b""),
    ("SCRAM-SHA-256", b"n,,"),
    ("SCRAM-SHA-256", b"garbage"),
    ("SCRAM-SHA-256", b"x,,n=juliet,r=abc"),                 # unknown gs2 flag
    ("SCRAM-SHA-256", b",,n=juliet,r=abc"),                  # empty gs2 flag
    ("SCRAM-SHA-256", b"n,,u=juliet,r=abc"),                 # no n=
    ("SCRAM-SHA-256", b"n,,n=jul=ZZiet,r=abc"),              # bad saslname escape
    ("SCRAM-SHA-256", b"n,,n=juliet,x=abc"),                 # no nonce
    ("SCRAM-SHA-256", b"n,,n=\xff\xfe,r=abc"),               # not UTF-8
    ("SCRAM-SHA-256", b"n,b=juliet,n=juliet,r=abc"),         # authzid without a=
    ("SCRAM-SHA-256", b"p=tls-unique,,n=juliet,r=abc"),      # binding on a non-PLUS mech
    ("SCRAM-SHA-256-PLUS", b"n,,n=juliet,r=abc"),            # -PLUS without binding
    ("SCRAM-SHA-256-PLUS", b"y,,n=juliet,r=abc"),
    ("SCRAM-SHA-256-PLUS", b"p=tls-exporter,,n=juliet,r=abc"),  # a type we do not offer
])
async def test_malformed_client_first(mech: str, message: bytes) -> None:
    await expect_failure(server(mech).start(message), "malformed-request")


async def test_response_before_start_is_malformed() -> None:
    await expect_failure(server("SCRAM-SHA-256").step(b"c=biws,r=abc,p=xyz"),
                         "malformed-request")


@pytest.mark.parametrize("final", [b"", b"garbage", b"\xff\xfe"])
async def test_syntactically_bad_client_final_is_malformed(final: bytes) -> None:
    # RFC 6120 §6.5.8: data that violates the mechanism's syntax is malformed-request.
    srv = server("SCRAM-SHA-256")
    await srv.start(b"n,,n=juliet,r=abc")
    await expect_failure(srv.step(final), "malformed-request")


async def test_client_final_with_another_nonce_is_not_authorized() -> None:
    srv = server("SCRAM-SHA-256")
    await srv.start(b"n,,n=juliet,r=abc")
    await expect_failure(srv.step(b"c=biws,r=WRONGNONCE,p=AAAA"), "not-authorized")


async def test_replayed_client_final_fails_on_a_new_exchange() -> None:
    # A captured client-final is bound to the server nonce of its own exchange.
    bare = "n=juliet,r=fixedclientnonce"
    srv1 = server("SCRAM-SHA-256")
    first = await srv1.start(("n,," + bare).encode())
    assert first.challenge is not None
    captured = client_final("SCRAM-SHA-256", PASSWORD, first.challenge.decode(), "n,,", bare)
    assert (await srv1.step(captured.encode())).success
    srv2 = server("SCRAM-SHA-256")
    second = await srv2.start(("n,," + bare).encode())
    assert second.challenge != first.challenge  # a fresh server nonce
    await expect_failure(srv2.step(captured.encode()), "not-authorized")


async def test_gs2_header_swapped_in_the_final_message_fails() -> None:
    # Client says "n" first, then claims a binding in c=: the header must match exactly.
    bare = "n=juliet,r=abc"
    srv = server("SCRAM-SHA-256")
    first = await srv.start(("n,," + bare).encode())
    assert first.challenge is not None
    forged = client_final("SCRAM-SHA-256", PASSWORD, first.challenge.decode(),
                          "p=tls-unique,,", bare, UNIQUE)
    await expect_failure(srv.step(forged.encode()), "not-authorized")


# -- PLAIN --------------------------------------------------------------------------------

def plain_server(checked: list[tuple[str, str]] | None = None) -> PlainServerSession:
    async def check(user: str, password: str) -> bool:
        if checked is not None:
            checked.append((user, password))
        return user in ("juliet@localhost", "romeo@localhost") and password == PASSWORD

    return PlainServerSession(DOMAIN, check)


@pytest.mark.parametrize("authzid", [b"", b"juliet", b"juliet@localhost"])
async def test_plain_success(authzid: bytes) -> None:
    checked: list[tuple[str, str]] = []
    step = await plain_server(checked).start(authzid + b"\0Juliet\0" + PASSWORD.encode())
    assert step.success and step.username == "juliet" and step.data is None
    assert checked == [("juliet@localhost", PASSWORD)]


async def test_plain_wrong_password() -> None:
    await expect_failure(plain_server().start(b"\0juliet\0nope"), "not-authorized")


async def test_plain_unknown_user() -> None:
    await expect_failure(plain_server().start(b"\0nobody\0" + PASSWORD.encode()),
                         "not-authorized")


async def test_plain_empty_password_is_never_checked() -> None:
    checked: list[tuple[str, str]] = []
    await expect_failure(plain_server(checked).start(b"\0juliet\0"), "not-authorized")
    assert checked == []


@pytest.mark.parametrize("authzid", [b"romeo@localhost", b"romeo", b"juliet@example.org"])
async def test_plain_authzid_of_someone_else(authzid: bytes) -> None:
    # SECURITY.md point 7: authenticate as juliet, open a session as romeo → refused,
    # even with juliet's correct password.
    checked: list[tuple[str, str]] = []
    await expect_failure(plain_server(checked).start(authzid + b"\0juliet\0" +
                                                     PASSWORD.encode()), "invalid-authzid")
    assert checked == []


@pytest.mark.parametrize("message", [b"juliet\0pencil", b"a\0b\0c\0d", b"\0\xff\0pencil",
                                     b"nonul"])
async def test_plain_malformed(message: bytes) -> None:
    await expect_failure(plain_server().start(message), "malformed-request")


async def test_plain_bad_username_is_not_authorized() -> None:
    await expect_failure(plain_server().start(b"\0jul iet@\0pencil"), "not-authorized")


async def test_plain_empty_initial_response_asks_for_the_credentials() -> None:
    # RFC 6120 §6.4.2: no initial response → an empty challenge, then the response.
    srv = plain_server()
    step = await srv.start(b"")
    assert step.challenge == b"" and not step.success
    step = await srv.step(b"\0juliet\0" + PASSWORD.encode())
    assert step.success and step.username == "juliet"


# -- which mechanisms are offered -------------------------------------------------------------

def test_mechanisms_with_tls_and_bindings() -> None:
    assert mechanism_names(BINDINGS, secure=True, plain_allowed=False) == [
        "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


def test_no_plain_without_tls() -> None:
    names = mechanism_names({}, secure=False, plain_allowed=False)
    assert names == ["SCRAM-SHA-256", "SCRAM-SHA-1"]


def test_plain_without_tls_only_when_allowed() -> None:
    assert "PLAIN" in mechanism_names({}, secure=False, plain_allowed=True)


def test_no_plus_without_bindings() -> None:
    names = mechanism_names({}, secure=True, plain_allowed=False)
    assert not any(n.endswith("-PLUS") for n in names)
    assert "SCRAM-SHA-1" in names  # RFC 6120 §13.8 mandatory to implement


def test_never_weak_mechanisms() -> None:
    names = mechanism_names(BINDINGS, secure=True, plain_allowed=True)
    assert not {"DIGEST-MD5", "CRAM-MD5", "ANONYMOUS", "LOGIN"} & set(names)
