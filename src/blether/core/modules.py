"""Loads feature modules in dependency order and wires their declarations into the core."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from blether.core.module import Module, ModuleContext

if TYPE_CHECKING:
    from blether.core.services import Services

log = logging.getLogger(__name__)


class ModuleError(Exception):
    pass


def resolve_order(enabled: list[str], registry: dict[str, type[Module]]) -> list[str]:
    """Dependencies first; a missing or unknown module is an error naming it."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, wanted_by: str | None) -> None:
        if name in order:
            return
        if name not in registry:
            by = f" (needed by {wanted_by})" if wanted_by else ""
            raise ModuleError(f"unknown module '{name}'{by}; known: {', '.join(sorted(registry))}")
        if name in visiting:
            raise ModuleError(f"dependency cycle at module '{name}'")
        visiting.add(name)
        for dep in registry[name].depends:
            visit(dep, name)
        visiting.discard(name)
        order.append(name)

    for name in enabled:
        visit(name, None)
    return order


def validate_options(cls: type[Module], raw: dict[str, Any]) -> Any:
    try:
        return cls.Options.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ModuleError(f"module_options.{cls.name}: {details}") from None


class ModuleManager:
    def __init__(self, services: Services, registry: dict[str, type[Module]]) -> None:
        self.services = services
        self.registry = registry
        self.loaded: dict[str, Module] = {}

    def load(self, enabled: list[str], options: dict[str, dict[str, Any]]) -> None:
        unknown = set(options) - set(self.registry)
        if unknown:
            raise ModuleError(f"module_options for unknown module(s): {', '.join(sorted(unknown))}")
        for name in resolve_order(enabled, self.registry):
            cls = self.registry[name]
            opts = validate_options(cls, options.get(name, {}))
            module = cls(ModuleContext(self.services, name), opts)
            self._wire(module)
            self.loaded[name] = module

    def _wire(self, module: Module) -> None:
        s = self.services
        for attr in dir(type(module)):
            fn = getattr(type(module), attr, None)
            if fn is None or not callable(fn):
                continue
            bound = getattr(module, attr)
            for type_, xmlns, target in getattr(fn, "_iq_marks", ()):
                s.iq.register(type_, xmlns, target, bound, owner=module)
            for h, prio, kinds in getattr(fn, "_hook_marks", ()):
                s.hooks.add(h, bound, priority=prio, owner=module, kinds=kinds)
        for var in module.host_features:
            s.disco.add_host_feature(var, module)
        for var in module.account_features:
            s.disco.add_account_feature(var, module)
        for ident in module.host_identities:
            s.disco.add_host_identity(ident, module)

    def get(self, name: str) -> Module | None:
        return self.loaded.get(name)

    async def start(self) -> None:
        for module in self.loaded.values():
            await module.start()

    async def stop(self) -> None:
        for module in reversed(list(self.loaded.values())):
            try:
                await module.stop()
            except Exception:
                log.exception("module %s failed to stop cleanly", module.ctx.name)
            await module.ctx.cancel_tasks()
            self.services.hooks.remove_owner(module)
            self.services.iq.remove_owner(module)
            self.services.disco.remove_owner(module)
