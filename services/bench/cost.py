"""Bench scenario `cost`: CPU time per event of each process, end to end on `forgeline up`.

For the Logister batch route (gzip NDJSON, 100 events a request) and the Forge Logger batch
route (200 events a request): read utime + stime of the processes from /proc/PID/stat, send
N distinct events, wait until every one is a row and the processes are quiet again (readers
other than the writer finish their share), read them again. CPU per event = the difference / N,
minus what the same processes burn idle over as long (timers, polls of empty topics, chDB's
background work, and the scrapes of the writer's row counter this scenario makes, measured just
before the load). That net figure is the marginal cost of an event: what it costs at saturation,
where the fixed idle burn is spread over many events. The note also gives the gross figure
(everything /proc counted in the window), which holds the idle burn at the run's throughput; on a
busy machine (low throughput, long window) the two differ most, and the net one is the noisier.

Two layouts, both `forgeline up` on the embedded defaults (as the `pipeline` scenario runs it):

- ``split``: the hot path alone, one process per stage — the gateway, the normalizer (left out
  of up's processors host and run as `forgeline process normalizer`, as docs/settings.md
  allows) and the writer (up's processors host with ``FORGELINE_PROCESSORS=writer``).
- ``default``: up as installed — the gateway and one processors host running every processor
  (normalizer, writer, and the stream processors, exporter and notifier that also read each
  typed record).

Target: ≤ 20 µs of CPU per event for the whole pipeline. Anchor: Snuba's Rust consumer
processes ≈ 54.7k items/s on one thread, ≈ 18 µs per item (its own benchmark, without the
ClickHouse write).
"""

from __future__ import annotations

import asyncio
import gzip
import os
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

from forgeline.schemas.forge import new_session_id
from services.bench.harness import HOST, Row, forgeline_up, free_port, process, wait_http

