"""The servers under test, by name."""

from __future__ import annotations

from bench.servers.base import Server
from bench.servers.blether import BletherServer
from bench.servers.ejabberd import EjabberdServer
from bench.servers.prosody import ProsodyServer

SERVERS: dict[str, type[Server]] = {
    "blether": BletherServer,
    "prosody": ProsodyServer,
    "ejabberd": EjabberdServer,
}

__all__ = ["SERVERS", "Server"]
