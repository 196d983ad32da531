#!/usr/bin/env python3
"""A mail-drop gateway component: XMPP messages to Maildir files, outbox mail to XMPP messages.

XMPP messages become mail files in a Maildir, and mail files dropped in its outbox become XMPP
messages.

An external component (XEP-0114) built on slixmpp's ComponentXMPP, using the classic gateway
addressing: the e-mail address `alice@example.org` is the JID
`alice%example.org@gateway.localhost` (the last `%` of the local part stands for the `@`).

* XMPP → mail: a chat or normal message to `alice%example.org@gateway.localhost` is written as
  an RFC 5322 message into `MAILDIR/new/` (written in `MAILDIR/tmp/` first, then moved, so a
  mail reader never sees half a file): `From:` the sender's bare JID, `To: alice@example.org`,
  `Subject:` the message's subject (or "XMPP message from …"), `Date:`, `Message-ID:`, and
  the body as text/plain. Whatever delivers Maildir mail (a cron job, an MTA's pickup) can take
  it from there.
* mail → XMPP: every second the gateway looks in `MAILDIR/outbox/new/`. Each mail found there is
  sent as a chat message to the bare JID in its `To:` header, from the gateway address of its
  `From:` header (`carol@example.org` → `carol%example.org@gateway.localhost`), with its
  subject and its text/plain body, then moved to `MAILDIR/outbox/cur/` (flag `S`). A mail that
  cannot be sent (no usable `To:`/`From:`, no text part) is moved there too, flagged `T`, and
  the reason is logged.

    python examples/maildrop_gateway.py --jid gateway.localhost --secret s3cret \\
        --server 127.0.0.1 --port 5347 --maildir ./maildrop

The server must know the component (blether.toml):

    [module_options.component]
    components = { "gateway.localhost" = "s3cret" }

Exit status: 0 after Ctrl-C/SIGTERM, 1 if the server refused the component or the connection
was lost, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import logging
import mailbox
import os
import signal
import sys
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid
from pathlib import Path
from typing import Any

from slixmpp.componentxmpp import ComponentXMPP
from slixmpp.jid import JID


def mail_address(local: str | None) -> str | None:
    """`alice%example.org` → `alice@example.org` (None if it is not of that form)."""
    if not local:
        return None
    user, sep, domain = local.rpartition("%")
    if not sep or not user or not domain:
        return None
    return f"{user}@{domain}"


def gateway_jid(address: str, gateway: str) -> str:
    """`carol@example.org` → `carol%example.org@<gateway>`; ValueError if not an address."""
    user, sep, domain = address.rpartition("@")
    if not sep or not user or not domain:
        raise ValueError(f"{address!r} is not an e-mail address")
    return str(JID(f"{user}%{domain}@{gateway}"))   # InvalidJID (a ValueError) if unusable


def to_mail(sender: str, recipient: str, subject: str, body: str, gateway: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = recipient
    mail["Subject"] = subject or f"XMPP message from {sender}"
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = make_msgid(domain=gateway)
    mail.set_content(body)
    return mail


def from_mail(data: bytes, gateway: str) -> tuple[str, str, str, str]:
    """(XMPP recipient, XMPP sender, subject, body) of a mail; ValueError if unusable."""
    mail = email.message_from_bytes(data, policy=email.policy.default)
    to = [addr for _name, addr in getaddresses([str(mail.get("To", ""))]) if addr]
    frm = [addr for _name, addr in getaddresses([str(mail.get("From", ""))]) if addr]
    if len(to) != 1 or len(frm) != 1:
        raise ValueError("needs exactly one To: and one From: address")
    recipient = str(JID(to[0]).bare)
    sender = gateway_jid(frm[0], gateway)
    part = mail.get_body(preferencelist=("plain",))
    if part is None:
        raise ValueError("no text/plain part")
    return recipient, sender, str(mail.get("Subject", "")), part.get_content().rstrip("\n")


class MaildropGateway(ComponentXMPP):
    def __init__(self, jid: str, secret: str, server: str, port: int, maildir: Path,
                 poll: float) -> None:
        super().__init__(jid, secret, server, port, fix_error_ns=True)
        self.inbox = mailbox.Maildir(maildir, factory=None, create=True)
        self.outbox = maildir / "outbox"
        mailbox.Maildir(self.outbox, factory=None, create=True)   # outbox/{tmp,new,cur}
        self.poll = poll
        self.refused: str | None = None
        self.poller: asyncio.Task[None] | None = None
        self.register_plugin("xep_0030")
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("stream_error", self.on_stream_error)
        self.add_event_handler("disconnected", self.on_disconnected)

    async def on_start(self, _event: Any) -> None:
        await self.plugin["xep_0030"].add_identity(category="gateway", itype="smtp",
                                                   name="Mail drop", jid=self.boundjid)
        self.poller = asyncio.get_running_loop().create_task(self.watch_outbox())
        logging.info("connected as component %s", self.boundjid)

    def on_disconnected(self, _event: Any) -> None:
        if self.poller is not None:
            self.poller.cancel()

    def on_stream_error(self, error: Any) -> None:
        self.refused = error["condition"]
        logging.error("the server closed the stream: %s %s", error["condition"],
                      error["text"] or "")

    # -- XMPP → mail ---------------------------------------------------------------------
    def on_message(self, msg: Any) -> None:
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return   # errors (never answered), chat states
        recipient = mail_address(msg["to"].user)
        if recipient is None:
            self.refuse(msg, "jid-malformed", "write to user%domain@" + self.boundjid.bare)
            return
        sender = str(msg["from"].bare)
        mail = to_mail(sender, recipient, msg["subject"], msg["body"], self.boundjid.bare)
        try:
            key = self.inbox.add(mail)    # tmp/ then new/: never seen half-written
        except OSError as exc:
            logging.error("cannot write to the Maildir: %s", exc)
            self.refuse(msg, "internal-server-error", "the mail could not be stored")
            return
        logging.info("mail from %s to %s stored as %s", sender, recipient, key)

    def refuse(self, msg: Any, condition: str, text: str) -> None:
        reply = msg.reply(clear=False)
        reply["id"] = msg["id"]     # an error carries the id of the stanza it answers
        reply["type"] = "error"
        reply["error"]["condition"] = condition
        reply["error"]["type"] = "cancel" if condition == "jid-malformed" else "wait"
        reply["error"]["text"] = text
        reply.send()

    # -- mail → XMPP ---------------------------------------------------------------------
    async def watch_outbox(self) -> None:
        while True:
            self.send_outbox()
            await asyncio.sleep(self.poll)

    def send_outbox(self) -> None:
        new, cur = self.outbox / "new", self.outbox / "cur"
        for path in sorted(p for p in new.iterdir() if not p.name.startswith(".")):
            flag = "S"
            try:
                recipient, sender, subject, body = from_mail(path.read_bytes(),
                                                             self.boundjid.bare)
            except (ValueError, LookupError, OSError) as exc:   # InvalidJID is a ValueError
                logging.warning("outbox mail %s not sent: %s", path.name, exc)
                flag = "T"
            else:
                self.make_message(mto=recipient, mfrom=sender, mbody=body,
                                  msubject=subject or None, mtype="chat").send()
                logging.info("outbox mail %s sent from %s to %s", path.name, sender, recipient)
            # Maildir: processed mail lives in cur/ with an info suffix ":2,<flags>".
            name = path.name.split(":", 1)[0]
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, cur / f"{name}:2,{flag}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jid", default="gateway.localhost",
                   help="the component's domain (default gateway.localhost)")
    p.add_argument("--secret", help="the shared secret (default: $COMPONENT_SECRET)")
    p.add_argument("--server", default="127.0.0.1", help="server address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5347, help="component port (default 5347)")
    p.add_argument("--maildir", type=Path, required=True,
                   help="Maildir for mail from XMPP; its outbox/ holds mail to send")
    p.add_argument("--poll", type=float, default=1.0,
                   help="seconds between looks at the outbox (default 1)")
    p.add_argument("--verbose", "-v", action="store_true")
    return p.parse_args(argv)


async def run(args: argparse.Namespace, secret: str) -> int:
    try:
        gateway = MaildropGateway(args.jid, secret, args.server, args.port, args.maildir,
                                  args.poll)
    except OSError as exc:
        print(f"maildrop_gateway: cannot use the Maildir {args.maildir}: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        interrupted = True
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    gateway.add_event_handler("disconnected", lambda _e: stop.set())
    gateway.add_event_handler("connection_failed", lambda _e: stop.set())
    gateway.connect()
    await stop.wait()
    if gateway.poller is not None:
        gateway.poller.cancel()
    if gateway.is_connected():
        await gateway.disconnect()
    return 0 if interrupted and gateway.refused is None else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    secret = args.secret or os.environ.get("COMPONENT_SECRET")
    if not secret:
        print("maildrop_gateway: --secret (or $COMPONENT_SECRET) is required", file=sys.stderr)
        return 2
    if args.poll <= 0:
        print("maildrop_gateway: --poll must be positive", file=sys.stderr)
        return 2
    return asyncio.run(run(args, secret))


if __name__ == "__main__":
    sys.exit(main())
