#!/usr/bin/env python3
"""A dictionary bot: send it a word in a chat message, it answers with the definition.

The XMPP version of the "technical dictionary IM agent" (a hash of words, a message callback
that looks the body up and replies, or says it doesn't know about it), built on slixmpp.
It accepts presence subscription requests, so people can add it to their roster and see
whether it is online.

    python examples/dictionary_bot.py --jid dict@localhost --password secret \\
        --server 127.0.0.1 --port 5222 --insecure [--dict words.txt]

A dictionary file has one `word: definition` per line; blank lines and lines starting with
`#` are skipped. Its words are added to (and override) the built-in ones.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import slixmpp

BUILTIN: dict[str, str] = {
    "ruby": "Greatest little object oriented scripting language",
    "xmpp4r": "Simple XMPP library for ruby",
    "xmpp": "Extensible Messaging and Presence Protocol",
    "jabber": "The original name of XMPP, and of its first server",
    "slixmpp": "An asyncio XMPP library for Python",
    "blether": "An XMPP server in Python; in Scots, to talk at length",
}


def load_dictionary(path: Path) -> dict[str, str]:
    """`word: definition` lines; raises ValueError naming the first bad line."""
    words: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, sep, definition = line.partition(":")
        if not sep or not word.strip() or not definition.strip():
            raise ValueError(f"{path}:{number}: expected 'word: definition', got {line!r}")
        words[word.strip().lower()] = definition.strip()
    return words


def answer(words: dict[str, str], text: str) -> str:
    word = text.strip()
    definition = words.get(word.lower())
    return definition if definition is not None else f"don't know about {word}"


class DictionaryBot(slixmpp.ClientXMPP):
    def __init__(self, jid: str, password: str, words: dict[str, str]) -> None:
        super().__init__(jid, password)
        self.words = words
        self.failed = False
        # Subscription requests are answered by hand below, exactly like the seed scripts.
        self.roster.auto_authorize = None  # type: ignore[assignment]  # None: by hand
        self.roster.auto_subscribe = False
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence_subscribe", self.on_subscribe)
        self.add_event_handler("failed_all_auth", self.on_failed_auth)

    async def start(self, _event: Any) -> None:
        await self.get_roster()
        self.send_presence()           # initial presence: now messages reach us
        logging.info("ready as %s with %d words", self.boundjid, len(self.words))

    def on_message(self, msg: Any) -> None:
        # Only what a person typed: no errors, no group chat, no bodiless chat states.
        if msg["type"] not in ("chat", "normal") or not msg["body"].strip():
            return
        reply = answer(self.words, msg["body"])
        logging.info("%s asked %r", msg["from"], msg["body"])
        msg.reply(reply).send()

    def on_subscribe(self, presence: Any) -> None:
        who = presence["from"].bare
        logging.info("subscription request from %s: accepted", who)
        self.send_presence(pto=who, ptype="subscribed")
        self.send_presence(pto=who, ptype="subscribe")

    def on_failed_auth(self, _event: Any) -> None:
        self.failed = True
        logging.error("authentication failed for %s", self.boundjid.bare)
        self.disconnect()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jid", required=True, help="the bot's account, e.g. dict@localhost")
    p.add_argument("--password", help="its password (default: $XMPP_PASSWORD, else a prompt)")
    p.add_argument("--server", help="host to connect to (default: from the JID's domain)")
    p.add_argument("--port", type=int, default=5222, help="port (default 5222)")
    p.add_argument("--direct-tls", action="store_true",
                   help="connect with TLS at once (XEP-0368 port, e.g. 5223), not STARTTLS")
    p.add_argument("--insecure", action="store_true",
                   help="accept any certificate (a test server's self-signed one)")
    p.add_argument("--dict", type=Path, metavar="FILE",
                   help="extra 'word: definition' lines, one per line")
    p.add_argument("--verbose", "-v", action="store_true")
    return p.parse_args(argv)


def make_ssl_insecure(client: slixmpp.ClientXMPP) -> None:
    client.ssl_context.check_hostname = False
    client.ssl_context.verify_mode = ssl.CERT_NONE


async def run(args: argparse.Namespace, words: dict[str, str], password: str) -> int:
    bot = DictionaryBot(args.jid, password, words)
    if args.insecure:
        make_ssl_insecure(bot)
    bot.enable_direct_tls = args.direct_tls
    bot.enable_starttls = not args.direct_tls
    bot.enable_plaintext = False
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bot.add_event_handler("disconnected", lambda _e: stop.set())
    if args.server:
        bot.connect(args.server, args.port)
    else:
        bot.connect()  # DNS SRV lookup of the JID's domain
    await stop.wait()
    if bot.is_connected():
        await bot.disconnect()
    return 1 if bot.failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    words = dict(BUILTIN)
    if args.dict is not None:
        try:
            words.update(load_dictionary(args.dict))
        except (OSError, ValueError) as exc:
            print(f"dictionary_bot: {exc}", file=sys.stderr)
            return 2
    password = args.password or os.environ.get("XMPP_PASSWORD") or getpass.getpass()
    return asyncio.run(run(args, words, password))


if __name__ == "__main__":
    sys.exit(main())
