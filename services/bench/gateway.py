"""Bench scenarios `http` and `msgpack`: one gateway worker vs a bare Starlette app, same bodies."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from services.bench.fixtures import bootstrap_tokens
from services.bench.harness import HOST, Row, free_port, load, process, wait_http
from services.bench.payloads import batch_body, event_body, forge_batch_body, msgpack_batch


def bench_http(data_dir: Path, seconds: float) -> list[Row]:
    """Gateway vs a bare Starlette app; and the load generator's own ceiling."""
    rows: list[Row] = []
    env = {
        **os.environ,
        "FORGELINE_DATA_DIR": str(data_dir),
        "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000000",
        "FORGELINE_FORGE_RATE_LIMIT_REQUESTS": "1000000000",
    }
    tokens = bootstrap_tokens(data_dir)
    token = tokens["logister_token"]
    single, batch, forge = event_body(), batch_body(100), forge_batch_body(200, tokens["project_id"])
    forge_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {tokens['forge_token']}"}
    json_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    batch_headers = {
        "Content-Type": "application/x-ndjson",
        "Content-Encoding": "gzip",
        "Authorization": f"Bearer {token}",
    }

    trivial_port, bare_port, gw_port = free_port(), free_port(), free_port()
    me = [sys.executable, "-m"]
    with process([*me, "services.bench.servers", "trivial", str(trivial_port)]):
        time.sleep(1.0)
        ceiling = load(trivial_port, "/", single, json_headers, 32, seconds)
    with process([*me, "services.bench.servers", "bare", str(bare_port)]):
        wait_http(f"http://{HOST}:{bare_port}/")
        bare_single = load(bare_port, "/api/v1/ingest_events", single, json_headers, 32, seconds)
        bare_batch = load(
            bare_port,
            "/api/v1/ingest_events/batch",
            batch,
            {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
            16,
            seconds,
        )
        bare_forge = load(bare_port, "/v1/ingest/events", forge, {"Content-Type": "application/json"}, 16, seconds)
    gw_env = {**env, "FORGELINE_PORT": str(gw_port)}
    with process([*me, "services.cli.main", "gateway"], gw_env):
        wait_http(f"http://{HOST}:{gw_port}/ready")
        gw_single = load(gw_port, "/api/v1/ingest_events", single, json_headers, 32, seconds)
        gw_batch = load(gw_port, "/api/v1/ingest_events/batch", batch, batch_headers, 16, seconds)
        gw_forge = load(gw_port, "/v1/ingest/events", forge, forge_headers, 16, seconds)

    rows.append(
        Row(
            "load generator vs the fastest server (trivial asyncio 201)",
            ceiling.rate,
            bare_single.rate,
            "req/s",
            "≫ 1 (generator not the bottleneck)",
            "ratio = generator ceiling / bare app",
        )
    )
    rows.append(
        Row(
            "gateway: Logister single-event POST (fsync'd) vs bare Starlette",
            gw_single.rate,
            bare_single.rate,
            "req/s",
            "≥ 0.60",
            f"p50 {gw_single.percentile(50):.1f} ms, p99 {gw_single.percentile(99):.1f} ms; "
            f"statuses {gw_single.statuses}",
        )
    )
    rows.append(
        Row(
            "gateway: Logister batch of 100 (gzip NDJSON) vs bare Starlette",
            gw_batch.rate * 100,
            bare_batch.rate * 100,
            "events/s",
            "≥ 0.60",
            f"statuses {gw_batch.statuses}",
        )
    )
    rows.append(
        Row(
            "gateway: Forge Logger batch of 200 events vs bare Starlette",
            gw_forge.rate * 200,
            bare_forge.rate * 200,
            "events/s",
            "≥ 0.60",
            f"{gw_forge.rate:,.0f} req/s; statuses {gw_forge.statuses}",
        )
    )
    rows.append(
        Row(
            "gateway: batch route vs single route (events/s)",
            gw_batch.rate * 100,
            gw_single.rate,
            "events/s",
            "> 1",
        )
    )
    return rows


def bench_msgpack(data_dir: Path, seconds: float, batch: int = 500) -> list[Row]:
    """POST /api/events, 500-item MessagePack batches: one gateway worker vs bare Starlette + unpackb."""
    tokens = bootstrap_tokens(data_dir)
    body = msgpack_batch(tokens["msgpack_app_id"], batch)
    headers = {"Content-Type": "application/msgpack", "x-public-token": tokens["msgpack_public_token"]}
    bare_port, gw_port = free_port(), free_port()
    me = [sys.executable, "-m"]
    with process([*me, "services.bench.servers", "bare", str(bare_port)]):
        wait_http(f"http://{HOST}:{bare_port}/")
        bare = load(bare_port, "/api/events", body, headers, 8, seconds)
    gw_env = {
        **os.environ,
        "FORGELINE_DATA_DIR": str(data_dir),
        "FORGELINE_PORT": str(gw_port),
        # The seed's 10 requests/s per source IP would measure the limiter, not the gateway.
        "FORGELINE_MSGPACK_RATE_LIMIT_REQUESTS": "1000000000",
    }
    with process([*me, "services.cli.main", "gateway"], gw_env):
        wait_http(f"http://{HOST}:{gw_port}/ready")
        ours = load(gw_port, "/api/events", body, headers, 8, seconds)
    return [
        Row(
            f"gateway: MessagePack batch of {batch} (1 worker, validated, fsync'd) vs bare Starlette + unpackb",
            ours.rate * batch,
            bare.rate * batch,
            "events/s",
            "report",
            f"{len(body):,} B per batch; p50 {ours.percentile(50):.1f} ms, p99 {ours.percentile(99):.1f} ms; "
            f"statuses {ours.statuses} (baseline {bare.statuses})",
        )
    ]
