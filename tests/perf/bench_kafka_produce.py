"""Produce throughput on a real broker, same run: raw aiokafka vs Forgeline's Kafka producer.

    .venv/bin/python -m tests.perf.bench_kafka_produce [records] [concurrency]

Both use the same settings (acks=all, idempotence, linger 5 ms, 256 KiB batches, no
compression) and the same pattern as the gateway: ``concurrency`` tasks, each sending one
~500-byte record and waiting for its acknowledgement before the next. Not collected by
pytest (not a test_ module); numbers go to docs/performance.md.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from forgeline.bus.factory import create_bus
from forgeline.bus.port import OutgoingRecord
from tests.fixtures.kafka import LocalKafka

VALUE = b"x" * 500


async def _raw(bootstrap: str, topic: str, total: int, concurrency: int) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, VALUE)  # metadata and connections warm
        per_task = total // concurrency
        started = time.perf_counter()

        async def task(n: int) -> None:
            for i in range(per_task):
                await (await producer.send(topic, VALUE, key=f"{n}-{i}".encode()))

        await asyncio.gather(*(task(n) for n in range(concurrency)))
        return per_task * concurrency / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def _ours(bootstrap: str, topic: str, total: int, concurrency: int) -> float:
    bus = create_bus(f"kafka://{bootstrap}?compression=none", 4)
    producer = bus.producer()
    await producer.start()
    try:
        await producer.send(OutgoingRecord(topic, VALUE))
        per_task = total // concurrency
        started = time.perf_counter()

        async def task(n: int) -> None:
            for i in range(per_task):
                await producer.send(OutgoingRecord(topic, VALUE, key=f"{n}-{i}".encode()))

        await asyncio.gather(*(task(n) for n in range(concurrency)))
        return per_task * concurrency / (time.perf_counter() - started)
    finally:
        await producer.stop()


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    with tempfile.TemporaryDirectory() as tmp:
        broker = LocalKafka(Path(tmp))
        broker.start()
        try:
            ours_topic = "bench.ours"
            asyncio.run(_ours(broker.bootstrap, ours_topic, 64, 1))  # creates the topic (4 partitions)
            raw_topic = ours_topic  # same topic, same partitions
            for _ in range(2):
                raw = asyncio.run(_raw(broker.bootstrap, raw_topic, total, concurrency))
                ours = asyncio.run(_ours(broker.bootstrap, ours_topic, total, concurrency))
                print(f"raw aiokafka: {raw:,.0f} records/s   forgeline KafkaProducer: {ours:,.0f} records/s")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
