"""HookBus (DESIGN.md §4): typed hooks, priority order, `fire` stops at the first handler that
handles the event, `notify` runs all, a failing handler is logged and contained."""

from __future__ import annotations

import logging

import pytest

from blether.core.hooks import Hook, HookBus

H: Hook[list[str]] = Hook("test-hook")
OTHER: Hook[list[str]] = Hook("other-hook")


def recorder(name: str, result: bool | None = None):  # type: ignore[no-untyped-def]
    async def handler(trace: list[str]) -> bool | None:
        trace.append(name)
        return result

    return handler


async def test_higher_priority_runs_first_and_ties_keep_insertion_order() -> None:
    bus = HookBus()
    bus.add(H, recorder("low"), priority=-5)
    bus.add(H, recorder("first-zero"))
    bus.add(H, recorder("high"), priority=10)
    bus.add(H, recorder("second-zero"))
    trace: list[str] = []
    assert await bus.fire(H, trace) is False
    assert trace == ["high", "first-zero", "second-zero", "low"]


async def test_fire_stops_at_the_first_true() -> None:
    bus = HookBus()
    bus.add(H, recorder("a", None), priority=3)
    bus.add(H, recorder("b", True), priority=2)
    bus.add(H, recorder("c", True), priority=1)
    trace: list[str] = []
    assert await bus.fire(H, trace) is True
    assert trace == ["a", "b"]


async def test_notify_runs_every_handler_whatever_they_return() -> None:
    bus = HookBus()
    bus.add(H, recorder("a", True))
    bus.add(H, recorder("b", False))
    trace: list[str] = []
    await bus.notify(H, trace)
    assert trace == ["a", "b"]


async def test_no_handlers() -> None:
    bus = HookBus()
    assert await bus.fire(H, []) is False
    await bus.notify(H, [])
    assert not bus.has(H)


async def test_failing_handler_is_logged_and_contained(caplog: pytest.LogCaptureFixture) -> None:
    bus = HookBus()

    async def broken(trace: list[str]) -> bool:
        raise RuntimeError("boom")

    bus.add(H, broken, priority=5)
    bus.add(H, recorder("after", True))
    trace: list[str] = []
    with caplog.at_level(logging.ERROR, logger="blether.core.hooks"):
        assert await bus.fire(H, trace) is True
    assert trace == ["after"]
    assert "test-hook" in caplog.text and "boom" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="blether.core.hooks"):
        await bus.notify(H, trace)
    assert trace == ["after", "after"] and "boom" in caplog.text


async def test_hooks_are_separate() -> None:
    bus = HookBus()
    bus.add(H, recorder("h", True))
    trace: list[str] = []
    assert await bus.fire(OTHER, trace) is False and trace == []


async def test_remove_owner_removes_only_that_owners_handlers() -> None:
    bus = HookBus()
    mod_a, mod_b = object(), object()
    bus.add(H, recorder("a"), owner=mod_a)
    bus.add(OTHER, recorder("a-other"), owner=mod_a)
    bus.add(H, recorder("b"), owner=mod_b)
    bus.remove_owner(mod_a)
    trace: list[str] = []
    await bus.notify(H, trace)
    await bus.notify(OTHER, trace)
    assert trace == ["b"]
    assert not bus.has(OTHER) and bus.has(H)


async def test_handler_added_during_fire_does_not_run_in_that_round() -> None:
    bus = HookBus()

    async def adder(trace: list[str]) -> None:
        trace.append("adder")
        bus.add(H, recorder("late"))

    bus.add(H, adder)
    trace: list[str] = []
    await bus.fire(H, trace)
    assert trace == ["adder"]


def test_hook_repr_names_it() -> None:
    assert repr(H) == "Hook(test-hook)"


# -- handlers filtered by stanza kind ----------------------------------------------------------

async def test_a_handler_for_some_kinds_runs_only_for_those() -> None:
    bus = HookBus()
    bus.add(H, recorder("presence-only"), kinds=("presence",))
    bus.add(H, recorder("any"))
    trace: list[str] = []
    await bus.fire(H, trace, "message")
    assert trace == ["any"]
    trace.clear()
    await bus.fire(H, trace, "presence")
    assert trace == ["presence-only", "any"]


async def test_fire_without_a_kind_runs_every_handler() -> None:
    bus = HookBus()
    bus.add(H, recorder("iq-only"), kinds=("iq",))
    trace: list[str] = []
    await bus.fire(H, trace)
    assert trace == ["iq-only"]


async def test_other_kinds_are_filtered_too_but_not_cached() -> None:
    bus = HookBus()
    bus.add(H, recorder("iq-only"), kinds=("iq",))
    bus.add(H, recorder("any"))
    for _ in range(2):
        trace: list[str] = []
        await bus.fire(H, trace, "weird")
        assert trace == ["any"]
    assert "weird" not in bus._chains.get(H, {})


async def test_wants_tells_whether_a_fire_would_run_anything() -> None:
    bus = HookBus()
    assert not bus.wants(H, "message")
    bus.add(H, recorder("presence-only"), kinds=("presence",))
    assert not bus.wants(H, "message")
    assert bus.wants(H, "presence") and bus.wants(H)


async def test_registrations_after_a_fire_are_seen_by_the_next_fire() -> None:
    bus = HookBus()
    owner = object()
    bus.add(H, recorder("first"))
    trace: list[str] = []
    await bus.fire(H, trace, "message")
    bus.add(H, recorder("second", True), owner=owner)
    await bus.fire(H, trace, "message")
    assert trace == ["first", "first", "second"]
    bus.remove_owner(owner)
    trace.clear()
    assert await bus.fire(H, trace, "message") is False
    await bus.notify(H, trace)
    assert trace == ["first", "first"]


async def test_kinds_declared_with_the_hook_decorator_apply() -> None:
    """`@hook(h, kinds=…)` on a module method: the module manager registers it for those kinds
    only; the same method on another hook without kinds runs for every kind."""
    from typing import Any, cast

    from blether.config import Config
    from blether.core.module import Module, hook
    from blether.core.modules import ModuleManager
    from blether.core.services import Services

    class Feature(Module):
        name = "feature"

        @hook(H, kinds=("presence",))
        @hook(OTHER)
        async def on_it(self, trace: list[str]) -> bool:
            trace.append("feature")
            return False

    services = Services(config=Config(), storage=cast(Any, None), hosts=frozenset({"localhost"}))
    services.modules = ModuleManager(services, {"feature": Feature})
    services.modules.load(["feature"], {})
    bus = services.hooks
    trace: list[str] = []
    await bus.fire(H, trace, "message")
    await bus.fire(OTHER, trace, "message")   # no kinds declared for OTHER: runs
    await bus.fire(H, trace, "presence")
    assert trace == ["feature", "feature"]
    # an explicit `kinds` given to the bus is what counts there
    bus2 = HookBus()
    feature = services.modules.get("feature")
    assert isinstance(feature, Feature)
    bus2.add(H, feature.on_it, kinds=("message",))
    trace.clear()
    await bus2.fire(H, trace, "message")
    assert trace == ["feature"]
