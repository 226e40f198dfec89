"""The processor host: one loop, one commit site, one registry, one retry loop, a clock for batchers."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import cast

import pytest

from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.port import OutgoingRecord, Record, TopicPartition
from forgeline.clock import FakeClock
from forgeline.processing.host import ProcessorHost, Runtime, Strategy
from forgeline.processing.loop import next_offsets
from forgeline.processing.retry import retrying
from forgeline.telemetry.metrics import PROCESSOR_BATCH_SIZE, PROCESSOR_RETRIES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
TOPIC = "typed.logs"


class Buffering(Strategy):
    """Holds what it is given until ``join``; fails on a value of b"boom"."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.held: list[Record] = []
        self.seen: list[bytes] = []
        self.calls: list[str] = []

    def capacity(self) -> tuple[int, float]:
        return 10, 0.05

    async def start(self) -> None:
        self.calls.append("start")

    async def submit(self, records: list[Record]) -> None:
        if any(r.value == b"boom" for r in records):
            raise RuntimeError("boom")
        self.held += records
        self.seen += [r.value for r in records]
        if len(self.seen) >= 5:
            self.runtime.host.stop()

    async def join(self) -> None:
        self.calls.append("join")
        await self.runtime.commit(next_offsets(self.held), len(self.held))
        self.held = []

    async def close(self) -> None:
        self.calls.append("close")


async def _append(bus: EmbeddedBus, values: list[bytes]) -> None:
    producer = bus.producer()
    await producer.start()
    await producer.send_many([OutgoingRecord(TOPIC, v, partition=0) for v in values])
    await producer.stop()


async def _committed(bus: EmbeddedBus, group: str) -> int:
    consumer = bus.consumer(group, [TOPIC])
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(TOPIC, 0))
    finally:
        await consumer.stop()


