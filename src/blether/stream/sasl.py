"""SASL server mechanisms (RFC 6120 §6, RFC 5802 SCRAM, RFC 4616 PLAIN, RFC 5929 bindings).

SCRAM-SHA-256(-PLUS) and SCRAM-SHA-1(-PLUS) (keys from `scramp`); PLAIN only over TLS. The
credential lookup is async (storage), everything else is plain computation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from blether.errors import SASLFailure
from blether.jid import JIDError, prep_local
from blether.storage.api import ScramCredentials

CredentialLookup = Callable[[str, str], Awaitable[ScramCredentials | None]]
PasswordCheck = Callable[[str, str], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class SaslStep:
    """What to send: a challenge, or success (with additional data) for `username`."""

    challenge: bytes | None = None
    success: bool = False
    data: bytes | None = None
    username: str | None = None   # prepared localpart once authenticated


def _unescape_saslname(name: str) -> str:
    # RFC 5802 §5.1: ',' and '=' are sent as =2C and =3D; any other '=' is malformed.
    out = name.replace("=2C", ",").replace("=3D", "=")
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        raise SASLFailure("malformed-request", "bad escaping in username")
    return out


_HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
_SALT_BYTES = 32     # the length of the salts scramp's make_auth_info creates for real accounts


def _parse_attrs(message: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise SASLFailure("malformed-request", "bad SCRAM attribute")
        out.setdefault(part[0], part[2:])
    return out


class ScramServerSession:
    """One SCRAM exchange (RFC 5802, RFC 7677); `bindings` maps channel-binding type → data.

    Keys are derived with `scramp` (blether.core.auth), but the server side of the exchange is
    written here: scramp's server refuses any authzid, and then cannot check the `c=` field
    against the gs2 header a conformant client sent (RFC 5802 §7), so clients that send their
    own JID as authzid could never log in.
    """

    def __init__(self, mechanism: str, domain: str, lookup: CredentialLookup,
                 bindings: dict[str, bytes], secret: bytes) -> None:
        self.mechanism = mechanism
        self.hash_mech = mechanism.removesuffix("-PLUS")
        self.hash_name = _HASHES[self.hash_mech]
        self.plus = mechanism.endswith("-PLUS")
        self.domain = domain
        self.lookup = lookup
        self.bindings = bindings
        self.secret = secret
        self.started = False
        self._user: str | None = None
        self._creds: ScramCredentials | None = None
        self._cbind_input = b""
        self._nonce = ""
        self._auth_prefix = ""

    def _fake_credentials(self, user: str) -> ScramCredentials:
        # An unknown user gets stable fake values shaped like a real account's (salt length,
        # one salt per hash), so the exchange fails only at the proof and nothing in it tells
        # whether the account exists.
        seed = hmac.new(self.secret, f"{self.hash_mech}\0{user}@{self.domain}".encode(),
                        hashlib.sha512).digest()
        size = hashlib.new(self.hash_name).digest_size
        return ScramCredentials(self.hash_mech, seed[:_SALT_BYTES], 10000, seed[:size],
                                seed[-size:])

    async def start(self, initial: bytes) -> SaslStep:
        self.started = True
        try:
            client_first = initial.decode("utf-8")
        except UnicodeDecodeError:
            raise SASLFailure("malformed-request", "client-first is not UTF-8") from None
        parts = client_first.split(",", 2)
        if len(parts) != 3 or not parts[0]:
            raise SASLFailure("malformed-request", "bad client-first message")
        flag, authzid, bare = parts
        gs2_header = f"{flag},{authzid},"
        cb_data = b""
        if flag.startswith("p="):
            cb_type = flag[2:]
            if not self.plus:
                raise SASLFailure("malformed-request", "channel binding needs a -PLUS mechanism")
            if cb_type not in self.bindings:
                raise SASLFailure("malformed-request", "unsupported channel binding type")
            cb_data = self.bindings[cb_type]
        elif self.plus:
            raise SASLFailure("malformed-request", "-PLUS mechanisms need channel binding")
        elif flag == "y" and self.bindings:
            # RFC 5802 §6: the client thinks we lack binding support, but we offered -PLUS:
            # a downgrade attack may be under way.
            raise SASLFailure("not-authorized", "channel binding downgrade detected")
        elif flag not in ("n", "y"):
            raise SASLFailure("malformed-request", "bad gs2 flag")
        attrs = _parse_attrs(bare)
        if bare[:2] == "m=" or "n" not in attrs or "r" not in attrs or not attrs["r"]:
            raise SASLFailure("malformed-request", "bad client-first-message-bare")
        try:
            user = prep_local(_unescape_saslname(attrs["n"]))
        except JIDError:
            raise SASLFailure("not-authorized") from None
        if authzid:
            if not authzid.startswith("a="):
                raise SASLFailure("malformed-request", "bad authzid")
            if _unescape_saslname(authzid[2:]) not in (f"{user}@{self.domain}", user):
                raise SASLFailure("invalid-authzid")
        creds = await self.lookup(f"{user}@{self.domain}", self.hash_mech)
        self._user = user if creds is not None else None
        self._creds = creds if creds is not None else self._fake_credentials(user)
        self._cbind_input = gs2_header.encode() + cb_data
        self._nonce = attrs["r"] + secrets.token_urlsafe(24)
        salt = base64.b64encode(self._creds.salt).decode()
        server_first = f"r={self._nonce},s={salt},i={self._creds.iterations}"
        self._auth_prefix = f"{bare},{server_first},"
        return SaslStep(challenge=server_first.encode())

    async def step(self, response: bytes) -> SaslStep:
        creds = self._creds
        if creds is None:
            raise SASLFailure("malformed-request", "unexpected response")
        self._creds = None  # one final message per exchange: no replays
        try:
            client_final = response.decode("utf-8")
        except UnicodeDecodeError:
            raise SASLFailure("malformed-request", "client-final is not UTF-8") from None
        without_proof, sep, proof_b64 = client_final.rpartition(",p=")
        if not sep:
            raise SASLFailure("malformed-request", "missing proof")
        attrs = _parse_attrs(without_proof)
        if attrs.get("r") != self._nonce:
            raise SASLFailure("not-authorized", "nonce mismatch")
        try:
            cbind = base64.b64decode(attrs.get("c", ""), validate=True)
            proof = base64.b64decode(proof_b64, validate=True)
        except (binascii.Error, ValueError):
            raise SASLFailure("incorrect-encoding") from None
        if not hmac.compare_digest(cbind, self._cbind_input):
            raise SASLFailure("not-authorized", "channel binding mismatch")
        auth_message = (self._auth_prefix + without_proof).encode()
        signature = hmac.new(creds.stored_key, auth_message, self.hash_name).digest()
        if len(proof) != len(signature):
            raise SASLFailure("not-authorized")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        stored = hashlib.new(self.hash_name, client_key).digest()
        if not hmac.compare_digest(stored, creds.stored_key) or self._user is None:
            raise SASLFailure("not-authorized")
        server_signature = hmac.new(creds.server_key, auth_message, self.hash_name).digest()
        return SaslStep(success=True, data=b"v=" + base64.b64encode(server_signature),
                        username=self._user)


class PlainServerSession:
    """RFC 4616 PLAIN: authzid NUL authcid NUL passwd, offered only on encrypted streams."""

    def __init__(self, domain: str, check: PasswordCheck) -> None:
        self.domain = domain
        self.check = check

    async def start(self, initial: bytes) -> SaslStep:
        if not initial:
            return SaslStep(challenge=b"")
        parts = initial.split(b"\x00")
        if len(parts) != 3:
            raise SASLFailure("malformed-request", "PLAIN needs authzid\\0authcid\\0passwd")
        try:
            authzid, authcid, password = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            raise SASLFailure("malformed-request", "PLAIN message is not UTF-8") from None
        try:
            user = prep_local(authcid)
        except JIDError:
            raise SASLFailure("not-authorized") from None
        if authzid and authzid not in (f"{user}@{self.domain}", user):
            # SECURITY.md point 7: authenticating as one user must not open another's session.
            raise SASLFailure("invalid-authzid")
        if not password or not await self.check(f"{user}@{self.domain}", password):
            raise SASLFailure("not-authorized")
        return SaslStep(success=True, username=user)

    async def step(self, response: bytes) -> SaslStep:
        return await self.start(response)


SaslSession = ScramServerSession | PlainServerSession


def mechanism_names(bindings: dict[str, bytes], secure: bool, plain_allowed: bool) -> list[str]:
    """Mechanisms to offer, strongest first (SECURITY.md: no DIGEST-MD5; PLAIN over TLS)."""
    names = []
    if bindings:
        names += ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"]
    names += ["SCRAM-SHA-256", "SCRAM-SHA-1"]
    if secure or plain_allowed:
        names.append("PLAIN")
    return names
