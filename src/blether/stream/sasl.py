"""SASL server mechanisms (RFC 6120 §6, RFC 5802 SCRAM, RFC 4616 PLAIN, RFC 5929 bindings).

SCRAM-SHA-256(-PLUS) and SCRAM-SHA-1(-PLUS) through `scramp`; PLAIN only over TLS. The
credential lookup is async (storage), everything else is plain computation.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import scramp

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


class ScramServerSession:
    """One SCRAM exchange. `bindings` maps channel-binding type → data for this TLS channel."""

    def __init__(self, mechanism: str, domain: str, lookup: CredentialLookup,
                 bindings: dict[str, bytes], secret: bytes) -> None:
        self.mechanism = mechanism
        self.hash_mech = mechanism.removesuffix("-PLUS")
        self.plus = mechanism.endswith("-PLUS")
        self.domain = domain
        self.lookup = lookup
        self.bindings = bindings
        self.secret = secret
        self._server: scramp.core.ScramServer | None = None
        self._user: str | None = None
        self._known = False

    def _fake_credentials(self, user: str) -> tuple[bytes, bytes, bytes, int]:
        # An unknown user gets a stable fake salt so the exchange looks like a real one and
        # fails only at the proof: the server does not reveal which accounts exist.
        seed = hmac.new(self.secret, f"{user}@{self.domain}".encode(), hashlib.sha256).digest()
        return seed[:16], seed, seed, 10000

    async def start(self, initial: bytes) -> SaslStep:
        try:
            client_first = initial.decode("utf-8")
        except UnicodeDecodeError:
            raise SASLFailure("malformed-request", "client-first is not UTF-8") from None
        parts = client_first.split(",", 3)
        if len(parts) < 4 or not parts[0]:
            raise SASLFailure("malformed-request", "bad client-first message")
        flag, authzid = parts[0], parts[1]
        channel_binding: tuple[str, bytes] | None = None
        if flag.startswith("p="):
            cb_type = flag[2:]
            if not self.plus:
                raise SASLFailure("malformed-request", "channel binding needs a -PLUS mechanism")
            if cb_type not in self.bindings:
                raise SASLFailure("malformed-request", f"unsupported channel binding {cb_type}")
            channel_binding = (cb_type, self.bindings[cb_type])
        elif self.plus:
            raise SASLFailure("malformed-request", "-PLUS mechanisms need channel binding")
        elif flag == "y" and self.bindings:
            # RFC 5802 §6: the client thinks we lack binding support, but we offered -PLUS:
            # a downgrade attack may be under way.
            raise SASLFailure("not-authorized", "channel binding downgrade detected")
        elif flag not in ("n", "y"):
            raise SASLFailure("malformed-request", "bad gs2 flag")
        bare = parts[2]
        if not bare.startswith("n="):
            raise SASLFailure("malformed-request", "missing username")
        try:
            user = prep_local(_unescape_saslname(bare[2:]))
        except JIDError:
            raise SASLFailure("not-authorized") from None
        if authzid:
            if not authzid.startswith("a="):
                raise SASLFailure("malformed-request", "bad authzid")
            if authzid[2:] not in (f"{user}@{self.domain}", user):
                raise SASLFailure("invalid-authzid")
            # scramp rejects an authzid; it is equal to the user, so drop it for the library.
            client_first = f"{flag},,{parts[2]},{parts[3]}"
        creds = await self.lookup(f"{user}@{self.domain}", self.hash_mech)
        self._known = creds is not None
        info = ((creds.salt, creds.stored_key, creds.server_key, creds.iterations)
                if creds is not None else self._fake_credentials(user))
        mech = scramp.ScramMechanism(self.mechanism)
        try:
            server = mech.make_server(lambda _u: info, channel_binding=channel_binding)
            server.set_client_first(client_first)
            server_first = server.get_server_first()
        except scramp.ScramException as exc:
            raise SASLFailure("malformed-request", str(exc)) from None
        self._server = server
        self._user = user
        return SaslStep(challenge=server_first.encode())

    async def step(self, response: bytes) -> SaslStep:
        if self._server is None or self._user is None:
            raise SASLFailure("malformed-request", "unexpected response")
        try:
            self._server.set_client_final(response.decode("utf-8"))
            server_final = self._server.get_server_final()
        except (scramp.ScramException, UnicodeDecodeError):
            raise SASLFailure("not-authorized") from None
        if not self._known:
            raise SASLFailure("not-authorized")
        return SaslStep(success=True, data=server_final.encode(), username=self._user)


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
