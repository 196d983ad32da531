"""Finding a peer server (RFC 6120 §3.2, RFC 2782, XEP-0368).

Order of preference:
1. the static override table from the configuration ("domain" → "host:port", or
   "tls://host:port" for XEP-0368 direct TLS) — private networks and tests;
2. DNS SRV: `_xmpps-server._tcp.<domain>` (direct TLS, XEP-0368) and
   `_xmpp-server._tcp.<domain>` (STARTTLS). Like Prosody's resolver chain, every direct-TLS
   target is tried before the STARTTLS ones; within each list records are ordered by priority,
   and by weighted random choice within one priority (RFC 2782);
3. no SRV record at all: the domain's own A/AAAA on port 5269 (RFC 6120 §3.2.1 fallback).
A single SRV record with target "." means "no service here" (RFC 2782): no fallback then.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from blether.jid import domain_to_ascii

log = logging.getLogger(__name__)

DEFAULT_PORT = 5269
DEFAULT_TLS_PORT = 5270


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    direct_tls: bool = False

    def __str__(self) -> str:
        return f"{'tls://' if self.direct_tls else ''}{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str      # without the trailing dot; "." stays "."


class OverrideError(ValueError):
    pass


def parse_override(value: str) -> Target:
    """'host:port', '[v6]:port', 'host' (port 5269) or 'tls://host:port' (direct TLS)."""
    text = value.strip()
    direct = False
    if text.startswith("tls://"):
        direct, text = True, text[len("tls://"):]
    elif text.startswith("tcp://"):
        text = text[len("tcp://"):]
    default = DEFAULT_TLS_PORT if direct else DEFAULT_PORT
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise OverrideError(f"bad address {value!r}")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise OverrideError(f"no host in {value!r}")
    try:
        port = int(port_text) if port_text else default
    except ValueError:
        raise OverrideError(f"bad port in {value!r}") from None
    if not 0 < port < 65536:
        raise OverrideError(f"port out of range in {value!r}")
    return Target(host, port, direct)


def order_srv(records: Sequence[SrvRecord], rng: random.Random | None = None) -> list[SrvRecord]:
    """RFC 2782 ordering: lowest priority first; weighted random order within a priority."""
    rng = rng or random.Random()
    out: list[SrvRecord] = []
    for prio in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == prio]
        # Zero-weight records first, so they have a small chance of being chosen (RFC 2782).
        group.sort(key=lambda r: r.weight != 0)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total) if total else 0
            running = 0
            for i, r in enumerate(group):
                running += r.weight
                if running >= pick:
                    out.append(group.pop(i))
                    break
    return out


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


# A lookup returns the SRV records of a name, [] for "none" (NXDOMAIN, no answer), and raises
# OSError (or anything) when DNS itself failed.
SrvLookup = Callable[[str], Awaitable[list[SrvRecord]]]


class Resolver:
    def __init__(self, overrides: dict[str, str], nameservers: Sequence[str] = (),
                 timeout: float = 10.0, lookup: SrvLookup | None = None) -> None:
        self.overrides = {k: parse_override(v) for k, v in overrides.items()}
        self.nameservers = list(nameservers)
        self.timeout = timeout
        self._lookup = lookup or self._dns_lookup
        self._dns: object | None = None

    async def resolve(self, domain: str) -> list[Target]:
        """Targets to try in order (may be empty: the domain has no XMPP service)."""
        override = self.overrides.get(domain)
        if override is not None:
            return [override]
        if _is_ip(domain):
            return [Target(domain.strip("[]"), DEFAULT_PORT)]
        ascii_domain = domain_to_ascii(domain)
        tls_records = await self._srv(f"_xmpps-server._tcp.{ascii_domain}.")
        tcp_records = await self._srv(f"_xmpp-server._tcp.{ascii_domain}.")
        targets = [Target(r.target, r.port, True) for r in order_srv(tls_records)
                   if r.target != "."]
        targets += [Target(r.target, r.port, False) for r in order_srv(tcp_records)
                    if r.target != "."]
        if targets:
            return targets
        if any(r.target == "." for r in (*tls_records, *tcp_records)):
            log.info("%s says it offers no XMPP server-to-server service", domain)
            return []
        return [Target(ascii_domain, DEFAULT_PORT)]

    async def _srv(self, name: str) -> list[SrvRecord]:
        try:
            return await self._lookup(name)
        except Exception as exc:
            # A broken resolver is not the peer's statement that it has no service: fall back
            # to A/AAAA (getaddrinfo may still find it, e.g. in /etc/hosts).
            log.info("SRV lookup of %s failed (%s); falling back to A/AAAA", name, exc)
            return []

    async def _dns_lookup(self, name: str) -> list[SrvRecord]:
        import dns.asyncresolver
        import dns.name
        import dns.resolver

        if self._dns is None:
            if self.nameservers:
                # "ip" or "ip:port" / "[v6]:port"; dnspython has one port for all servers.
                res = dns.asyncresolver.Resolver(configure=False)
                parsed = [parse_override(s if s.count(":") == 1 or s.startswith("[")
                                         else f"[{s}]:53" if ":" in s else f"{s}:53")
                          for s in self.nameservers]
                res.nameservers = [t.host for t in parsed]
                res.port = parsed[0].port
            else:
                res = dns.asyncresolver.Resolver()
            res.lifetime = self.timeout
            self._dns = res
        assert isinstance(self._dns, dns.asyncresolver.Resolver)
        try:
            answer = await self._dns.resolve(name, "SRV", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        return [SrvRecord(int(r.priority), int(r.weight), int(r.port),
                          "." if r.target == dns.name.root
                          else r.target.to_text(omit_final_dot=True))
                for r in answer]
