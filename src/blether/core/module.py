"""The feature-module contract: specs, options, IQ handlers and hooks declared on a class.

A feature module talks to the core only through its `ModuleContext`: hooks, IQ handlers, disco
registration, storage, the router and the session registry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from blether.core.disco import Identity
from blether.core.hooks import Hook
from blether.core.iq import Target

if TYPE_CHECKING:
    from blether.core.services import Services

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Spec:
    """A specification a module implements, for docs/compliance.md."""

    kind: str       # "RFC" or "XEP"
    number: int
    version: str
    status: str     # complete | partial | planned
    note: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.number:04d}" if self.kind == "XEP" else f"RFC {self.number}"


def XEP(number: int, version: str, status: str, note: str = "") -> Spec:
    return Spec("XEP", number, version, status, note)


def RFC(number: int, sections: str, status: str, note: str = "") -> Spec:
    return Spec("RFC", number, sections, status, note)


def iq_handler(type: str, xmlns: str, target: Target = Target.HOST) -> Callable[[F], F]:
    """Mark a method as the handler of IQ `type` with payload namespace `xmlns`."""

    def mark(fn: F) -> F:
        marks: list[tuple[str, str, Target]] = fn.__dict__.setdefault("_iq_marks", [])
        marks.append((type, xmlns, target))
        return fn

    return mark


def hook(h: Hook[Any], priority: int = 0, *,
         kinds: tuple[str, ...] | None = None) -> Callable[[F], F]:
    """Mark a method as a handler of hook `h`.

    `kinds` (stanza names, e.g. `("presence",)`) declares that the handler only cares about
    those stanzas: the hook bus does not call it for others (a message then runs no presence
    handler at all). Only for the stanza hooks the router fires with the stanza's name.
    """

    def mark(fn: F) -> F:
        marks: list[tuple[Hook[Any], int, tuple[str, ...] | None]] = \
            fn.__dict__.setdefault("_hook_marks", [])
        marks.append((h, priority, kinds))
        return fn

    return mark


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModuleContext:
    """What a module may use. Built by the ModuleManager for each module."""

    def __init__(self, services: Services, name: str) -> None:
        self.services = services
        self.name = name
        self.log = logging.getLogger(f"blether.features.{name}")
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def hosts(self) -> frozenset[str]:
        return self.services.hosts

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        """Start background work owned by this module; cancelled when the module stops."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("background task %s failed", task.get_name(),
                           exc_info=task.exception())

    async def cancel_tasks(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class Module:
    """Base class of feature modules. Subclasses set the ClassVars and decorate handlers."""

    name: ClassVar[str]
    default_enabled: ClassVar[bool] = True
    specs: ClassVar[tuple[Spec, ...]] = ()
    depends: ClassVar[tuple[str, ...]] = ()
    host_features: ClassVar[tuple[str, ...]] = ()
    account_features: ClassVar[tuple[str, ...]] = ()
    host_identities: ClassVar[tuple[Identity, ...]] = ()
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, ctx: ModuleContext, options: Any) -> None:
        self.ctx = ctx
        self.options = options

    async def start(self) -> None:
        """Called after registration, before listeners open."""

    async def stop(self) -> None:
        """Called at shutdown, before storage closes."""
