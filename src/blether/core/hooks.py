"""Typed hook bus: how feature modules extend the core without the core knowing them.

A hook is a typed object (never a string). `fire` runs handlers in priority order and stops at
the first that returns True ("handled"); `notify` runs them all. A failing handler is logged and
contained so one broken module cannot take down routing for everyone else.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

E = TypeVar("E")
Handler = Callable[[E], Awaitable[bool | None]]


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


class HookBus:
    def __init__(self) -> None:
        self._handlers: dict[Hook[Any], list[_Entry]] = {}
        self._seq = 0

    def add(self, hook: Hook[E], handler: Handler[E], *, priority: int = 0,
            owner: object = None) -> None:
        """Register `handler`; higher priority runs first, equal priorities in insertion order."""
        self._seq += 1
        entries = self._handlers.setdefault(hook, [])
        entries.append(_Entry((-priority, self._seq), handler, owner))
        entries.sort()

    def remove_owner(self, owner: object) -> None:
        for hook, entries in list(self._handlers.items()):
            kept = [e for e in entries if e.owner is not owner]
            if kept:
                self._handlers[hook] = kept
            else:
                del self._handlers[hook]

    def has(self, hook: Hook[Any]) -> bool:
        return hook in self._handlers

    async def fire(self, hook: Hook[E], event: E) -> bool:
        """Run handlers until one returns True; return whether the event was handled."""
        entries = self._handlers.get(hook)
        if not entries:
            return False
        for entry in tuple(entries):
            try:
                if await entry.handler(event):
                    return True
            except Exception:
                log.exception("handler %r for %s failed; continuing", entry.handler, hook.name)
        return False

    async def notify(self, hook: Hook[E], event: E) -> None:
        """Run every handler (for events nobody can veto, e.g. a session ended)."""
        entries = self._handlers.get(hook)
        if not entries:
            return
        for entry in tuple(entries):
            try:
                await entry.handler(event)
            except Exception:
                log.exception("handler %r for %s failed; continuing", entry.handler, hook.name)
