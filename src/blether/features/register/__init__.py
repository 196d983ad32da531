"""XEP-0077: In-Band Registration — registering before login, changing the password, removing
the account.

* §3.1 registration happens before SASL (the core's ``PRE_AUTH_IQ`` hook) and only when
  ``allow_registration`` is on (off by default, SECURITY.md), over TLS (§9; Prosody answers
  policy-violation "Encryption is required" otherwise), at most one per IP per
  ``min_seconds_between_registrations_per_ip`` (SECURITY.md; ``ERR(wait, policy-violation)``
  as Prosody's mod_register_limits). Removed names are tombstoned (``accounts.py``).
  The stream feature (§7) is offered only when registration is possible.
* §3.1 an authenticated get answers ``<registered/>`` with the username (§3.1 "SHOULD
  contain the registration information currently on file"; the password is never echoed).
* §3.3 password change: ``<username/>`` must be the account's own (bad-request otherwise,
  as Prosody); an empty password is refused and the old one kept (§3.3 MUST).
* §3.2 ``<remove/>``: the result goes out first, then every trace is purged and every
  session of the account ends with the ``not-authorized`` stream error.
* §5 the fields are offered both as legacy elements and as a ``jabber:x:data`` form; a
  submitted form takes precedence (§6).
* Errors never echo the submitted payload (§3.3: "SHOULD NOT return the original XML",
  applied to every request here since all of them carry a password).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from blether import ns
from blether.core import events
from blether.core.iq import IqRequest, Target
from blether.core.module import XEP, Module, ModuleContext, hook, iq_handler
from blether.errors import StanzaError
from blether.features.admin import dataforms
from blether.features.register.accounts import Accounts
from blether.features.register.throttle import RegistrationThrottle
from blether.jid import JID, JIDError
from blether.stanza import error_reply, iq_result
from blether.storage import AccountExists, AccountNotFound
from blether.xml.element import Element

INSTRUCTIONS = "Choose a username and password for use with this service."
REGISTERED_INSTRUCTIONS = "You are registered. Send a new password to change it, or " \
                          "<remove/> to delete your account."


class RegisterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_registration: bool = False
    allow_password_change_only: bool = Field(
        False, description="only password changes in-band: no registration, no removal")
    min_seconds_between_registrations_per_ip: float = Field(600.0, ge=0)
    throttle_exempt_ips: list[str] = Field(
        default_factory=list, description="addresses/networks never throttled "
                                          "(Prosody exempts 127.0.0.1 and ::1)")
    require_encryption: bool = True
    tombstone_days: float = Field(30.0, ge=0, description="0 disables tombstones")

    @model_validator(mode="after")
    def _consistent(self) -> RegisterOptions:
        if self.allow_registration and self.allow_password_change_only:
            raise ValueError("allow_registration and allow_password_change_only contradict")
        return self


def _without_payload(stanza: Element) -> Element:
    return Element(stanza.name, stanza.xmlns, dict(stanza.attrs))


def _fields(query: Element) -> dict[str, str]:
    """username/password from a submitted form (§6 precedence) or the legacy elements."""
    form = dataforms.find(query)
    if form is not None and form.attrs.get("type") == "submit":
        vals = dataforms.values(form)
        return {k: (v[0] if v else "") for k, v in vals.items() if k != "FORM_TYPE"}
    return {c.name: c.text for c in query.elements() if c.xmlns == ns.REGISTER}


def registration_form() -> Element:
    return Element("query", ns.REGISTER, None, [
        Element("instructions", ns.REGISTER, None, [INSTRUCTIONS]),
        Element("username", ns.REGISTER), Element("password", ns.REGISTER),
        dataforms.build("form", [
            dataforms.hidden_form_type(ns.REGISTER),
            dataforms.Field("username", "text-single", "Username", required=True),
            dataforms.Field("password", "text-private", "Password", required=True),
        ], title="Account registration", instructions=INSTRUCTIONS),
    ])


class RegisterModule(Module):
    name = "register"
    specs = (XEP(77, "2.4", "complete", "registration off by default; no CAPTCHA"),)
    host_features = (ns.REGISTER,)
    Options = RegisterOptions
    options: RegisterOptions

    def __init__(self, ctx: ModuleContext, options: RegisterOptions) -> None:
        super().__init__(ctx, options)
        self.accounts = Accounts(ctx.services, options.tombstone_days)
        self.throttle = RegistrationThrottle(
            self.options.min_seconds_between_registrations_per_ip,
            self.options.throttle_exempt_ips)

    # -- §7 stream feature, §3.1 before authentication ------------------------------------
    @hook(events.COLLECT_FEATURES)
    async def stream_feature(self, ev: events.StreamFeatures) -> None:
        if not ev.authenticated and self.options.allow_registration and (
                ev.secure or not self.options.require_encryption):
            ev.features.append(Element("register", ns.REGISTER_FEATURE))

    @hook(events.PRE_AUTH_IQ)
    async def pre_auth_iq(self, ev: events.PreAuthIq) -> bool:
        payload = ev.stanza.elements()
        if len(payload) != 1 or payload[0].xmlns != ns.REGISTER \
                or ev.stanza.attrs.get("type") not in ("get", "set"):
            return False   # not ours: the core answers as it always did
        try:
            reply = await self._pre_auth(ev, payload[0])
        except StanzaError as exc:
            reply = error_reply(_without_payload(ev.stanza), exc)
        ev.reply(reply)
        return True

    async def _pre_auth(self, ev: events.PreAuthIq, query: Element) -> Element:
        if not self.options.allow_registration:
            raise StanzaError("service-unavailable")   # §3.1 MUST when IBR is unsupported
        if self.options.require_encryption and not ev.secure:
            raise StanzaError("policy-violation", "Encryption is required")
        if query.name != "query":
            raise StanzaError("bad-request")
        if ev.stanza.attrs["type"] == "get":
            return iq_result(ev.stanza, registration_form())
        if query.find("remove", ns.REGISTER) is not None:
            # §3.2 table: unexpected-request when the entity is not registered/logged in.
            raise StanzaError("unexpected-request", "log in before removing an account")
        user = self._new_user(_fields(query), ev.domain)
        if await self.accounts.tombstoned(user):
            raise StanzaError("conflict", "this username was in use recently")
        wait = self.throttle.acquire(ev.ip)
        if wait > 0:
            raise StanzaError("policy-violation", f"too many registrations from your "
                              f"address; try again in {int(wait) + 1} s", type="wait")
        try:
            if await self.ctx.services.storage.accounts.exists(str(user)):
                raise StanzaError("conflict", "this username is taken")
            await self.accounts.create(user, _fields(query)["password"], "in-band")
        except AccountExists:
            self.throttle.release(ev.ip)
            raise StanzaError("conflict", "this username is taken") from None
        except BaseException:
            self.throttle.release(ev.ip)
            raise
        self.ctx.log.info("registered %s in-band from %s", user, ev.ip)
        return iq_result(ev.stanza)

    @staticmethod
    def _new_user(fields: dict[str, str], domain: str) -> JID:
        username, password = fields.get("username", "").strip(), fields.get("password", "")
        if not username or not password:
            # §3.1: missing (or empty) information MUST give not-acceptable.
            raise StanzaError("not-acceptable", "a username and a password are required")
        try:
            return JID.from_parts(username, domain, None)
        except JIDError:
            # Prosody: not-acceptable "The requested username is invalid".
            raise StanzaError("not-acceptable", "the requested username is invalid") from None

    # -- after authentication ---------------------------------------------------------------
    @iq_handler("get", ns.REGISTER, Target.HOST)
    async def get_host(self, req: IqRequest) -> Element:
        return await self._get(req)

    @iq_handler("get", ns.REGISTER, Target.ACCOUNT)
    async def get_account(self, req: IqRequest) -> Element:
        return await self._get(req)

    @iq_handler("set", ns.REGISTER, Target.HOST)
    async def set_host(self, req: IqRequest) -> Element:
        return await self._set(req)

    @iq_handler("set", ns.REGISTER, Target.ACCOUNT)
    async def set_account(self, req: IqRequest) -> Element:
        return await self._set(req)

    def _account_of(self, req: IqRequest) -> JID:
        """The registered account the request is about, or the error for a stranger."""
        sender = req.sender.bare
        if sender.domain not in self.ctx.hosts or sender.local is None:
            # No registration for remote entities (ejabberd's access_from default).
            raise StanzaError("service-unavailable")
        if req.to.local is not None and req.to != sender:
            raise StanzaError("forbidden", "this is not your account")
        if req.to.local is None and req.to.domain != sender.domain:
            raise StanzaError("service-unavailable")
        return sender

    async def _get(self, req: IqRequest) -> Element:
        user = self._account_of(req)
        return req.result(Element("query", ns.REGISTER, None, [
            Element("instructions", ns.REGISTER, None, [REGISTERED_INSTRUCTIONS]),
            Element("registered", ns.REGISTER),
            Element("username", ns.REGISTER, None, [user.local or ""]),
            Element("password", ns.REGISTER),
        ]))

    async def _set(self, req: IqRequest) -> Element:
        try:
            user = self._account_of(req)
            if req.payload.name != "query":
                raise StanzaError("bad-request")
            if req.payload.find("remove", ns.REGISTER) is not None:
                return await self._remove(req, user)
            return await self._change_password(req, user)
        except StanzaError as exc:
            return error_reply(_without_payload(req.stanza), exc)

    async def _remove(self, req: IqRequest, user: JID) -> Element:
        if len(req.payload.elements()) != 1:
            raise StanzaError("bad-request", "<remove/> must be the only child")  # §3.2
        if self.options.allow_password_change_only:
            raise StanzaError("not-allowed", "accounts cannot be removed in-band here")
        await self.accounts.remove(user, "in-band")
        self.ctx.log.info("account %s removed in-band", user)
        # The reply is queued by the router as soon as this returns; the task that closes
        # the streams starts on a later loop turn, so the result is written first (§3.2).
        self.ctx.spawn(self.accounts.close_sessions(user, "account removed"), "close")
        return req.result()

    async def _change_password(self, req: IqRequest, user: JID) -> Element:
        fields = _fields(req.payload)
        username, password = fields.get("username", "").strip(), fields.get("password", "")
        if not username:
            raise StanzaError("bad-request", "the username is required")   # §3.3 table
        if username not in (user.local, str(user)):
            raise StanzaError("bad-request", "you can only change your own password")
        if not password:
            raise StanzaError("bad-request", "empty password; the old one is kept")  # §3.3
        try:
            await self.ctx.services.auth.set_password(str(user), password)
        except AccountNotFound:
            raise StanzaError("registration-required") from None
        self.ctx.log.info("password changed in-band for %s", user)
        return req.result()

    # -- used by the admin commands (XEP-0133) ------------------------------------------
    async def create_account(self, user: JID, password: str) -> None:
        await self.accounts.create(user, password, "admin")

    async def remove_account(self, user: JID) -> None:
        await self.accounts.remove(user, "admin")
        await self.accounts.close_sessions(user, "account removed by an administrator")
