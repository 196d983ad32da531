"""The composition root's container: built once in app.py, handed down (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from blether.core.disco import DiscoRegistry
from blether.core.hooks import HookBus
from blether.core.iq import IqDispatcher
from blether.core.sessions import SessionRegistry

if TYPE_CHECKING:
    from blether.config import Config
    from blether.core.auth import Authenticator, AuthFailureLimiter
    from blether.core.modules import ModuleManager
    from blether.core.router import Router
    from blether.storage.api import Storage


@dataclass
class Services:
    config: Config
    storage: Storage
    hosts: frozenset[str]
    hooks: HookBus = field(default_factory=HookBus)
    iq: IqDispatcher = field(default_factory=IqDispatcher)
    disco: DiscoRegistry = field(default_factory=DiscoRegistry)
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    router: Router = field(init=False)
    auth: Authenticator = field(init=False)
    modules: ModuleManager = field(init=False)
    auth_limiter: AuthFailureLimiter = field(init=False)
    sasl_secret: bytes = b""
    started_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def module(self, name: str) -> Any:
        """A loaded feature module by name (None if not enabled)."""
        return self.modules.get(name)
