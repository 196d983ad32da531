"""XEP-0133: Service Administration — the commands, each a node of the server's JID.

Implemented: add-user (§4.1), delete-user (§4.2), end-user-session (§4.5), change-user-password
(§4.7), get-registered-users-num (§4.13), get-online-users-num (§4.15), get-online-users-list
(§4.20, returned at once as §4.20 allows for a modest number of users) and announce (§4.23).
Account JIDs may be on any hosted domain (admins listed in `admins` are server-wide, like
Prosody's global admins).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blether import ns
from blether.core.iq import IqRequest
from blether.errors import StanzaError
from blether.features.admin import dataforms
from blether.features.admin.adhoc import Command, Completed, bad_payload
from blether.features.admin.dataforms import Field
from blether.jid import JID, JIDError
from blether.storage import AccountExists, AccountNotFound
from blether.xml.element import Element

if TYPE_CHECKING:
    from blether.core.services import Services

ADMIN = "http://jabber.org/protocol/admin"


def _form(title: str, instructions: str, *fields: Field) -> Element:
    return dataforms.build("form", [dataforms.hidden_form_type(ADMIN), *fields],
                           title=title, instructions=instructions)


def _result(*fields: Field) -> Element:
    return dataforms.build("result", [dataforms.hidden_form_type(ADMIN), *fields])


class AdminCommand(Command):
    def __init__(self, services: Services) -> None:
        self.s = services

    def account(self, text: str, *, full_ok: bool = False) -> JID:
        """A JID of an account on a hosted domain, or bad-payload."""
        try:
            jid = JID.parse(text.strip())
        except JIDError:
            raise bad_payload(f"{text!r} is not a valid JID") from None
        if jid.local is None or jid.domain not in self.s.hosts or (
                jid.resource is not None and not full_ok):
            raise bad_payload(f"{jid} is not an account of this server")
        return jid

    def accounts(self, values: dict[str, list[str]], var: str,
                 *, full_ok: bool = False) -> list[JID]:
        jids = [self.account(v, full_ok=full_ok) for v in values.get(var, []) if v.strip()]
        if not jids:
            raise bad_payload(f"'{var}' is required")
        return jids

    async def require_exists(self, jid: JID) -> None:
        if not await self.s.storage.accounts.exists(str(jid.bare)):
            raise StanzaError("item-not-found", f"no account {jid.bare}")


class AddUser(AdminCommand):
    node = f"{ADMIN}#add-user"
    name = "Add User"

    def form(self) -> Element:
        return _form("Adding a User", "Fill out this form to add a user.",
                     Field("accountjid", "jid-single", "The Jabber ID for the account to be "
                           "added", required=True),
                     Field("password", "text-private", "The password for this account",
                           required=True),
                     Field("password-verify", "text-private", "Retype password",
                           required=True))

    async def run(self, values: dict[str, list[str]], req: IqRequest) -> Completed:
        jid = self.account(dataforms.single(values, "accountjid"))
        password = (values.get("password") or [""])[0]
        if not password:
            raise bad_payload("a password is required")
        if "password-verify" in values and (values["password-verify"] or [""])[0] != password:
            raise bad_payload("the passwords do not match")
        try:
            await self.s.module("register").create_account(jid, password)
        except AccountExists:
            raise StanzaError("conflict", f"{jid} already exists") from None  # §5
        return Completed(notes=[("info", f"Account {jid} created")])


class DeleteUser(AdminCommand):
    node = f"{ADMIN}#delete-user"
    name = "Delete User"

    def form(self) -> Element:
        return _form("Deleting a User", "Fill out this form to delete a user.",
                     Field("accountjids", "jid-multi", "The Jabber ID(s) to delete",
                           required=True))

    async def run(self, values: dict[str, list[str]], req: IqRequest) -> Completed:
        jids = self.accounts(values, "accountjids")
        for jid in jids:          # all or nothing: check every account first
            await self.require_exists(jid)
        for jid in jids:
            # The same removal as XEP-0077 <remove/>: subscriptions cancelled, purge_user,
            # tombstone, sessions closed with not-authorized.
            await self.s.module("register").remove_account(jid)
        return Completed(notes=[("info", "Deleted " + ", ".join(map(str, jids)))])


class EndUserSession(AdminCommand):
    node = f"{ADMIN}#end-user-session"
    name = "End User Session"

    def form(self) -> Element:
        return _form("Ending a User Session", "Fill out this form to end a user's session.",
                     Field("accountjids", "jid-multi",
                           "The Jabber ID(s) for which to end sessions", required=True))

    async def run(self, values: dict[str, list[str]], req: IqRequest) -> Completed:
        ended = 0
        for jid in self.accounts(values, "accountjids", full_ok=True):
            # §4.5: a bare JID ends all of the user's sessions, a full JID only that one.
            if jid.resource is None:
                sessions = self.s.sessions.resources(jid)
            else:
                one = self.s.sessions.get(jid)
                sessions = [one] if one is not None else []
            for session in sessions:
                await session.close()
                ended += 1
        return Completed(notes=[("info", f"Ended {ended} session(s)")])


class ChangeUserPassword(AdminCommand):
    node = f"{ADMIN}#change-user-password"
    name = "Change User Password"

    def form(self) -> Element:
        return _form("Changing a User Password", "Fill out this form to change a user's "
                     "password.",
                     Field("accountjid", "jid-single", "The Jabber ID for this account",
                           required=True),
                     Field("password", "text-private", "The password for this account",
                           required=True))

    async def run(self, values: dict[str, list[str]], req: IqRequest) -> Completed:
        jid = self.account(dataforms.single(values, "accountjid"))
        password = (values.get("password") or [""])[0]
        if not password:
            raise bad_payload("a password is required")
        try:
            await self.s.auth.set_password(str(jid), password)
        except AccountNotFound:
            raise StanzaError("item-not-found", f"no account {jid}") from None
        return Completed(notes=[("info", f"Password changed for {jid}")])


class RegisteredUsersNum(AdminCommand):
    node = f"{ADMIN}#get-registered-users-num"
    name = "Get Number of Registered Users"

    async def run(self, values: dict[str, list[str]], req: IqRequest) -> Completed:
        count = await self.s.storage.accounts.count(req.to.domain)
        return Completed(_result(Field("registeredusersnum", "text-single",
                                       "The number of registered users", (str(count),))))


def _online(services: Services, domain: str) -> list[str]:
    return sorted({str(s.bare) for s in services.sessions if s.bare.domain == domain})


class OnlineUsersNum(AdminCommand):
    node = f"{ADMIN}#get-online-users-num"
    name = "Get Number of Online Users"

    async def run(self, values: dict[str, list[str]], req: IqRequest) -> Completed:
        count = len(_online(self.s, req.to.domain))
        return Completed(_result(Field("onlineusersnum", "text-single",
                                       "The number of online users", (str(count),))))


class OnlineUsersList(AdminCommand):
    node = f"{ADMIN}#get-online-users-list"
    name = "Get List of Online Users"

    async def run(self, values: dict[str, list[str]], req: IqRequest) -> Completed:
        users = tuple(_online(self.s, req.to.domain))
        return Completed(_result(Field("onlineuserjids", "jid-multi",
                                       "The list of all online users", users)))


class Announce(AdminCommand):
    node = f"{ADMIN}#announce"
    name = "Send Announcement to Online Users"

    def form(self) -> Element:
        return _form("Making an Announcement", "Fill out this form to make an announcement "
                     "to all active users of this service.",
                     Field("announcement", "text-multi", "Announcement", required=True))

    async def run(self, values: dict[str, list[str]], req: IqRequest) -> Completed:
        text = "\n".join(values.get("announcement", [])).strip()
        if not text:
            raise bad_payload("the announcement is empty")
        domain = req.to.domain
        sessions = [s for s in self.s.sessions if s.bare.domain == domain]
        # §4.23: to every session (ejabberd's announce_online does the same, per full JID,
        # so sessions that have not sent presence yet are reached too).
        for session in sessions:
            message = Element("message", ns.CLIENT,
                              {"from": domain, "to": str(session.jid), "type": "headline"},
                              [Element("body", ns.CLIENT, None, [text])])
            await self.s.router.route(message, session.jid, req.to)
        return Completed(notes=[("info", f"Announcement sent to {len(sessions)} session(s)")])


COMMANDS: tuple[type[AdminCommand], ...] = (
    AddUser, DeleteUser, EndUserSession, ChangeUserPassword, RegisteredUsersNum,
    OnlineUsersNum, OnlineUsersList, Announce,
)
