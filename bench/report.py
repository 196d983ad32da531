"""The run's table (stdout) and the targets from the issue, checked on ratios within one run."""

from __future__ import annotations

from typing import Any

# The figures shown in the table for each scenario (all figures go to the JSON).
COLUMNS: dict[str, list[str]] = {
    "throughput": ["msgs_per_s", "cpu_us_per_msg", "latency_p50_ms", "latency_p99_ms",
                   "server_cpu_share", "loadgen_cpu_share", "lost"],
    "throughput-tls": ["msgs_per_s", "cpu_us_per_msg", "latency_p50_ms", "latency_p99_ms",
                       "server_cpu_share", "loadgen_cpu_share", "lost"],
    "latency": ["latency_p50_ms", "latency_p99_ms", "latency_max_ms", "cpu_us_per_msg",
                "loadgen_cpu_share", "lost"],
    "login": ["logins_per_s", "login_p50_ms", "login_p99_ms", "cpu_ms_per_login",
              "server_cpu_share", "loadgen_cpu_share", "failures"],
    "idle": ["sessions", "kib_per_session", "rss_after_mib", "cpu_ms_per_login", "failures"],
    "idle-tls": ["sessions", "kib_per_session", "rss_after_mib", "cpu_ms_per_login",
                 "failures"],
    "fanout": ["contacts", "all_have_it_p50_ms", "all_have_it_max_ms", "cpu_us_per_presence",
               "incomplete_changes"],
    "offline": ["messages", "delivered", "store_s", "delivery_s", "delivery_cpu_s",
                "delivery_cpu_us_per_msg", "store_cpu_us_per_msg"],
    "capacity": ["sessions", "kib_per_session", "rss_after_mib", "rss_100k_mib", "fits_3_gib",
                 "failures"],
}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:,.0f}" if abs(
            value) >= 1000 else f"{value:.1f}"
    return str(value)


def table(results: dict[str, dict[str, dict[str, Any]]], servers: list[str]) -> str:
    rows = [["scenario", "figure", *servers]]
    for scenario, by_server in results.items():
        for figure in COLUMNS.get(scenario, []):
            cells = []
            for s in servers:
                r = by_server.get(s, {})
                if "error" in r or "skipped" in r:
                    cells.append("error" if "error" in r else "skipped")
                else:
                    cells.append(_fmt(r.get(figure)))
            rows.append([scenario, figure, *cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _get(results: dict[str, Any], scenario: str, server: str, figure: str) -> float | None:
    value = results.get(scenario, {}).get(server, {}).get(figure)
    return float(value) if isinstance(value, int | float) and not isinstance(value,
                                                                              bool) else None


def targets(results: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The issue's targets. Ratios compare servers measured in the same run."""
    out: list[dict[str, Any]] = []

    def ratio(what: str, scenario: str, figure: str, other: str, limit: float) -> None:
        mine, theirs = (_get(results, scenario, "blether", figure),
                        _get(results, scenario, other, figure))
        if mine is None or theirs is None or theirs == 0:
            return
        value = mine / theirs
        out.append({"target": what, "value": round(value, 3), "limit": limit,
                    "met": value <= limit})

    def absolute(what: str, scenario: str, figure: str, limit: float) -> None:
        mine = _get(results, scenario, "blether", figure)
        if mine is None:
            return
        out.append({"target": what, "value": mine, "limit": limit, "met": mine <= limit})

    ratio("CPU/msg vs ejabberd (plain)", "throughput", "cpu_us_per_msg", "ejabberd", 0.7)
    ratio("CPU/msg vs Prosody (plain)", "throughput", "cpu_us_per_msg", "prosody", 0.5)
    ratio("CPU/login vs ejabberd", "login", "cpu_ms_per_login", "ejabberd", 1.0)
    ratio("CPU/fan-out presence vs ejabberd", "fanout", "cpu_us_per_presence", "ejabberd", 1.0)
    absolute("p99 at fixed rate (ms)", "latency", "latency_p99_ms", 2.0)
    absolute("KiB per idle plain session", "idle", "kib_per_session", 20.0)
    cap = results.get("capacity", {}).get("blether", {})
    if isinstance(cap.get("fits_3_gib"), bool):
        n = cap.get("measured_sessions", cap.get("sessions"))
        how = ("measured" if isinstance(n, int) and n >= 100_000
               else f"extrapolated from {n} sessions measured")
        out.append({"target": f"100 000 idle sessions in 3 GiB ({how})",
                    "value": cap.get("rss_100k_mib", cap.get("rss_after_mib")), "limit": 3072,
                    "met": cap["fits_3_gib"]})
    else:
        idle = results.get("idle", {}).get("blether", {})
        per, base = idle.get("kib_per_session"), idle.get("rss_before_mib")
        if isinstance(per, int | float) and isinstance(base, int | float):
            mib = base + per * 100_000 / 1024
            out.append({"target": "100 000 idle sessions in 3 GiB (extrapolated from idle)",
                        "value": round(mib, 1), "limit": 3072, "met": mib <= 3072})
    return out


def targets_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "targets: nothing to compare (run blether with the anchors)"
    lines = ["targets (Blether):"]
    for r in rows:
        lines.append(f"  [{'met' if r['met'] else 'MISSED'}] {r['target']}: {r['value']} "
                     f"(limit {r['limit']})")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    """The table of a run as Markdown (for docs/performance.md)."""
    results = report["results"]
    servers = list(report["servers"])
    lines = ["| scenario | figure | " + " | ".join(servers) + " |",
             "|---|---|" + "---:|" * len(servers)]
    for scenario, by_server in results.items():
        for figure in COLUMNS.get(scenario, []):
            cells = []
            for s in servers:
                r = by_server.get(s, {})
                cells.append("error" if "error" in r else "skipped" if "skipped" in r
                             else _fmt(r.get(figure)))
            lines.append(f"| {scenario} | {figure} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    for path in sys.argv[1:]:
        with open(path) as fh:
            data = json.load(fh)
        print(markdown(data))
        print()
        for row in data.get("targets", []):
            print(f"- {'met' if row['met'] else '**missed**'}: {row['target']}: {row['value']} "
                  f"(limit {row['limit']})")
