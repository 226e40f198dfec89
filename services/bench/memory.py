"""Memory under sustained load and under overload, with `forgeline up` as users run it.

Flat memory: RSS of the gateway and the processors after 1× and after 10× the run length at
full load (ratio ≤ 1.10), counted from a steady state (see the warm-up below). Overload: far
more connections than the gateway serves at once — it must shed (503 + Retry-After, or 429)
rather than queue, and its RSS stays where it was.
"""

from __future__ import annotations

import time
from pathlib import Path

from services.bench.harness import Row, forgeline_up, load
from services.bench.payloads import event_body

# Warm-up: at most this long, until one more run grows no process's RSS by over 2 %.
WARM_UP_LIMIT_S = 150.0
STEADY_GROWTH = 0.02


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def bench_memory(data_dir: Path, seconds: float) -> list[Row]:
    env = {"FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000000", "FORGELINE_MAX_IN_FLIGHT": "64"}
    with forgeline_up(data_dir, env) as up:
        port, pids = up.port, up.children
        token = up.tokens["logister_token"]
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        body = event_body()

        def rss_now() -> dict[str, int]:
            return {name: rss_bytes(pid) for name, pid in pids.items()}

        def load_for(connections: int, duration: float) -> dict[int, int]:
            return load(port, "/api/v1/ingest_events", body, headers, connections, duration).statuses

        # Warm up to a steady state first: the processors' RSS climbs for about a minute at
        # full load (chDB parts and caches, allocator arenas) and then stays put, which is
        # growth to a plateau, not a leak. A leak keeps growing after it.
        started_at = rss_now()
        before = started_at
        warm_runs = 0
        while warm_runs < max(2, int(WARM_UP_LIMIT_S / seconds)):
            load_for(32, seconds)
            warm_runs += 1
            now = rss_now()
            steady = all(now[name] <= before[name] * (1 + STEADY_GROWTH) for name in pids)
            before = now
            if steady and warm_runs >= 2:
                break
        at_1x = before
        load_for(32, 9 * seconds)
        at_10x = rss_now()
        # Overload: 8× more connections than the gateway serves at once.
        overload_statuses = load_for(512, seconds)
        after_overload = rss_bytes(pids["gateway"])
        time.sleep(0.5)

    rows = [
        Row(
            f"memory: {name} RSS after 10× vs 1× the run at full load",
            at_10x[name] / 2**20,
            at_1x[name] / 2**20,
            "MiB",
            "≤ 1.10",
            f"after warming up {warm_runs} × {seconds:g} s: {started_at[name] / 2**20:,.0f} MiB at start",
        )
        for name in sorted(pids)
    ]
    shed = sum(count for status, count in overload_statuses.items() if status in (429, 503))
    total = sum(overload_statuses.values()) or 1
    rows.append(
        Row(
            "memory: gateway RSS after overload (512 connections, 64 in flight) vs before",
            after_overload / 2**20,
            at_10x["gateway"] / 2**20,
            "MiB",
            "≤ 1.10",
            f"shed {shed / total:.0%} of {total:,} requests with 429/503; statuses {overload_statuses}",
        )
    )
    return rows