TARGET_US = 20.0
ANCHOR = "anchor: Snuba's Rust consumer ≈ 18 µs per item (54.7k items/s on one thread, no ClickHouse write)"
LOGISTER_BATCH = 100
FORGE_BATCH = 200
SENDERS = 4  # concurrent requests: enough to keep the gateway busy without a load generator process
POLL_S = 0.5
IDLE_S = 5.0
SETTLE_WINDOW_S = 0.5
SETTLED_CORES = 0.10  # below 10 % of a core: the load before is done
ENV = {"FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000000", "FORGELINE_WRITER_FLUSH_SECONDS": "0.5"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and of its live descendants (/proc/PID/stat, every thread)."""
    total = 0.0
    for each in [pid, *_descendants(pid)]:
        try:
            stat = Path(f"/proc/{each}/stat").read_text()
        except FileNotFoundError:
            continue
        # Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


@dataclass(frozen=True)
class Route:
    """One batch route: how to build its distinct bodies and how to count its rows."""

    name: str
    path: str
    headers: dict[str, str]
    bodies: list[bytes]
    events: int
    table: str  # where its rows go: the writer counts them (forgeline_writer_rows_inserted_total)
    count_sql: str  # its rows, asked once the window is closed


def logister_route(token: str, events: int) -> Route:
    marker = f"cost-{uuid.uuid4().hex[:12]}"
    event = {
        "event_type": "error",
        "level": "error",
        "message": "NoMethodError in CheckoutService",
        "fingerprint": "checkout-nomethoderror",
        "release": marker,
        "context": {"environment": "production", "request_id": "abc123", "metadata": {"user_id": 42}},
    }
    bodies = []
    for _ in range(events // LOGISTER_BATCH):
        # Each event names itself and its time, as logister-python sends them (an event without
        # a time costs the writer a lookup more: docs/performance.md).
        sent_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = [
            orjson.dumps({"event": {**event, "uuid": str(uuid.uuid4()), "occurred_at": sent_at}})
            for _ in range(LOGISTER_BATCH)
        ]
        bodies.append(gzip.compress(b"\n".join(lines) + b"\n"))
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-ndjson",
        "Content-Encoding": "gzip",
    }
    sql = f"SELECT count() FROM forgeline.errors WHERE release = '{marker}'"
    return Route(
        f"Logister batch {LOGISTER_BATCH}",
        "/api/v1/ingest_events/batch",
        headers,
        bodies,
        len(bodies) * LOGISTER_BATCH,
        "errors",
        sql,
    )


def forge_route(token: str, project_id: str, events: int) -> Route:
    # One session of the project (a random one is a 403); every body differs (its batch number),
    # so the ids derived from the body never collapse two requests into one row.
    session = str(new_session_id(project_id))
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    bodies = [
        orjson.dumps(
            [
                {
                    "sessionId": session,
                    "type": "level_complete",
                    "timestamp": now,
                    "severity": "low",
                    "properties": {"level": f"Level_{i % 12}", "score": i * 10, "deaths": i % 3, "batch": b},
                }
                for i in range(FORGE_BATCH)
            ]
        )
        for b in range(events // FORGE_BATCH)
    ]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sql = f"SELECT count() FROM forgeline.game_events WHERE session_id = '{session}'"
    events = len(bodies) * FORGE_BATCH
    return Route(f"Forge batch {FORGE_BATCH}", "/v1/ingest/events", headers, bodies, events, "game_events", sql)


async def _send(port: int, route: Route) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in route.bodies:
        queue.put_nowait(body)

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            for _attempt in range(50):
                response = await client.post(route.path, content=body, headers=route.headers)
                if response.status_code in (201, 202):
                    break
                if response.status_code != 503:  # only "bus busy" is retried
                    raise RuntimeError(f"{route.path}: {response.status_code} {response.text[:200]}")
                await asyncio.sleep(0.1)

    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=60) as client:
        await asyncio.gather(*(sender(client) for _ in range(SENDERS)))


def _inserted(admin_port: int, table: str) -> int:
    """Rows the writer has inserted into ``table`` (admin /metrics: a scrape, not a chDB query)."""
    out = httpx.get(f"http://{HOST}:{admin_port}/metrics", timeout=60)
    out.raise_for_status()
    prefix = f'forgeline_writer_rows_inserted_total{{table="{table}"}} '
    for line in out.text.splitlines():
        if line.startswith(prefix):
            return int(float(line[len(prefix) :]))
    return 0


def _count(admin_port: int, sql: str) -> int:
    out = httpx.post(f"http://{HOST}:{admin_port}/query", json={"sql": sql, "format": "TSV"}, timeout=60)
    out.raise_for_status()
    return int(out.text.strip() or 0)


@dataclass(frozen=True)
class Cost:
    """CPU µs per event of each process: net of idle (the figure) and gross (what /proc said)."""

    net: dict[str, float]
    gross: dict[str, float]
    queryable_s: float  # until the writer had inserted every event
    window_s: float  # until the processes were quiet again
    idle_ms_per_s: dict[str, float]


def _measure(pids: dict[str, int], port: int, admin_port: int, route: Route) -> Cost:
    """CPU per event of each process for ``route``."""

    def cpu() -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in pids.items()}

    # Idle: the same processes, polled the same way, with nothing to do (after what came before is done).
    _settle(cpu)
    idle_from, idle_started = cpu(), time.perf_counter()
    deadline = idle_started + IDLE_S
    while time.perf_counter() < deadline:
        _inserted(admin_port, route.table)
        time.sleep(POLL_S)
    idle_to, idle_seconds = cpu(), time.perf_counter() - idle_started
    idle_rate = {name: (idle_to[name] - idle_from[name]) / idle_seconds for name in pids}

    inserted = _inserted(admin_port, route.table)
    before, started = cpu(), time.perf_counter()
    asyncio.run(_send(port, route))
    while _inserted(admin_port, route.table) < inserted + route.events:
        time.sleep(POLL_S)
    queryable = time.perf_counter() - started
    # Processors that read the same typed records besides the writer (default layout) may still
    # be at work: their CPU belongs to these events too.
    _settle(cpu)
    after, seconds = cpu(), time.perf_counter() - started
    stored = _count(admin_port, route.count_sql)
    if stored != route.events:
        raise RuntimeError(f"cost: {route.name}: {stored} rows for {route.events} events")
    used = {name: after[name] - before[name] for name in pids}
    return Cost(
        net={name: max(used[name] - idle_rate[name] * seconds, 0.0) / route.events * 1e6 for name in pids},
        gross={name: used[name] / route.events * 1e6 for name in pids},
        queryable_s=queryable,
        window_s=seconds,
        idle_ms_per_s={name: rate * 1000 for name, rate in idle_rate.items()},
    )


def _settle(cpu: Callable[[], dict[str, float]], limit_s: float = 60.0) -> None:
    """Return once every process burns under SETTLED_CORES of a core: the load before is done (or after ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    previous = cpu()
    while time.monotonic() < deadline:
        time.sleep(SETTLE_WINDOW_S)
        now = cpu()
        if all(now[name] - previous[name] < SETTLED_CORES * SETTLE_WINDOW_S for name in now):
            return
        previous = now
    print(f"  cost: still busy after {limit_s:.0f} s (another load on the machine?); measuring anyway", flush=True)


def _rows(layout: str, route: Route, cost: Cost, what: str) -> list[Row]:
    per_event = cost.net
    total = sum(per_event.values())
    parts = ", ".join(f"{name} {us:.1f}" for name, us in per_event.items())
    gross = ", ".join(f"{name} {us:.1f}" for name, us in cost.gross.items())
    idle = ", ".join(f"{name} {ms:.0f}" for name, ms in cost.idle_ms_per_s.items())
    rate = route.events / cost.queryable_s if cost.queryable_s else 0.0
    rows = [
        Row(
            f"cost ({layout}): {route.name} — {name} CPU per event vs the 20 µs budget",
            us,
            TARGET_US,
            "µs",
            "(part)",
        )
        for name, us in per_event.items()
    ]
    rows.append(
        Row(
            f"cost ({layout}): {route.name} — whole pipeline CPU per event vs 20 µs",
            total,
            TARGET_US,
            "µs",
            "≤ 1.00",
            f"{what}: {parts} µs net of idle; gross {gross} µs (idle CPU ms/s: {idle}, over a {cost.window_s:.1f} s "
            f"window); {route.events:,} events queryable in {cost.queryable_s:.1f} s ({rate:,.0f}/s); {ANCHOR}",
        )
    )
    return rows


def _run_routes(
    layout: str, pids: dict[str, int], port: int, admin_port: int, routes: list[Route], what: str
) -> list[Row]:
    rows: list[Row] = []
    for route in routes:
        rows += _rows(layout, route, _measure(pids, port, admin_port, route), what)
    return rows


def bench_cost(data_dir: Path, events: int) -> list[Row]:
    def routes_for(tokens: dict[str, str]) -> list[Route]:
        return [
            logister_route(tokens["logister_token"], events),
            forge_route(tokens["forge_token"], tokens["project_id"], events),
        ]

    rows = _split(data_dir / "split", routes_for)
    with forgeline_up(data_dir / "default", ENV) as up:
        pids = {"gateway": up.children["gateway"], "processors": up.children["processors"]}
        what = "gateway + one processors host (every processor)"
        rows += _run_routes("default", pids, up.port, up.admin_port, routes_for(up.tokens), what)
    return rows


def _split(data_dir: Path, routes_for: Callable[[dict[str, str]], list[Route]]) -> list[Row]:
    with ExitStack() as stack:
        up = stack.enter_context(forgeline_up(data_dir, {**ENV, "FORGELINE_PROCESSORS": "writer"}))
        normalizer_admin = free_port()
        argv = [sys.executable, "-m", "services.cli.main", "process", "normalizer", "--data-dir", str(data_dir)]
        argv += ["--admin-port", str(normalizer_admin)]
        log = data_dir / "normalizer.log"
        normalizer = stack.enter_context(process(argv, {**os.environ, **ENV}, log))
        wait_http(f"http://{HOST}:{normalizer_admin}/ready")
        pids = {"gateway": up.children["gateway"], "normalizer": normalizer.pid, "writer": up.children["processors"]}
        what = "gateway, normalizer and writer, one process each"
        return _run_routes("split", pids, up.port, up.admin_port, routes_for(up.tokens), what)
