"""Command line: `blether serve`, `check-config`, `user add|passwd|delete|list`, `--version`."""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from blether import __version__
from blether.config import Config, ConfigError, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Blether, an XMPP server.")
user_app = typer.Typer(no_args_is_help=True, help="Manage accounts.")
app.add_typer(user_app, name="user")

T = TypeVar("T")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML configuration file.",
                                                exists=False, dir_okay=False)]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory "
                                                 "(database, certificates).")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"blether {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Blether, an XMPP server."""


def _config(config: Path | None, overrides: dict[str, Any]) -> Config:
    try:
        return load_config(config, overrides)
    except ConfigError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await coro_fn()

    try:
        import uvloop

        return uvloop.run(wrapper())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(wrapper())


def _setup_logging(level: str) -> None:
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # Libraries' debug output drowns ours; they speak at warning level and above.
    for noisy in ("alembic", "sqlalchemy", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


@app.command()
def serve(
    config: ConfigOpt = None,
    domain: Annotated[list[str] | None, typer.Option("--domain", help="Hosted domain "
                                                     "(repeat for several).")] = None,
    bind: Annotated[str | None, typer.Option("--bind", help="Address to listen on.")] = None,
    c2s_port: Annotated[int | None, typer.Option("--c2s-port", help="c2s port "
                                                 "(STARTTLS).")] = None,
    tls_port: Annotated[int | None, typer.Option("--tls-port", help="Direct TLS port "
                                                 "(XEP-0368).")] = None,
    data_dir: DataDirOpt = None,
    log_level: Annotated[str | None, typer.Option("--log-level")] = None,
) -> None:
    """Start the server (defaults: domain localhost, 127.0.0.1:5222/5223, SQLite in ./data)."""
    cfg = _config(config, {
        "hosts": domain or None, "c2s.bind": [bind] if bind else None, "c2s.port": c2s_port,
        "c2s.tls_port": tls_port, "data_dir": str(data_dir) if data_dir else None,
        "log.level": log_level,
    })
    _setup_logging(cfg.log.level)
    from blether.app import run_server
    from blether.core.modules import ModuleError

    try:
        _run(lambda: run_server(cfg))
    except (OSError, ModuleError) as exc:
        typer.secho(f"cannot start: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


@app.command("check-config")
def check_config(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Validate the configuration (including module options) without starting."""
    cfg = _config(config, {"data_dir": str(data_dir) if data_dir else None})
    from blether.core.modules import ModuleError, resolve_order, validate_options
    from blether.features import DEFAULT_MODULES, REGISTRY

    try:
        names = resolve_order(cfg.modules if cfg.modules is not None else list(DEFAULT_MODULES),
                              REGISTRY)
        for name, raw in cfg.module_options.items():
            if name not in REGISTRY:
                raise ModuleError(f"module_options for unknown module '{name}'")
            validate_options(REGISTRY[name], raw)
    except ModuleError as exc:
        typer.secho(f"{config or '<defaults>'}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(f"configuration OK: hosts {', '.join(cfg.hosts)}; modules {', '.join(names)}")


def _read_password(confirm: bool = True) -> str:
    if sys.stdin.isatty():
        pw = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat: ") != pw:
            typer.secho("passwords differ", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
    else:
        pw = sys.stdin.readline().rstrip("\r\n")
    if not pw:
        typer.secho("empty password", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    return pw


def _account(cfg: Config, jid_text: str) -> str:
    from blether.jid import JID, JIDError

    try:
        jid = JID.parse(jid_text)
    except JIDError as exc:
        typer.secho(f"invalid JID {jid_text!r}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if jid.local is None or jid.resource is not None:
        typer.secho("give an account JID like alice@localhost", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if jid.domain not in cfg.hosts:
        typer.secho(f"{jid.domain} is not a hosted domain ({', '.join(cfg.hosts)})",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    return str(jid)


async def _with_storage(cfg: Config, fn: Callable[[Any], Awaitable[T]]) -> T:
    from blether.storage import open_storage

    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    storage = await open_storage(cfg.storage_url)
    try:
        return await fn(storage)
    finally:
        await storage.close()


@user_app.command("add")
def user_add(jid: str, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Create an account; the password is prompted for, or read from stdin."""
    cfg = _config(config, {"data_dir": str(data_dir) if data_dir else None})
    user = _account(cfg, jid)
    password = _read_password()
    from blether.core.auth import Authenticator
    from blether.storage import AccountExists

    async def add(storage: Any) -> None:
        await Authenticator(storage.accounts).create_account(user, password)

    try:
        _run(lambda: _with_storage(cfg, add))
    except AccountExists:
        typer.secho(f"{user} already exists", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {user}")


@user_app.command("passwd")
def user_passwd(jid: str, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Change an account's password."""
    cfg = _config(config, {"data_dir": str(data_dir) if data_dir else None})
    user = _account(cfg, jid)
    password = _read_password()
    from blether.core.auth import Authenticator
    from blether.storage import AccountNotFound

    async def change(storage: Any) -> None:
        await Authenticator(storage.accounts).set_password(user, password)

    try:
        _run(lambda: _with_storage(cfg, change))
    except AccountNotFound:
        typer.secho(f"no such account {user}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"password changed for {user}")


@user_app.command("delete")
def user_delete(jid: str, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Delete an account and every trace of it (roster, offline messages, vCard…)."""
    cfg = _config(config, {"data_dir": str(data_dir) if data_dir else None})
    user = _account(cfg, jid)

    async def delete(storage: Any) -> bool:
        if not await storage.accounts.exists(user):
            return False
        await storage.purge_user(user)
        return True

    if not _run(lambda: _with_storage(cfg, delete)):
        typer.secho(f"no such account {user}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"deleted {user}")


@user_app.command("list")
def user_list(domain: Annotated[str | None, typer.Argument()] = None, config: ConfigOpt = None,
              data_dir: DataDirOpt = None) -> None:
    """List the accounts of a domain (default: every hosted domain)."""
    cfg = _config(config, {"data_dir": str(data_dir) if data_dir else None})
    domains = [domain] if domain else cfg.hosts

    async def listing(storage: Any) -> list[str]:
        out: list[str] = []
        for d in domains:
            out += await storage.accounts.list(d)
        return out

    for user in _run(lambda: _with_storage(cfg, listing)):
        typer.echo(user)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
