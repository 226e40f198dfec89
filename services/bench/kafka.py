"""Bench scenario `kafka`: one gateway worker producing to Kafka vs raw aiokafka, same records."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from services.bench.fixtures import bootstrap_tokens
from services.bench.harness import HOST, Row, free_port, kafka_broker, load, process, wait_http
from services.bench.payloads import event_body


async def _raw_aiokafka(bootstrap: str, template: Any, concurrency: int, seconds: float) -> float:
    """The baseline: one process, ``concurrency`` tasks, each sending the gateway's record and awaiting its ack."""
    from aiokafka import AIOKafkaProducer

    from forgeline.bus.kafka_options import KafkaOptions

    options = KafkaOptions.from_url(f"kafka://{bootstrap}")
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=options.linger_ms,
        max_batch_size=options.batch_bytes,
        compression_type=options.compression_type,
    )
    await producer.start()
    sent = 0
    try:
        await producer.send_and_wait(template.topic, template.value, key=template.key, partition=template.partition)
        stop_at = time.monotonic() + seconds

        async def task() -> None:
            nonlocal sent
            while time.monotonic() < stop_at:
                ack = await producer.send(
                    template.topic,
                    template.value,
                    key=template.key,
                    partition=template.partition,
                    headers=list(template.headers) or None,
                )
                await ack
                sent += 1

        started = time.monotonic()
        await asyncio.gather(*(task() for _ in range(concurrency)))
        return sent / (time.monotonic() - started)
    finally:
        await producer.stop()


async def _one_record(bus_url: str, topic: str) -> Any:
    from forgeline.bus.factory import create_bus

    reader = create_bus(bus_url).reader([topic])
    await reader.start()
    try:
        for _ in range(50):
            records = await reader.poll(1, timeout_s=0.2)
            if records:
                return records[0]
        raise RuntimeError(f"no record on {topic}")
    finally:
        await reader.stop()


def bench_kafka(root: Path, seconds: float) -> list[Row]:
    """One gateway worker producing to Kafka vs raw aiokafka sending the same records from one process."""
    from forgeline.bus.topics import RAW_LOGISTER

    with kafka_broker(root) as bootstrap:
        if bootstrap is None:
            return []
        bus_url = f"kafka://{bootstrap}"
        data_dir = root / "data"
        token = bootstrap_tokens(data_dir, bus_url)["logister_token"]
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        port = free_port()
        env = {
            **os.environ,
            "FORGELINE_DATA_DIR": str(data_dir),
            "FORGELINE_BUS_URL": bus_url,
            "FORGELINE_PORT": str(port),
            "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000000",
        }
        with process([sys.executable, "-m", "services.cli.main", "gateway"], env):
            wait_http(f"http://{HOST}:{port}/ready")
            gateway = load(port, "/api/v1/ingest_events", event_body(), headers, 32, seconds)
        # The very record the gateway wrote (value, key, headers), sent again by raw aiokafka.
        template = asyncio.run(_one_record(bus_url, RAW_LOGISTER))
        raw = asyncio.run(_raw_aiokafka(bootstrap, template, 32, seconds))
    return [
        Row(
            "kafka: gateway single-event POST (acks=all) vs raw aiokafka, same records, 32 in flight",
            gateway.rate,
            raw,
            "records/s",
            "≥ 0.50",
            f"gateway p50 {gateway.percentile(50):.1f} ms, p99 {gateway.percentile(99):.1f} ms; "
            f"statuses {gateway.statuses}; record {len(template.value)} bytes",
        )
    ]
