#!/usr/bin/env python3
"""A presence-aware notifier: send a message to a user only if they are there to read it.

The XMPP version of the classic "CVS watch" notification script: read the message from
standard input, log in, request the roster, send initial presence (which makes the server
probe our contacts and report who is online), accept subscription requests (answer
`subscribed` and subscribe back, so the two become mutual contacts), and wait for the
recipient's presence. If the recipient is available and not in "do not disturb", the message
is sent; otherwise nothing is sent and the exit status says so.

    echo "build 42 failed" | python examples/presence_notifier.py \\
        --jid notifier@localhost --password secret --server 127.0.0.1 --port 5222 \\
        --insecure --to alice@localhost --wait 5

Exit status: 0 sent; 3 not sent (recipient unavailable, in dnd, or we see no presence of
theirs because they have not accepted our subscription); 1 login failed; 2 bad arguments.
The recipient must share presence with the notifier: add it to their roster and subscribe.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import ssl
import sys
from typing import Any

import slixmpp

EXIT_SENT, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_SENT = 0, 1, 2, 3
LOGIN_TIMEOUT = 30.0  # seconds to connect and log in, before --wait starts counting


class Notifier(slixmpp.ClientXMPP):
    def __init__(self, jid: str, password: str, recipient: str, text: str,
                 subject: str, wait: float) -> None:
        super().__init__(jid, password)
        self.wait = wait
        self.recipient = slixmpp.JID(recipient).bare
        self.text = text
        self.subject = subject
        # Last known presence of each of the recipient's resources: resource -> show
        # ("" for plain available); removed when the resource goes unavailable.
        self.resources: dict[str, str] = {}
        self.seen_presence = False
        self.done: asyncio.Future[int] = self.loop.create_future()
        # None: neither accept nor refuse automatically (answered by hand, as in the seed).
        self.roster.auto_authorize = None  # type: ignore[assignment]
        self.roster.auto_subscribe = False
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("presence_subscribe", self.on_subscribe)
        self.add_event_handler("presence_subscribed", self.on_subscribed)
        self.add_event_handler("presence_unsubscribe", self.on_unsubscribe)
        # slixmpp names the event of an available presence after its <show/>.
        for show in ("available", "chat", "away", "xa", "dnd"):
            self.add_event_handler(f"presence_{show}", self.on_available)
        self.add_event_handler("presence_unavailable", self.on_unavailable)
        self.add_event_handler("failed_all_auth", lambda _e: self.finish(
            EXIT_FAILED, f"authentication failed for {self.boundjid.bare}"))
        self.add_event_handler("connection_failed", lambda e: self.finish(
            EXIT_FAILED, f"could not connect: {e}"))

    def finish(self, code: int, why: str) -> None:
        if not self.done.done():
            print(why, flush=True)
            self.done.set_result(code)

    async def start(self, _event: Any) -> None:
        await self.get_roster()
        self.send_presence()   # initial presence: the server probes our contacts for us
        # From now on, --wait seconds for the recipient to show up available.
        self.loop.call_later(self.wait, lambda: self.finish(*self.verdict()))

    # -- subscriptions: accept and subscribe back ------------------------------------------
    def on_subscribe(self, presence: Any) -> None:
        who = presence["from"].bare
        print(f"subscribe request from {who}: accepted, subscribing back", flush=True)
        self.send_presence(pto=who, ptype="subscribed")
        self.send_presence(pto=who, ptype="subscribe")

    def on_subscribed(self, presence: Any) -> None:
        print(f"we are now subscribed to {presence['from'].bare}", flush=True)

    def on_unsubscribe(self, presence: Any) -> None:
        who = presence["from"].bare
        print(f"unsubscribe request from {who}: accepted, unsubscribing too", flush=True)
        self.send_presence(pto=who, ptype="unsubscribed")
        self.send_presence(pto=who, ptype="unsubscribe")

    # -- the recipient's presence ----------------------------------------------------------
    def on_available(self, presence: Any) -> None:
        frm = presence["from"]
        if frm.bare != self.recipient:
            return
        self.seen_presence = True
        show = presence["show"] or ""
        self.resources[frm.resource] = show
        print(f"{frm} is available ({show or 'online'})", flush=True)
        if show != "dnd":
            self.notify(frm)

    def on_unavailable(self, presence: Any) -> None:
        frm = presence["from"]
        if frm.bare != self.recipient:
            return
        self.seen_presence = True
        self.resources.pop(frm.resource, None)
        print(f"{frm} is unavailable", flush=True)

    def notify(self, to: slixmpp.JID) -> None:
        """Send to the resource that said it is available: a bare-JID message could go to
        another resource of theirs that is in dnd."""
        if self.done.done():
            return
        self.send_message(mto=to, mbody=self.text, msubject=self.subject or None,
                          mtype="normal")
        self.finish(EXIT_SENT, f"sent the message to {to}")

    def verdict(self) -> tuple[int, str]:
        """Why nothing was sent, once the wait is over."""
        if any(show == "dnd" for show in self.resources.values()):
            return EXIT_NOT_SENT, f"not sent: {self.recipient} is busy (dnd)"
        if self.seen_presence:
            return EXIT_NOT_SENT, f"not sent: {self.recipient} is unavailable"
        return EXIT_NOT_SENT, (f"not sent: no presence from {self.recipient} (unavailable, "
                               "or not sharing presence with us)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jid", required=True, help="the notifier's account")
    p.add_argument("--password", help="its password (default: $XMPP_PASSWORD, else a prompt)")
    p.add_argument("--server", help="host to connect to (default: from the JID's domain)")
    p.add_argument("--port", type=int, default=5222, help="port (default 5222)")
    p.add_argument("--direct-tls", action="store_true",
                   help="connect with TLS at once (XEP-0368 port, e.g. 5223), not STARTTLS")
    p.add_argument("--insecure", action="store_true",
                   help="accept any certificate (a test server's self-signed one)")
    p.add_argument("--to", required=True, help="who gets the message (bare JID)")
    p.add_argument("--subject", default="Notification", help="message subject")
    p.add_argument("--wait", type=float, default=5.0,
                   help="seconds to wait for the recipient's presence (default 5)")
    p.add_argument("--verbose", "-v", action="store_true")
    return p.parse_args(argv)


async def run(args: argparse.Namespace, password: str, text: str) -> int:
    client = Notifier(args.jid, password, args.to, text, args.subject, args.wait)
    if args.insecure:
        client.ssl_context.check_hostname = False
        client.ssl_context.verify_mode = ssl.CERT_NONE
    client.enable_direct_tls = args.direct_tls
    client.enable_starttls = not args.direct_tls
    client.enable_plaintext = False
    if args.server:
        client.connect(args.server, args.port)
    else:
        client.connect()  # DNS SRV lookup of the JID's domain
    try:
        code = await asyncio.wait_for(asyncio.shield(client.done), LOGIN_TIMEOUT + args.wait)
    except TimeoutError:
        client.finish(EXIT_FAILED, "could not log in in time")
        code = EXIT_FAILED
    # disconnect() waits for the send queue to empty: the message is on the wire first.
    await client.disconnect()
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    if args.wait <= 0:
        print("presence_notifier: --wait must be positive", file=sys.stderr)
        return EXIT_USAGE
    text = sys.stdin.read()
    if not text.strip():
        print("presence_notifier: nothing to send (empty standard input)", file=sys.stderr)
        return EXIT_USAGE
    password = args.password or os.environ.get("XMPP_PASSWORD") or getpass.getpass()
    return asyncio.run(run(args, password, text.rstrip("\n")))


if __name__ == "__main__":
    sys.exit(main())
