"""Composition root: config → storage → Services → modules → listeners; graceful stop."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time
from pathlib import Path

from blether.config import Config
from blether.core import events
from blether.core.auth import Authenticator, AuthFailureLimiter
from blether.core.modules import ModuleManager
from blether.core.router import Router
from blether.core.services import Services
from blether.core.sessions import SessionRegistry
from blether.features import DEFAULT_MODULES, REGISTRY
from blether.storage import open_storage
from blether.transport.listener import C2SListener
from blether.transport.tls import TLSManager

log = logging.getLogger(__name__)


def _load_secret(data_dir: Path) -> bytes:
    """A per-installation secret (fake SCRAM salts for unknown users stay stable)."""
    path = data_dir / "server.secret"
    if path.exists():
        return path.read_bytes()
    secret = secrets.token_bytes(32)
    path.write_bytes(secret)
    os.chmod(path, 0o600)
    return secret


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.services: Services | None = None
        self.listener: C2SListener | None = None
        self.stopped = asyncio.Event()

    async def start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        storage = await open_storage(cfg.storage_url)
        s = Services(config=cfg, storage=storage, hosts=frozenset(cfg.hosts),
                     sessions=SessionRegistry(cfg.c2s.max_sessions_per_user,
                                              cfg.c2s.resource_conflict))
        s.started_at = time.time()
        s.router = Router(s)
        s.auth = Authenticator(storage.accounts)
        s.auth_limiter = AuthFailureLimiter(cfg.limits.auth_failures_per_ip,
                                            cfg.limits.auth_failure_window,
                                            cfg.limits.auth_ban_time)
        s.sasl_secret = _load_secret(cfg.data_dir)
        s.modules = ModuleManager(s, REGISTRY)
        s.modules.load(cfg.modules if cfg.modules is not None else list(DEFAULT_MODULES),
                       cfg.module_options)
        self.services = s
        tls = TLSManager(cfg.hosts, cfg.data_dir, cfg.tls.certificates, cfg.tls.min_version)
        s.extra["tls"] = tls
        await s.modules.start()
        self.listener = C2SListener(s, tls)
        await self.listener.start()

    async def stop(self) -> None:
        """Stop accepting, <system-shutdown/> to every stream, flush and close storage."""
        if self.services is None:
            return
        s = self.services
        await s.hooks.notify(events.SERVER_STOPPING, None)
        if self.listener is not None:
            await self.listener.shutdown()
        await s.modules.stop()
        await s.storage.close()
        self.services = None
        self.stopped.set()


async def run_server(config: Config, banner: bool = True) -> None:
    server = Server(config)
    await server.start()
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)
    if banner:
        _print_banner(server)
    log.info("Blether is running")
    await stop_requested.wait()
    log.info("stopping: closing every stream with <system-shutdown/>")
    await server.stop()
    log.info("stopped")


def _print_banner(server: Server) -> None:
    from rich.console import Console

    cfg = server.config
    console = Console(stderr=True, highlight=False)
    console.print(f"[bold]Blether[/bold] serving {', '.join(cfg.hosts)}")
    assert server.listener is not None
    for host, port, kind in server.listener.addresses:
        what = "c2s, STARTTLS required" if kind == "starttls" and cfg.c2s.require_encryption \
            else ("c2s, direct TLS (XEP-0368)" if kind == "direct-tls" else "c2s")
        console.print(f"  listening on {host}:{port}  ({what})")
    console.print(f"  data directory: {cfg.data_dir.resolve()}  (storage: {cfg.storage_url})")
    console.print(f"  certificates:   {(cfg.data_dir / 'certs').resolve()}")
    console.print(f"  add a user:     blether user add alice@{cfg.hosts[0]} "
                  f"--data-dir {cfg.data_dir}")
    console.print("  stop with Ctrl-C")
