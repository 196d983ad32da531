"""SCRAM-SHA-1 client side (RFC 5802 §3, §5) for the load generator.

A client may keep the SaltedPassword for a (password, salt, iteration count) it has seen
(RFC 5802 §5.1 allows caching it; Conversations and Gajim do). The generator does, process-wide,
so that PBKDF2 runs once per distinct salt and never dominates the generator's CPU while it
measures a server's login cost. Checked against `scramp`'s server in tests/bench.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_salted_cache: dict[tuple[str, bytes, int], bytes] = {}


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha1).digest()


def _saslname(user: str) -> str:
    # RFC 5802 §5.1: ',' and '=' in the username are escaped.
    return user.replace("=", "=3D").replace(",", "=2C")


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    key = (password, salt, iterations)
    salted = _salted_cache.get(key)
    if salted is None:
        salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt, iterations)
        _salted_cache[key] = salted
    return salted


class ScramError(Exception):
    pass


class ScramSha1Client:
    """One exchange: `first()` → server-first → `final(...)` → server-final → `verify(...)`."""

    mechanism = "SCRAM-SHA-1"

    def __init__(self, user: str, password: str, nonce: str | None = None) -> None:
        self.user = user
        self.password = password
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self.client_first_bare = f"n={_saslname(user)},r={self.nonce}"
        self._server_signature = b""

    def first(self) -> bytes:
        # gs2 header "n,,": this client does not do channel binding (RFC 5802 §6).
        return f"n,,{self.client_first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        nonce, salt, iterations = fields.get("r", ""), fields.get("s"), fields.get("i")
        if not nonce.startswith(self.nonce) or salt is None or iterations is None:
            raise ScramError(f"bad server-first-message {text!r}")
        salted = salted_password(self.password, base64.b64decode(salt), int(iterations))
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha1(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self.client_first_bare},{text},{without_proof}".encode()
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        text = server_final.decode()
        if not text.startswith("v=") or not hmac.compare_digest(
                base64.b64decode(text[2:]), self._server_signature):
            raise ScramError("the server's signature does not verify")
