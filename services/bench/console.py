"""Console pages over a large warehouse: p95 of each page against the p95 of its main query
sent straight to the admin port (what the page adds: sign-in check, a second query, HTML).

The warehouse is filled before `forgeline up` starts (chDB has one owner at a time):
``errors`` and ``error_group_events`` with N error events over 1000 groups, and T traces of
three spans each, all generated server-side (``INSERT … SELECT … FROM numbers``).
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from forgeline.warehouse.client import ClickHouseWarehouse
from forgeline.warehouse.migrations import migrate
from services.bench.harness import HOST, Row, free_port, process, wait_http
from services.console import queries

GROUPS = 1000
# The event's UUID from its number, the same in `errors` and `error_group_events`.
_EVENT_UUID = (
    "toUUID(concat(substring(h, 1, 8), '-', substring(h, 9, 4), '-', substring(h, 13, 4), '-', "
    "substring(h, 17, 4), '-', substring(h, 21, 12)))"
)


def fill(data_dir: Path, project: str, events: int, traces: int) -> None:
    warehouse = ClickHouseWarehouse(f"chdb://{(data_dir / 'warehouse').resolve()}")
    try:
        migrate(warehouse)
        p = f"'{project}'"  # a UUID from bootstrap-tokens.json: nothing to quote
        group = f"lower(hex(MD5(toString(number % {GROUPS}))))"
        when = "now64(3) - toIntervalSecond(number % 1209600)"
        warehouse.command(
            "INSERT INTO forgeline.errors (event_id, legacy_id, organisation_id, project_id, environment, occurred_at,"
            " received_at, level, message, fingerprint, exception_class, release, trace_id, request_id, session_id,"
            f" user_id, context) SELECT {_EVENT_UUID}, number, 'org', {p}, 'production', {when}, now64(3), 'error',"
            f" concat('boom ', toString(number % {GROUPS})), concat('fp-', toString(number % {GROUPS})),"
            " 'RuntimeError', '1.0', '', '', '', '', '{\"k\": 1}'"
            f" FROM (SELECT number, lower(hex(MD5(toString(number)))) AS h FROM numbers({events}))"
        )
        warehouse.command(
            "INSERT INTO forgeline.error_group_events (project_id, group_id, event_id, occurred_at, environment,"
            f" release, level) SELECT {p}, {group}, toString({_EVENT_UUID}), {when}, 'production', '1.0', 'error'"
            f" FROM (SELECT number, lower(hex(MD5(toString(number)))) AS h FROM numbers({events}))"
        )
        warehouse.command(
            "INSERT INTO forgeline.error_groups (project_id, group_id, fingerprint, organisation_id, title,"
            " exception_class, first_seen, last_seen, event_count, last_level, releases, environments, status,"
            " regressed, status_changed_at, recent_event_ids, applied_event_offset, applied_control_offset, version)"
            f" SELECT {p}, {group}, concat('fp-', toString(number)), 'org', concat('boom ', toString(number)),"
            f" 'RuntimeError', now64(3) - toIntervalDay(14), now64(3) - toIntervalSecond(number),"
            f" intDiv({events}, {GROUPS}), 'error', ['1.0'], ['production'], 'unresolved', 0, now64(3), [], 0, 0, 1"
            f" FROM numbers({GROUPS})"
        )
        trace = "concat('t-', toString(intDiv(number, 3)))"
        warehouse.command(
            "INSERT INTO forgeline.trace_summaries (project_id, environment, trace_id, root_span_id, root_name,"
            " started_at, ended_at, duration_ms, span_count, max_depth, error_count, orphan_count, services,"
            " version, summarized_at)"
            f" SELECT {p}, 'production', concat('t-', toString(number)), 's0', concat('GET /route/', toString(number"
            " % 50)), now64(3) - toIntervalSecond(number), now64(3) - toIntervalSecond(number), 120 + number % 300,"
            f" 3, 2, 0, 0, ['api'], 1, now64(3) FROM numbers({traces})"
        )
        warehouse.command(
            "INSERT INTO forgeline.span_tree (project_id, environment, trace_id, span_id, parent_span_id, event_id,"
            " name, kind, status, level, service, started_at, ended_at, received_at, duration_ms, depth, is_orphan,"
            " child_count, self_time_ms, version)"
            f" SELECT {p}, 'production', {trace}, concat('s', toString(number % 3)),"
            " if(number % 3 = 0, '', concat('s', toString(number % 3 - 1))), '', concat('span ', toString(number % 3)),"
            " 'server', 'ok', 'info', 'api', now64(3) - toIntervalSecond(intDiv(number, 3)),"
            " now64(3) - toIntervalSecond(intDiv(number, 3)), now64(3), 100 - 30 * (number % 3), number % 3, 0,"
            f" if(number % 3 = 2, 0, 1), 30, 1 FROM numbers({traces * 3})"
        )
    finally:
        warehouse.close()


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) >= 2 else samples[0]


def _timed(call: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        response = call()
        out.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.text[:500]
    return out


def bench_console(root: Path, events: int, traces: int, requests: int = 40) -> list[Row]:
    data_dir = root / "data"
    cli = [sys.executable, "-m", "services.cli.main"]
    subprocess.run([*cli, "bootstrap", "--data-dir", str(data_dir)], check=True, capture_output=True)
    project = orjson.loads((data_dir / "bootstrap-tokens.json").read_bytes())["project_id"]
    started = time.monotonic()
    fill(data_dir, project, events, traces)
    print(f"  console: {events:,} error events and {traces:,} traces stored in {time.monotonic() - started:.0f} s")
    port, admin_port, console_port = free_port(), free_port(), free_port()
    log = root / "up.log"
    argv = [*cli, "up", "--data-dir", str(data_dir), "--port", str(port), "--admin-port", str(admin_port)]
    with process([*argv, "--console-port", str(console_port)], log=log):
        base, admin = f"http://{HOST}:{console_port}", f"http://{HOST}:{admin_port}"
        wait_http(f"{admin}/ready", 120)
        wait_http(f"{base}/ready", 60)
        found = re.search(r"password (\S+)", log.read_text())
        assert found, "no first-user password in the log"
        with httpx.Client(base_url=base, timeout=30) as client, httpx.Client(base_url=admin, timeout=30) as raw:
            nonce = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
            assert nonce
            form = {"username": "admin", "password": found.group(1), "csrf": nonce.group(1)}
            assert client.post("/login", data=form).status_code == 303, "sign-in failed"
            group = _first_group(raw, project)
            pages = {
                "errors inbox": (f"/p/{project}/errors", queries.ERROR_GROUPS,
                                 {"project": project, "days": 14, "status": "unresolved", "limit": 51, "offset": 0}),
                "error group": (f"/p/{project}/errors/{group}", queries.GROUP_EVENTS,
                                {"project": project, "group": group, "days": 90, "limit": 20}),
                "traces": (f"/p/{project}/traces", queries.TRACES,
                           {"project": project, "trace": "", "name": "", "min_ms": 0, "days": 7, "limit": 51,
                            "offset": 0}),
                "trace waterfall": (f"/p/{project}/traces/t-7", queries.TRACE_SPANS,
                                    {"project": project, "trace": "t-7"}),
            }  # fmt: skip
            rows = []
            for name, (path, sql, params) in pages.items():
                body = {"sql": sql, "format": "JSONEachRow", "params": params}
                page = _p95(_timed(lambda path=path: client.get(path), requests))
                query = _p95(_timed(lambda body=body: raw.post("/query", json=body), requests))
                rows.append(
                    Row(
                        f"console {name} p95 ({events:,} errors, {traces:,} traces)",
                        page,
                        query,
                        "ms",
                        "under 500 ms",
                        "baseline: its main query alone on the admin port",
                    )
                )
            return rows


def _first_group(raw: httpx.Client, project: str) -> str:
    body = {
        "sql": "SELECT group_id FROM forgeline.error_groups WHERE project_id = %(p)s LIMIT 1",
        "format": "JSONEachRow",
        "params": {"p": project},
    }
    return str(orjson.loads(raw.post("/query", json=body).content)["group_id"])
