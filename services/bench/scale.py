"""Scale-out on Kafka: the writer and the normalizer with 1 and with 2 replicas in one group.

Each processor's input topic gets ``records`` new records first (keys spread over its
partitions); then ``forgeline process NAME`` runs as 1 replica, and again as 2 replicas in
the same group, each time from the offsets where the fill began (the group is rewound).
A run's rate is the records committed per second from the first commit after the group
is stable with all its replicas until its committed offsets reach the end of the fill,
read through the Kafka admin API every 100 ms. Process start-up, chDB migrations and the
rebalance as the second replica joins are outside the window; what was committed before
it is not counted.

The figure is 2-replica rate / 1-replica rate. Its ceiling on a small machine is the CPU:
the broker, the replicas, this watcher and whatever else runs share the cores, so the row
notes the core count, the load, how busy the machine was in each window and how much of
it the replicas used. ``1 / busy`` of the 1-replica window (the share left idle) bounds
what a second replica can add.

The writer's replicas each have a chDB warehouse of their own (chDB locks its directory,
so two processes cannot share one): this measures the writer's consume → convert →
insert → commit path scaling, not a shared ClickHouse server. Rows are counted in every
replica's warehouse after each run; the sum must be the number of records.

FORGELINE_BENCH_KAFKA must be a broker of the bench's own: this rewinds the ``writer``
and ``normalizer`` consumer groups.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from services.bench.harness import HOST, Row, free_port, kafka_broker, process
from services.bench.payloads import event_body, typed_error

PARTITIONS = 4
# A short session: the rebalance when the second replica joins takes ~1 s (heartbeats every
# session/3) instead of ~3 s. It happens before the measured window either way.
SESSION_TIMEOUT_MS = 3000
FILL_CHUNK = 2000


@dataclass(frozen=True)
class Sample:
    """One look at the consumer group: when, what it committed, who is in it, the machine's CPU."""

    at: float  # time.monotonic()
    committed: int  # sum of the group's committed offsets on the input topic
    members: int
    stable: bool
    machine_busy: float  # CPU seconds since boot, all cores: busy, and busy + idle (/proc/stat)
    machine_total: float
    replicas_cpu: float  # CPU seconds the replicas used so far (/proc/PID/stat)
    broker_cpu: float  # ... the broker (0 when it is not a process of this machine)
    own_cpu: float  # ... this process (the watcher)


@dataclass(frozen=True)
class Window:
    rate: float  # records/s inside the window
    records: int  # records committed inside the window
    seconds: float
    busy: float  # share of all cores busy during the window (0..1); NaN if unknown
    replica_cores: float  # cores the replicas used together, on average, during the window
    broker_cores: float  # cores the broker used (0 when it is elsewhere)
    own_cores: float  # cores the watcher used


def steady_window(samples: Sequence[Sample], end: int, replicas: int) -> Window:
    """The window from the first commit after the group is stable with ``replicas`` members
    to the first sample where it committed everything (the topic's end offsets add up to ``end``).

    Starting at a commit, not at the moment the group settled, keeps the batches that were
    read before it (and are committed inside the window) out of the count.
    Raises ValueError when the group never settled and committed before the end.
    """
    settled = next((n for n, s in enumerate(samples) if s.stable and s.members == replicas), None)
    start = None
    if settled is not None:
        base = samples[settled].committed
        start = next((s for s in samples[settled:] if s.committed > base), None)
    done = next((s for s in samples if s.committed >= end), None)
    if start is None or done is None:
        raise ValueError(
            f"no window: settled with {replicas} member(s) and committed {start is not None}, done {done is not None}"
        )
    seconds = done.at - start.at
    records = end - start.committed
    if seconds <= 0 or records <= 0:
        raise ValueError(f"the group settled only as the work was done ({records} records left)")
    available = done.machine_total - start.machine_total
    busy = (done.machine_busy - start.machine_busy) / available if available > 0 else float("nan")
    return Window(
        records / seconds,
        records,
        seconds,
        busy,
        (done.replicas_cpu - start.replicas_cpu) / seconds,
        (done.broker_cpu - start.broker_cpu) / seconds,
        (done.own_cpu - start.own_cpu) / seconds,
    )


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_cpu() -> tuple[float, float]:
    """(busy, busy + idle) CPU seconds of all cores since boot; (0, 0) without /proc/stat."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return (sum(fields) - idle) / _TICK, sum(fields) / _TICK


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` used so far; 0 without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    return (float(fields[11]) + float(fields[12])) / _TICK


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` on this machine (Linux /proc), if it is ours to see."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


@dataclass(frozen=True)
class Processor:
    name: str  # `forgeline process NAME`, also its consumer group
    topic: str  # the input topic filled and watched
    make: Callable[[int, int], tuple[bytes, bytes]]  # (i, now_ms) → (key, value)
    env: dict[str, str]
    output: str | None = None  # a topic it forwards every input record to (checked after each run)


def _raw_logister(i: int, now_ms: int) -> tuple[bytes, bytes]:
    """A raw.logister record as the gateway's publish_raw writes it (single-event route)."""
    event_id = uuid.uuid4()
    body = {**orjson.loads(event_body())["event"], "fingerprint": f"checkout-{i % 64}"}
    value = {
        "v": 1,
        "route": "ingest_events",
        "event_id": str(event_id),
        "organisation_id": "org",
        "project_id": "bench",
        "environment": "production",
        "token_id": "bench-token",
        "received_at": now_ms,
        "body": body,
    }
    return event_id.bytes, orjson.dumps(value)


