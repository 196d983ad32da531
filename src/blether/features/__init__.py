"""Feature modules, one RFC section or XEP each, discovered from this package.

Every `Module` subclass defined in a module (or sub-package `__init__`) of this package is
registered under its `name`. DEFAULT_MODULES lists those with `default_enabled = True`, in
a stable order.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from blether.core.module import Module


def _discover() -> dict[str, type[Module]]:
    found: dict[str, type[Module]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        for _attr, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, Module) and obj is not Module and obj.__module__.startswith(
                    f"{__name__}.{info.name}") and hasattr(obj, "name"):
                if obj.name in found and found[obj.name] is not obj:
                    raise RuntimeError(f"two feature modules are named {obj.name!r}")
                found[obj.name] = obj
    return found


REGISTRY: dict[str, type[Module]] = _discover()

DEFAULT_MODULES: tuple[str, ...] = tuple(
    name for name, cls in sorted(REGISTRY.items()) if cls.default_enabled)
