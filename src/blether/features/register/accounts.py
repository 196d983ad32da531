"""Creating and removing accounts from inside the server (in-band, or by an admin command).

Removal follows XEP-0077 §3.2: every presence subscription of the account is cancelled (the
account "sends" unsubscribe/unsubscribed to each contact, as Prosody does on user deletion),
every trace is purged with ``Storage.purge_user`` (the same call as ``blether user delete``),
and the account's sessions are closed with the ``not-authorized`` stream error.

Removed usernames are remembered as tombstones (SECURITY.md: 30 days, like Prosody's
mod_tombstones) so a deleted name cannot be re-registered in-band by someone else at once.
Tombstones live in the key-value store under the domain itself as owner, so purging the
account does not erase them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from blether import ns
from blether.core.events import ACCOUNT_CREATED, ACCOUNT_REMOVED, AccountEvent
from blether.errors import StreamError
from blether.jid import JID
from blether.xml.element import Element

if TYPE_CHECKING:
    from blether.core.services import Services

TOMBSTONES = "register:tombstones"


# The account lifecycle hooks live in the core, so any feature can observe them.
__all__ = ["ACCOUNT_CREATED", "ACCOUNT_REMOVED", "AccountEvent", "Accounts"]


class Accounts:
    def __init__(self, services: Services, tombstone_days: float) -> None:
        self.s = services
        self.tombstone_seconds = tombstone_days * 86400

    async def create(self, user: JID, password: str, origin: str) -> None:
        """Create the account; raises storage.AccountExists if it exists."""
        await self.s.auth.create_account(str(user), password)
        await self.s.hooks.notify(ACCOUNT_CREATED, AccountEvent(user, origin))

    async def tombstoned(self, user: JID, now: float | None = None) -> bool:
        if self.tombstone_seconds <= 0:
            return False
        stamp = await self.s.storage.kv.get(user.domain, TOMBSTONES, str(user))
        if stamp is None:
            return False
        now = time.time() if now is None else now
        if now - float(stamp) < self.tombstone_seconds:
            return True
        await self.s.storage.kv.delete(user.domain, TOMBSTONES, str(user))
        return False

    async def remove(self, user: JID, origin: str) -> None:
        """Cancel subscriptions, purge storage, leave a tombstone. Sessions stay open: the
        caller closes them (after sending its reply) with `close_sessions`."""
        user = user.bare
        roster = self.s.storage.roster
        items, _version = await roster.get_all(str(user))
        pending = {contact for contact, _xml in await roster.get_pending_in(str(user))}
        for item in items:
            # RFC 6121 §2.5.2, as if the account removed each item: unsubscribed ends (or
            # declines) the contact's subscription to us — after §3.2.2's unavailable from
            # our available resources — and unsubscribe ends ours to them.
            has_from = item.subscription in ("from", "both")
            if has_from:
                for session in self.s.sessions.available(user):
                    await self._presence(session.jid, item.jid, "unavailable")
            if has_from or item.jid in pending:
                await self._presence(user, item.jid, "unsubscribed")
            if item.subscription in ("to", "both") or item.ask:
                await self._presence(user, item.jid, "unsubscribe")
        for contact in sorted(pending - {item.jid for item in items}):
            await self._presence(user, contact, "unsubscribed")
        await self.s.storage.purge_user(str(user))
        if self.tombstone_seconds > 0:
            await self.s.storage.kv.set(user.domain, TOMBSTONES, str(user), str(time.time()))
        await self.s.hooks.notify(ACCOUNT_REMOVED, AccountEvent(user, origin))

    async def close_sessions(self, user: JID, text: str) -> None:
        for session in self.s.sessions.resources(user.bare):
            await session.close(StreamError("not-authorized", text))

    async def _presence(self, sender: JID, contact_text: str, ptype: str) -> None:
        try:
            contact = JID.parse(contact_text)
        except ValueError:
            return
        stanza = Element("presence", ns.CLIENT,
                         {"from": str(sender), "to": str(contact), "type": ptype})
        await self.s.router.route_from_account(stanza, contact, sender)