def _typed(i: int, now_ms: int) -> tuple[bytes, bytes]:
    # Keyed by event id (as bench_writer does), not by fingerprint: the bench's errors
    # share a few fingerprints, and one hot key cannot be spread over replicas by design.
    doc = typed_error(i, now_ms)
    return str(doc["event_id"]).encode(), orjson.dumps(doc)


async def _fill(bus_url: str, topic: str, make: Callable[[int, int], tuple[bytes, bytes]], total: int) -> None:
    from forgeline.bus.factory import create_bus
    from forgeline.bus.port import ADMIN_SEND_TIMEOUT_S, OutgoingRecord

    producer = create_bus(bus_url, PARTITIONS).producer(send_timeout_s=ADMIN_SEND_TIMEOUT_S)
    await producer.start()  # provisions every topic of the pipeline, PARTITIONS each
    now = int(time.time() * 1000)
    # aiokafka retries the first sends to brand-new partitions (NotLeaderForPartition, one
    # warning each) until the broker's metadata settles: expected here, not worth printing.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for start in range(0, total, FILL_CHUNK):
            chunk = [make(i, now) for i in range(start, min(total, start + FILL_CHUNK))]
            await producer.send_many([OutgoingRecord(topic, value, key=key) for key, value in chunk])
    finally:
        await producer.stop()
        quiet.setLevel(level)


async def _end_offsets(bus_url: str, topic: str) -> dict[int, int]:
    from forgeline.bus.factory import create_bus

    reader = create_bus(bus_url, PARTITIONS).reader([topic])  # assigned every partition
    await reader.start()
    try:
        return {tp.partition: offset for tp, offset in (await reader.end_offsets()).items()}
    finally:
        await reader.stop()


