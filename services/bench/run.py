"""`forgeline bench [--quick]`: every figure next to a baseline measured in the same run.

These machines are shared and noisy, so only ratios mean something: each scenario runs
ours and its baseline back to back on the same cores and reports ours / baseline.
Nothing here asserts; the tests check correctness, this reports speed.

The runner only: the harness (services.bench.harness) measures, services.bench.payloads
builds what is sent, and each scenario module builds on those two (imports point one way).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from services.bench.console import bench_console
from services.bench.cost import bench_cost
from services.bench.gateway import bench_http, bench_msgpack
from services.bench.harness import Row, print_table
from services.bench.kafka import bench_kafka
from services.bench.memory import bench_memory
from services.bench.pipeline import bench_pipeline
from services.bench.processors import bench_bus, bench_exporter, bench_writer
from services.bench.scale import bench_scale
from services.bench.sizing import bench_sizing


def run_bench(quick: bool, out: Path, only: list[str] | None = None) -> list[Row]:
    seconds = 3.0 if quick else 10.0
    rows: list[Row] = []
    scenarios: dict[str, Callable[[Path], list[Row]]] = {
        "http": lambda d: bench_http(d, seconds),
        "msgpack": lambda d: bench_msgpack(d, seconds),
        "bus": lambda d: bench_bus(d, 5_000 if quick else 50_000),
        "writer": lambda d: bench_writer(d, 20_000 if quick else 200_000),
        "exporter": lambda d: bench_exporter(d, 20_000 if quick else 200_000),
        "pipeline": lambda d: bench_pipeline(d, seconds),
        # CPU µs per event of the gateway, normalizer and writer processes, batch routes (docs/performance.md).
        "cost": lambda d: bench_cost(d, 50_000 if quick else 200_000),
        "memory": lambda d: bench_memory(d, seconds),
        "kafka": lambda d: bench_kafka(d, seconds),
        # Records for the normalizer and the writer (it is ~2× faster): a run's window is seconds long.
        "scale": lambda d: bench_scale(d, 100_000 if quick else 300_000, 200_000 if quick else 800_000),
        # Console pages (p95) over 1M error events and 100k traces (docs/console.md).
        "console": lambda d: bench_console(d, 100_000 if quick else 1_000_000, 10_000 if quick else 100_000),
        # Bytes on disk per event: measured on a small N and scaled to 1M (docs/performance.md).
        "sizing": lambda d: bench_sizing(d, 5_000 if quick else 20_000),
    }
    unknown = set(only or ()) - set(scenarios)
    if unknown:
        raise SystemExit(f"forgeline bench: unknown scenario(s) {sorted(unknown)}; known: {sorted(scenarios)}")
    steps = [step for name, step in scenarios.items() if not only or name in only]
    for step in steps:
        with tempfile.TemporaryDirectory(prefix="forgeline-bench-") as tmp:
            found = step(Path(tmp))
            for row in found:
                print(
                    f"  {row.scenario}: {row.ours:,.0f} vs {row.baseline:,.0f} {row.unit} → {row.ratio:.2f}", flush=True
                )
            rows.extend(found)
    print_table(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "cpus": os.cpu_count(),
        "rows": [{**asdict(r), "ratio": round(r.ratio, 3)} for r in rows],
    }
    out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print(f"\nwritten to {out}")
    return rows
