#!/usr/bin/env python3
"""An echo component: every message sent to it comes back, prefixed with 'Echo:'.

An external component (XEP-0114) built on slixmpp's ComponentXMPP. It connects to the
server's component port, proves it knows the shared secret, and from then on receives every
stanza addressed to its domain (`echo.localhost`) or to any JID at it (`anything@echo.localhost`).
A chat or normal message is answered from the address it was sent to; disco#info queries are
answered with a `component/generic` identity named "Echo".

    python examples/echo_component.py --jid echo.localhost --secret s3cret \\
        --server 127.0.0.1 --port 5347

The server must know the component (blether.toml):

    [module_options.component]
    components = { "echo.localhost" = "s3cret" }

Exit status: 0 after Ctrl-C/SIGTERM, 1 if the server refused the component (wrong secret,
unknown domain, already connected) or the connection was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from slixmpp.componentxmpp import ComponentXMPP

PREFIX = "Echo: "


class EchoComponent(ComponentXMPP):
    def __init__(self, jid: str, secret: str, server: str, port: int) -> None:
        # fix_error_ns: parse <error/> children in the component namespace too.
        super().__init__(jid, secret, server, port, fix_error_ns=True)
        self.refused: str | None = None
        self.register_plugin("xep_0030")   # service discovery (answers disco#info)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("stream_error", self.on_stream_error)

    async def on_start(self, _event: Any) -> None:
        await self.plugin["xep_0030"].add_identity(category="component", itype="generic",
                                            name="Echo", jid=self.boundjid)
        logging.info("connected as component %s", self.boundjid)

    def on_message(self, msg: Any) -> None:
        # Echo only what a person typed: no errors (no loops), no bodiless chat states.
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        logging.info("echoing %s's message to %s", msg["from"], msg["to"])
        # reply() swaps 'to' and 'from': the answer comes from the address that was written to.
        msg.reply(PREFIX + msg["body"]).send()

    def on_stream_error(self, error: Any) -> None:
        self.refused = error["condition"]
        logging.error("the server closed the stream: %s %s", error["condition"],
                      error["text"] or "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jid", required=True, help="the component's domain, e.g. echo.localhost")
    p.add_argument("--secret", help="the shared secret (default: $COMPONENT_SECRET)")
    p.add_argument("--server", default="127.0.0.1", help="server address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5347, help="component port (default 5347)")
    p.add_argument("--verbose", "-v", action="store_true")
    return p.parse_args(argv)


async def run(args: argparse.Namespace, secret: str) -> int:
    component = EchoComponent(args.jid, secret, args.server, args.port)
    stop = asyncio.Event()
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        interrupted = True
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    component.add_event_handler("disconnected", lambda _e: stop.set())
    component.add_event_handler("connection_failed", lambda _e: stop.set())
    component.connect()
    await stop.wait()
    if component.is_connected():
        await component.disconnect()
    return 0 if interrupted and component.refused is None else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    secret = args.secret or os.environ.get("COMPONENT_SECRET")
    if not secret:
        print("echo_component: --secret (or $COMPONENT_SECRET) is required", file=sys.stderr)
        return 2
    return asyncio.run(run(args, secret))


if __name__ == "__main__":
    sys.exit(main())