def test_the_host_runs_a_strategy_and_a_graceful_stop_joins_it(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus", default_partitions=1)
    asyncio.run(_append(bus, [f"r{i}".encode() for i in range(5)]))
    host = ProcessorHost("host-test", bus, [TOPIC], Buffering)
    sizes = PROCESSOR_BATCH_SIZE.labels(service="host-test")._sum.get()
    asyncio.run(asyncio.wait_for(host.run(), 30))
    strategy = host.strategy
    assert isinstance(strategy, Buffering)
    assert strategy.seen == [f"r{i}".encode() for i in range(5)]
    # Nothing was committed before the stop; the stop's join committed all of it, then closed.
    assert strategy.calls == ["start", "join", "close"]
    assert asyncio.run(_committed(bus, "host-test")) == 5
    assert PROCESSOR_BATCH_SIZE.labels(service="host-test")._sum.get() == sizes + 5
    assert not host.ready


def test_a_failing_strategy_stops_the_host_uncommitted_and_closes_it(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus", default_partitions=1)
    asyncio.run(_append(bus, [b"ok", b"boom"]))
    host = ProcessorHost("host-fail", bus, [TOPIC], Buffering)
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(asyncio.wait_for(host.run(), 30))
    strategy = host.strategy
    assert isinstance(strategy, Buffering)
    assert strategy.calls == ["start", "close"]  # no join: a failure commits nothing
    assert asyncio.run(_committed(bus, "host-fail")) == 0


def test_the_processing_host_is_the_only_place_that_commits() -> None:
    # Every processor's code and the processing library (the bus adapters implement commit;
    # the bench drives a bare consumer).
    sites = []
    services = [p for p in ROOT.joinpath("services").rglob("*.py") if "bench" not in p.parts]
    for path in [*services, *ROOT.joinpath("libs", "forgeline", "processing").rglob("*.py")]:
        for line in path.read_text().splitlines():
            if re.search(r"consumer\.commit\(", line):
                sites.append(path.relative_to(ROOT).as_posix())
    assert sites == ["libs/forgeline/processing/host.py"]


def test_every_processor_is_built_from_the_registry(tmp_path: Path) -> None:
    from forgeline.config import Settings
    from forgeline.processing.registry import Parts
    from services.supervisor.processors import PROCESSORS, WAREHOUSE_USERS
    from services.supervisor.registry import SERVICES

    assert PROCESSORS == tuple(SERVICES) and len(PROCESSORS) == 7
    assert set(WAREHOUSE_USERS) == {"writer", "errors", "spans", "monitors"}
    text = ROOT.joinpath("services", "supervisor", "processors.py").read_text()
    assert 'if "' not in text  # no chain of names
    settings = Settings.from_env({"FORGELINE_DATA_DIR": str(tmp_path / "data")})
    bus = EmbeddedBus(tmp_path / "bus", default_partitions=1)
    for name, spec in SERVICES.items():
        if not spec.uses_warehouse:
            host = spec.build(Parts(settings, bus))
            assert isinstance(host, ProcessorHost) and host.name == name
        else:
            with pytest.raises(RuntimeError, match="needs the warehouse"):
                spec.build(Parts(settings, bus))


def test_retrying_retries_what_is_retriable_and_raises_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(attempt: int, cap_s: float = 10.0) -> None:
        return None

    monkeypatch.setattr("forgeline.processing.retry.backoff", no_sleep)
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "done"

    before = PROCESSOR_RETRIES.labels(service="retry-test", reason="bus")._value.get()
    result = asyncio.run(retrying(flaky, service="retry-test", reason="bus", retriable=lambda e: True))
    assert result == "done" and len(calls) == 3
    assert PROCESSOR_RETRIES.labels(service="retry-test", reason="bus")._value.get() == before + 2

    async def broken() -> str:
        raise ValueError("bug")

    with pytest.raises(ValueError):
        asyncio.run(retrying(broken, service="retry-test", reason="bus", retriable=lambda e: isinstance(e, OSError)))
    calls.clear()
    with pytest.raises(ConnectionError):  # a stopping caller gives up after its allowance
        asyncio.run(
            retrying(flaky, service="retry-test", reason="bus", retriable=lambda e: True, give_up=lambda a: a >= 1)
        )
    assert len(calls) == 2


def test_the_writer_batch_times_itself_on_the_clock() -> None:
    from services.writer.main import _Batch

    clock = FakeClock(1000.0)
    batch = _Batch(clock=clock)
    clock.advance(5)
    batch.add(Record("dlq.spans", 0, 1, None, b"x", 0, (("source_partition", b"0"),)))
    assert batch.opened_at == 1005.0


def test_every_processor_hands_its_clock_and_dead_letter_policy_to_its_host(tmp_path: Path) -> None:
    from forgeline.blobstore.local import LocalBlobStore
    from forgeline.notify.crypto import SecretBox, load_key
    from forgeline.processing.deadletter import DeadLetterPolicy
    from forgeline.warehouse.port import Warehouse
    from services.errors.main import ErrorGrouperService
    from services.exporter.main import Exporter
    from services.monitors.main import MonitorEvaluatorService
    from services.normalizer.main import Normalizer
    from services.notifier.main import NotifierService
    from services.spans.main import SpanAssemblerService
    from services.writer.main import Writer

    bus = EmbeddedBus(tmp_path / "bus", default_partitions=1)
    warehouse = cast(Warehouse, object())  # not used until run
    clock, policy = FakeClock(), DeadLetterPolicy(max_ratio=0.9)
    store = LocalBlobStore(tmp_path / "out", b"k", "http://x")
    hosts: list[ProcessorHost] = [
        Normalizer(bus, clock=clock, dead_letters=policy),
        Writer(bus, warehouse, 10, 1.0, clock=clock, dead_letters=policy),
        ErrorGrouperService(bus, warehouse, clock=clock, dead_letters=policy),
        SpanAssemblerService(bus, warehouse, quiet_s=1.0, clock=clock, dead_letters=policy),
        MonitorEvaluatorService(bus, warehouse, clock=clock, dead_letters=policy),
        Exporter(
            bus, store, max_rows=1, max_bytes=1, flush_seconds=1, compress=False, clock=clock, dead_letters=policy
        ),
        NotifierService(bus, SecretBox(load_key(tmp_path)), clock=clock, dead_letters=policy),
    ]
    for host in hosts:
        assert host.runtime.clock is clock and host.runtime.dead_letters.limit.policy is policy, host.name
