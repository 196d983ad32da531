"""Registry of bound sessions by bare and full JID (RFC 6120 §7.7, resource conflicts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from blether.core.session import Session
from blether.errors import StanzaError
from blether.jid import JID


class SessionRegistry:
    def __init__(self, max_per_user: int = 10,
                 conflict: Literal["kick_old", "refuse"] = "kick_old") -> None:
        self._by_bare: dict[JID, dict[str, Session]] = {}
        self.max_per_user = max_per_user
        self.conflict = conflict

    def check_bind(self, jid: JID) -> Session | None:
        """Decide whether `jid` may be bound. Returns the old session to replace, if any.

        Raises StanzaError(conflict) or (resource-constraint) per the configured policy.
        """
        existing = self._by_bare.get(jid.bare, {})
        assert jid.resource is not None
        old = existing.get(jid.resource)
        if old is not None:
            if self.conflict == "refuse":
                raise StanzaError("conflict", "Resource already in use")
            return old
        if len(existing) >= self.max_per_user:
            raise StanzaError("resource-constraint", "Too many sessions for this account")
        return None

    def add(self, session: Session) -> None:
        resource = session.jid.resource
        assert resource is not None
        self._by_bare.setdefault(session.bare, {})[resource] = session

    def remove(self, session: Session) -> bool:
        by_res = self._by_bare.get(session.bare)
        if not by_res:
            return False
        resource = session.jid.resource
        assert resource is not None
        if by_res.get(resource) is not session:
            return False
        del by_res[resource]
        if not by_res:
            del self._by_bare[session.bare]
        return True

    def get(self, full: JID) -> Session | None:
        by_res = self._by_bare.get(full.bare)
        if by_res is None or full.resource is None:
            return None
        return by_res.get(full.resource)

    def get_resource(self, bare: JID, resource: str) -> Session | None:
        """The session bound to `resource` (prepared) of the account `bare`: `get` without
        building the full JID (the router's path for every stanza to a full JID)."""
        by_res = self._by_bare.get(bare)
        return None if by_res is None else by_res.get(resource)

    def resources(self, bare: JID) -> list[Session]:
        by_res = self._by_bare.get(bare)
        return list(by_res.values()) if by_res else []

    def available(self, bare: JID) -> list[Session]:
        by_res = self._by_bare.get(bare)
        return [s for s in by_res.values() if s.available] if by_res else []

    def is_online(self, bare: JID) -> bool:
        return bare in self._by_bare

    def __iter__(self) -> Iterator[Session]:
        for by_res in list(self._by_bare.values()):
            yield from list(by_res.values())

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_bare.values())
