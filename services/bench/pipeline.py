"""Bench scenario `pipeline`: `forgeline up`, ingest → queryable latency and throughput."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from services.bench.harness import HOST, Row, forgeline_up, load
from services.bench.payloads import event_body


def bench_pipeline(data_dir: Path, seconds: float) -> list[Row]:
    """`forgeline up`: ingest → queryable latency (marked events) and throughput."""
    env = {"FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000000", "FORGELINE_WRITER_FLUSH_SECONDS": "0.5"}
    with forgeline_up(data_dir, env) as up:
        port, admin = up.port, up.admin_port
        token = up.tokens["logister_token"]
        headers = {"Authorization": f"Bearer {token}"}

        def count(where: str) -> int:
            sql = f"SELECT count() FROM forgeline.errors WHERE {where}"
            out = httpx.post(f"http://{HOST}:{admin}/query", json={"sql": sql, "format": "TSV"}, timeout=30)
            return int(out.text.strip() or 0)

        # Latency: one marked event at a time, polled until queryable.
        latencies: list[float] = []
        with httpx.Client(base_url=f"http://{HOST}:{port}", headers=headers) as client:
            for _ in range(20):
                marker = uuid.uuid4().hex
                sent = time.perf_counter()
                client.post("/api/v1/ingest_events", json={"event": {"event_type": "error", "message": marker}})
                while count(f"message = '{marker}'") == 0:
                    time.sleep(0.02)
                latencies.append((time.perf_counter() - sent) * 1000)
        latencies.sort()

        # Throughput: load for `seconds`, then wait until every acknowledged event is queryable.
        before = count("1")
        started = time.perf_counter()
        result = load(
            port,
            "/api/v1/ingest_events",
            event_body(),
            {"Content-Type": "application/json", **headers},
            32,
            seconds,
        )
        acknowledged = result.statuses.get(201, 0)
        while count("1") < before + acknowledged:
            time.sleep(0.1)
        pipeline_rate = acknowledged / (time.perf_counter() - started)
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1]
    return [
        Row(
            "pipeline: gateway → queryable rows vs the gateway's acknowledgement rate",
            pipeline_rate,
            result.rate,
            "events/s",
            "≥ 0.50",
            "baseline = the slowest raw stage here (the fsync'd single-event route)",
        ),
        Row(
            "pipeline: ingest → queryable p99 vs 2 × writer flush interval",
            p99,
            2 * 500.0,
            "ms",
            "≤ 1.00",
            f"p50 {p50:.0f} ms over {len(latencies)} marked events",
        ),
    ]