async def _rewind(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` (partition → offset) on the topic for the group, which has no members now."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): offset for p, offset in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


async def _watch(
    bootstrap: str,
    group: str,
    topic: str,
    end: int,
    pids: Sequence[int],
    broker_pid: int | None,
    alive: Callable[[], None],
    timeout_s: float,
) -> list[Sample]:
    """Sample the group every 100 ms until its committed offsets on ``topic`` add up to ``end``."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    samples: list[Sample] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            alive()
            try:
                offsets = await admin.list_consumer_group_offsets(group)
                described = (await admin.describe_consumer_groups([group]))[0].to_object()["groups"][0]
            except KafkaError:  # the coordinator is still loading: the group is not there yet
                offsets, described = {}, {"state": "", "members": []}
            busy, available = _machine_cpu()
            committed = sum(max(meta.offset, 0) for tp, meta in offsets.items() if tp.topic == topic)
            samples.append(
                Sample(
                    time.monotonic(),
                    committed,
                    len(described["members"]),
                    described["state"] == "Stable",
                    busy,
                    available,
                    sum(_process_cpu(pid) for pid in pids),
                    _process_cpu(broker_pid) if broker_pid is not None else 0.0,
                    time.process_time(),
                )
            )
            if committed >= end:
                return samples
            if time.monotonic() > deadline:
                raise RuntimeError(f"{group}: committed up to {committed} of {end} after {timeout_s:.0f} s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def _metric(admin_port: int, name: str, labels: dict[str, str]) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://{HOST}:{admin_port}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@dataclass(frozen=True)
class Kafka:
    bootstrap: str
    bus_url: str
    pid: int | None  # the broker's process when it runs on this machine (for its CPU time)


@dataclass(frozen=True)
class RunResult:
    window: Window
    shares: list[float]  # records each replica consumed, as a share of what they consumed together


def _run(
    root: Path,
    kafka: Kafka,
    proc: Processor,
    replicas: int,
    span: tuple[dict[int, int], dict[int, int]],
    timeout_s: float,
) -> RunResult:
    """``replicas`` processes in one group, from the ``span``'s first offsets (partition → offset) to its last."""
    first, last = span
    total = sum(last.values()) - sum(first.values())
    asyncio.run(_rewind(kafka.bootstrap, proc.name, proc.topic, first))
    output_before = sum(asyncio.run(_end_offsets(kafka.bus_url, proc.output)).values()) if proc.output else 0
    ports = [free_port() for _ in range(replicas)]
    logs = [root / f"{proc.name}-{replicas}x-{n}.log" for n in range(replicas)]
    with ExitStack() as stack:
        running = []
        for n, (port, log) in enumerate(zip(ports, logs, strict=True)):
            data_dir = root / f"{proc.name}-{replicas}x-{n}"
            env = {
                **os.environ,
                **proc.env,
                "FORGELINE_DATA_DIR": str(data_dir),
                # chDB locks its directory: each writer replica has a warehouse of its own.
                "FORGELINE_WAREHOUSE_DSN": f"chdb://{data_dir / 'warehouse'}",
                "FORGELINE_BUS_URL": kafka.bus_url,
                "FORGELINE_PARTITIONS": str(PARTITIONS),
                "FORGELINE_ADMIN_PORT": str(port),
            }
            argv = [sys.executable, "-m", "services.cli.main", "process", proc.name]
            running.append(stack.enter_context(process(argv, env, log=log)))

        def alive() -> None:
            for child, log in zip(running, logs, strict=True):
                if child.poll() is not None:
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                    raise RuntimeError(f"{proc.name} replica exited with {child.returncode}:\n{tail}")

        end = sum(last.values())
        pids = [child.pid for child in running]
        samples = asyncio.run(_watch(kafka.bootstrap, proc.name, proc.topic, end, pids, kafka.pid, alive, timeout_s))
        window = steady_window(samples, end, replicas)
        consumed = [
            _metric(port, "forgeline_processor_records_consumed_total", {"service": proc.name, "topic": proc.topic})
            for port in ports
        ]
        dead = sum(_metric(port, "forgeline_processor_dead_letters_total", {"service": proc.name}) for port in ports)
        if dead:
            raise RuntimeError(f"{proc.name}: {dead:.0f} records dead-lettered; the bench's records must be valid")
        if proc.output:
            # Forwarded before committed: everything is on the output topic by now (at least once).
            forwarded = sum(asyncio.run(_end_offsets(kafka.bus_url, proc.output)).values()) - output_before
            if forwarded < total:
                raise RuntimeError(
                    f"{proc.name} with {replicas} replica(s) committed all {total} records but forwarded "
                    f"{forwarded} to {proc.output}: {total - forwarded} lost"
                )
        if proc.name == "writer":
            stored = sum(_count(port, "SELECT count() FROM forgeline.errors FINAL") for port in ports)
            if stored != total:
                raise RuntimeError(
                    f"writer with {replicas} replica(s) committed all {total} records but stored {stored} rows "
                    f"(fewer: records lost; more: written twice, to two replicas' warehouses)"
                )
    read = sum(consumed) or 1.0
    return RunResult(window, [c / read for c in consumed])


def _count(admin_port: int, sql: str) -> int:
    out = httpx.post(f"http://{HOST}:{admin_port}/query", json={"sql": sql, "format": "TSV"}, timeout=30)
    out.raise_for_status()
    return int(out.text.strip() or 0)


def cpu_breakdown(window: Window, cores: int, broker_known: bool) -> str:
    """Where the window's busy cores went: replicas, broker, watcher and the rest (other load)."""
    broker_cores = window.broker_cores if broker_known else 0.0
    rest = window.busy * cores - window.replica_cores - broker_cores - window.own_cores
    broker = f"broker {broker_cores:.2f} + " if broker_known else ""
    other = "other" if broker_known else "broker and other"
    return (
        f"busy {window.busy:.0%} = replicas {window.replica_cores:.2f} + {broker}"
        f"watcher {window.own_cores:.2f} + {other} {max(rest, 0.0):.2f} cores"
    )


def _scale_row(root: Path, kafka: Kafka, proc: Processor, total: int) -> Row:
    # A bound, not a figure: start-up plus the records at 2,000/s (far below either processor's rate).
    timeout_s = 60.0 + total / 2000
    # Offsets before and after the fill: a broker given by FORGELINE_BENCH_KAFKA may hold older records.
    first = asyncio.run(_end_offsets(kafka.bus_url, proc.topic))
    asyncio.run(_fill(kafka.bus_url, proc.topic, proc.make, total))
    last = asyncio.run(_end_offsets(kafka.bus_url, proc.topic))
    added = {p: last[p] - first.get(p, 0) for p in last}
    if sum(added.values()) != total or sum(1 for n in added.values() if n) < 2:
        raise RuntimeError(f"{proc.topic}: expected {total} records over ≥ 2 partitions, found {added}")
    load = os.getloadavg()[0]
    one = _run(root, kafka, proc, 1, (first, last), timeout_s).window
    run_two = _run(root, kafka, proc, 2, (first, last), timeout_s)
    two = run_two.window
    cores = os.cpu_count() or 1
    ceiling = min(2.0, 1 / one.busy) if one.busy > 0 else float("nan")
    known = kafka.pid is not None
    note = (
        f"{total:,} records over {len(added)} partitions; measured 1× {one.records:,} in {one.seconds:.1f} s, "
        f"2× {two.records:,} in {two.seconds:.1f} s (replicas read {'/'.join(f'{s:.0%}' for s in run_two.shares)}). "
        f"CPU, {cores} cores, load {load:.1f} before: 1× {cpu_breakdown(one, cores, known)}; "
        f"2× {cpu_breakdown(two, cores, known)}. CPU headroom after 1×: min(2, 1/busy) ≈ {ceiling:.2f}"
    )
    if two.busy < 0.8:
        note += f"; {1 - two.busy:.0%} of the cores idle in 2×: the replicas waited on something other than CPU"
    if proc.name == "writer":
        note += ". One chDB per replica (chDB locks its directory); rows counted after each run"
    return Row(
        f"scale: {proc.name} on Kafka, 2 replicas vs 1 (one group, {PARTITIONS} partitions)",
        two.rate,
        one.rate,
        "records/s",
        "≥ 1.70 where cores allow (see CPU headroom)",
        note,
    )


def bench_scale(root: Path, normalizer_records: int, writer_records: int) -> list[Row]:
    from forgeline.bus.topics import RAW_LOGISTER
    from forgeline.schemas.records import ERROR

    with kafka_broker(root) as bootstrap:
        if bootstrap is None:
            return []
        host, _, port = bootstrap.rpartition(":")
        pid = listener_pid(int(port)) if host in ("127.0.0.1", "localhost") else None
        kafka = Kafka(bootstrap, f"kafka://{bootstrap}?session_timeout_ms={SESSION_TIMEOUT_MS}", pid)
        quiet = {"FORGELINE_LOG_LEVEL": "warning"}
        # A short flush interval: the last partial batch of a run is not held for 1 s.
        writer = Processor("writer", ERROR.topic, _typed, {**quiet, "FORGELINE_WRITER_FLUSH_SECONDS": "0.2"})
        normalizer = Processor("normalizer", RAW_LOGISTER, _raw_logister, quiet, output=ERROR.topic)
        return [
            _scale_row(root, kafka, writer, writer_records),
            _scale_row(root, kafka, normalizer, normalizer_records),
        ]
