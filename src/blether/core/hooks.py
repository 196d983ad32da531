"""Typed hook bus: how feature modules extend the core without the core knowing them.

A hook is a typed object (never a string). `fire` runs handlers in priority order and stops at
the first that returns True ("handled"); `notify` runs them all. A failing handler is logged and
contained so one broken module cannot take down routing for everyone else.

Handlers of the stanza hooks may be registered for some stanza kinds only (`kinds=("presence",)`,
the element names of RFC 6120 §8): the router fires those hooks with the stanza's name, and a
handler that does not want that kind is not called at all — no coroutine is made just to return
False. The handler tuples per (hook, kind) are built once, when the registrations change, not
per fire: this is on the path of every stanza.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

E = TypeVar("E")
Handler = Callable[[E], Awaitable[bool | None]]

#: The kinds whose handler tuples are kept (RFC 6120 §8 stanza names). A fire with any other
#: kind (e.g. from a component sending something odd) builds its tuple each time, so a peer
#: cannot grow the cache.
STANZA_KINDS = frozenset({"message", "presence", "iq"})


class Hook(Generic[E]):
    """A named extension point carrying events of type E."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Hook({self.name})"


@dataclass(order=True)
class _Entry:
    sort_key: tuple[int, int]
    handler: Any = field(compare=False)
    owner: object = field(compare=False)
    kinds: frozenset[str] | None = field(compare=False, default=None)  # None: every kind


class HookBus:
    def __init__(self) -> None:
        self._handlers: dict[Hook[Any], list[_Entry]] = {}
        # hook -> kind (None: fired without a kind) -> handlers to run, in order.
        self._chains: dict[Hook[Any], dict[str | None, tuple[Any, ...]]] = {}
        self._seq = 0

    def add(self, hook: Hook[E], handler: Handler[E], *, priority: int = 0,
            owner: object = None, kinds: Iterable[str] | None = None) -> None:
        """Register `handler`; higher priority runs first, equal priorities in insertion order.

        `kinds` limits it to stanzas of those names when the hook is fired with a kind (the
        module manager passes what `@hook(..., kinds=…)` declared); None: every kind.
        """
        self._seq += 1
        wanted = frozenset(kinds) if kinds is not None else None
        entries = self._handlers.setdefault(hook, [])
        entries.append(_Entry((-priority, self._seq), handler, owner, wanted))
        entries.sort()
        self._chains.pop(hook, None)

    def remove_owner(self, owner: object) -> None:
        for hook, entries in list(self._handlers.items()):
            kept = [e for e in entries if e.owner is not owner]
            if kept:
                self._handlers[hook] = kept
            else:
                del self._handlers[hook]
        self._chains.clear()

    def has(self, hook: Hook[Any]) -> bool:
        return hook in self._handlers

    def wants(self, hook: Hook[Any], kind: str | None = None) -> bool:
        """Whether `fire(hook, …, kind)` would run any handler: lets a caller on the hot path
        skip building the event and the coroutine when nobody listens (e.g. a message from a
        client, which no STANZA_FROM_SESSION handler of the default modules wants)."""
        chains = self._chains.get(hook)
        handlers = chains.get(kind) if chains is not None else None
        if handlers is None:
            handlers = self._chain(hook, kind)
        return bool(handlers)

    def _chain(self, hook: Hook[Any], kind: str | None) -> tuple[Any, ...]:
        chain = tuple(e.handler for e in self._handlers.get(hook, ())
                      if kind is None or e.kinds is None or kind in e.kinds)
        if kind is None or kind in STANZA_KINDS:
            self._chains.setdefault(hook, {})[kind] = chain
        return chain

    async def fire(self, hook: Hook[E], event: E, kind: str | None = None) -> bool:
        """Run handlers until one returns True; return whether the event was handled.

        With `kind` (the stanza's element name), handlers registered for other kinds are
        skipped; without it every handler runs.
        """
        chains = self._chains.get(hook)
        handlers = chains.get(kind) if chains is not None else None
        if handlers is None:
            handlers = self._chain(hook, kind)
        # The tuple is never mutated (add/remove build new ones), so a handler registering
        # another during the fire does not change this round.
        for handler in handlers:
            try:
                if await handler(event):
                    return True
            except Exception:
                log.exception("handler %r for %s failed; continuing", handler, hook.name)
        return False

    async def notify(self, hook: Hook[E], event: E) -> None:
        """Run every handler (for events nobody can veto, e.g. a session ended)."""
        chains = self._chains.get(hook)
        handlers = chains.get(None) if chains is not None else None
        if handlers is None:
            handlers = self._chain(hook, None)
        for handler in handlers:
            try:
                await handler(event)
            except Exception:
                log.exception("handler %r for %s failed; continuing", handler, hook.name)
