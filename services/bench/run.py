"""`forgeline bench [--quick]`: every figure next to a baseline measured in the same run.

These machines are shared and noisy, so only ratios mean something: each scenario runs
ours and its baseline back to back on the same cores and reports ours / baseline.
Nothing here asserts; the tests check correctness, this reports speed.
"""

from __future__ import annotations

import asyncio
import gzip
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from forgeline.schemas.forge import new_session_id
from services.bench.loadgen import LoadResult, build_request, load_in_process

HOST = "127.0.0.1"


@dataclass
class Row:
    scenario: str
    ours: float
    baseline: float
    unit: str
    target: str
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def _process(
    argv: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` running while inside; SIGTERM (SIGKILL after 30 s) on leaving. Output to ``log`` or nowhere."""
    with ExitStack() as files:
        out = files.enter_context(open(log, "ab")) if log is not None else subprocess.DEVNULL
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _load(port: int, path: str, body: bytes, headers: dict[str, str], connections: int, seconds: float) -> LoadResult:
    request = build_request(HOST, port, path, body, headers)
    # A separate process: the generator and the server each get a core.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(load_in_process, (HOST, port, request, connections, seconds))


def _event_body() -> bytes:
    return orjson.dumps(
        {
            "event": {
                "event_type": "error",
                "level": "error",
                "message": "NoMethodError in CheckoutService",
                "fingerprint": "checkout-nomethoderror",
                "context": {"environment": "production", "request_id": "abc123", "metadata": {"user_id": 42}},
            }
        }
    )


def _batch_body(n: int) -> bytes:
    event = orjson.loads(_event_body())["event"]
    lines = [orjson.dumps({"event": {**event, "uuid": str(uuid.uuid4())}}) for _ in range(n)]
    return gzip.compress(b"\n".join(lines) + b"\n")


def _forge_batch_body(n: int, project_id: str) -> bytes:
    # Events cite a session of their own project (forgeline.ids "owned" ids): a random UUID is a 403.
    session = str(new_session_id(project_id))
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps(
        [
            {
                "sessionId": session,
                "type": "level_complete",
                "timestamp": now,
                "severity": "low",
                "properties": {"level": f"Level_{i % 12}", "score": i * 10, "deaths": i % 3},
            }
            for i in range(n)
        ]
    )


def _typed_error(i: int, now_ms: int) -> dict[str, Any]:
    """A typed.errors record as the normalizer writes it (the writer's and exporter's input)."""
    return {
        "event_id": str(uuid.uuid4()),
        "legacy_id": i,
        "organisation_id": "org",
        "project_id": "bench",
        "environment": "production",
        "occurred_at": now_ms,
        "received_at": now_ms,
        "level": "error",
        "message": "NoMethodError in CheckoutService",
        "fingerprint": "checkout",
        "exception_class": "NoMethodError",
        "release": "1.0",
        "trace_id": "",
        "request_id": "abc123",
        "session_id": "",
        "user_id": "42",
        "context": '{"environment":"production","request_id":"abc123"}',
    }


@dataclass(frozen=True)
class RunningUp:
    port: int
    admin_port: int
    tokens: dict[str, str]
    children: dict[str, int]


@contextmanager
def forgeline_up(data_dir: Path, env: dict[str, str]) -> Iterator[RunningUp]:
    """`forgeline up` as users run it, on free ports, ready when this yields; SIGTERM after."""
    port, admin = _free_port(), _free_port()
    argv = [sys.executable, "-m", "services.cli.main", "up", "--data-dir", str(data_dir)]
    argv += ["--port", str(port), "--admin-port", str(admin)]
    with _process(argv, {**os.environ, **env}):
        _wait_http(f"http://{HOST}:{port}/ready")
        _wait_http(f"http://{HOST}:{admin}/ready")
        tokens = orjson.loads((data_dir / "bootstrap-tokens.json").read_bytes())
        children = orjson.loads((data_dir / "run.json").read_bytes())["children"]
        yield RunningUp(port, admin, tokens, children)


def bench_http(data_dir: Path, seconds: float) -> list[Row]:
    """Gateway vs a bare Starlette app; and the load generator's own ceiling."""
    rows: list[Row] = []
    env = {
        **os.environ,
        "FORGELINE_DATA_DIR": str(data_dir),
        "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000000",
        "FORGELINE_FORGE_RATE_LIMIT_REQUESTS": "1000000000",
    }
    from services.bench.fixtures import bootstrap_tokens

    tokens = bootstrap_tokens(data_dir)
    token = tokens["logister_token"]
    single, batch, forge = _event_body(), _batch_body(100), _forge_batch_body(200, tokens["project_id"])
    forge_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {tokens['forge_token']}"}
    json_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    batch_headers = {
        "Content-Type": "application/x-ndjson",
        "Content-Encoding": "gzip",
        "Authorization": f"Bearer {token}",
    }

    trivial_port, bare_port, gw_port = _free_port(), _free_port(), _free_port()
    me = [sys.executable, "-m"]
    with _process([*me, "services.bench.servers", "trivial", str(trivial_port)]):
        time.sleep(1.0)
        ceiling = _load(trivial_port, "/", single, json_headers, 32, seconds)
    with _process([*me, "services.bench.servers", "bare", str(bare_port)]):
        _wait_http(f"http://{HOST}:{bare_port}/")
        bare_single = _load(bare_port, "/api/v1/ingest_events", single, json_headers, 32, seconds)
        bare_batch = _load(
            bare_port,
            "/api/v1/ingest_events/batch",
            batch,
            {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
            16,
            seconds,
        )
        bare_forge = _load(bare_port, "/v1/ingest/events", forge, {"Content-Type": "application/json"}, 16, seconds)
    gw_env = {**env, "FORGELINE_PORT": str(gw_port)}
    with _process([*me, "services.cli.main", "gateway"], gw_env):
        _wait_http(f"http://{HOST}:{gw_port}/ready")
        gw_single = _load(gw_port, "/api/v1/ingest_events", single, json_headers, 32, seconds)
        gw_batch = _load(gw_port, "/api/v1/ingest_events/batch", batch, batch_headers, 16, seconds)
        gw_forge = _load(gw_port, "/v1/ingest/events", forge, forge_headers, 16, seconds)

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


def _msgpack_batch(app_id: str, n: int) -> bytes:
    """``n`` MessagePack items, the four kinds of the seed in turn (realtime with 30 points)."""
    import msgpack

    common = {"app_id": app_id, "build_id": "Win64_Shipping_1.0.2", "player_id": "p-1", "session_id": "s-1"}
    kinds: list[dict[str, Any]] = [
        {
            "event_name": "Player_Jump",
            "level_id": "Level_1",
            "position": [10.5, 0.0, -5.2],
            "custom_data": {"ammo": 10},
        },
        {"funnel_step_name": "Tutorial_Start", "level_id": "Level_1"},
        {"event_name": "Create_Player", "region": "EU-West", "hardware": {"gpu": "RTX 4090"}},
        {
            "status": "Gameplay",
            "fps": {"mean": 60, "low_5": 55, "low_1": 30},
            "positions": [float(i) for i in range(30)],
            "timestamp_start": "2026-02-12T10:00:00Z",
            "timestamp_end": "2026-02-12T10:00:05Z",
        },
    ]
    items = []
    for i in range(n):
        item = {**common, **kinds[i % 4]}
        if "positions" not in item:
            item["timestamp"] = "2026-02-12T10:00:00Z"
        items.append(item)
    return bytes(msgpack.packb(items, use_bin_type=True))


def bench_msgpack(data_dir: Path, seconds: float, batch: int = 500) -> list[Row]:
    """POST /api/events, 500-item MessagePack batches: one gateway worker vs bare Starlette + unpackb."""
    from services.bench.fixtures import bootstrap_tokens

    tokens = bootstrap_tokens(data_dir)
    body = _msgpack_batch(tokens["msgpack_app_id"], batch)
    headers = {"Content-Type": "application/msgpack", "x-public-token": tokens["msgpack_public_token"]}
    bare_port, gw_port = _free_port(), _free_port()
    me = [sys.executable, "-m"]
    with _process([*me, "services.bench.servers", "bare", str(bare_port)]):
        _wait_http(f"http://{HOST}:{bare_port}/")
        bare = _load(bare_port, "/api/events", body, headers, 8, seconds)
    gw_env = {
        **os.environ,
        "FORGELINE_DATA_DIR": str(data_dir),
        "FORGELINE_PORT": str(gw_port),
        # The seed's 10 requests/s per source IP would measure the limiter, not the gateway.
        "FORGELINE_MSGPACK_RATE_LIMIT_REQUESTS": "1000000000",
    }
    with _process([*me, "services.cli.main", "gateway"], gw_env):
        _wait_http(f"http://{HOST}:{gw_port}/ready")
        ours = _load(gw_port, "/api/events", body, headers, 8, seconds)
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


def bench_bus(root: Path, total: int) -> list[Row]:
    """Embedded log group-committed appends vs raw write+fsync of the same batches."""
    from forgeline.bus.embedded import EmbeddedBus
    from forgeline.bus.port import OutgoingRecord

    value = _event_body()
    batch = 100

    async def ours() -> float:
        bus = EmbeddedBus(root / "bus", default_partitions=1)
        producer = bus.producer()
        await producer.start()
        records = [OutgoingRecord("bench", value, key=b"k") for _ in range(batch)]
        started = time.perf_counter()
        for _ in range(total // batch):
            await producer.send_many(records)
        elapsed = time.perf_counter() - started
        await producer.stop()
        return total / elapsed

    def raw() -> float:
        path = root / "raw.log"
        chunk = b"".join(len(value).to_bytes(4, "big") + value for _ in range(batch))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        started = time.perf_counter()
        try:
            for _ in range(total // batch):
                os.write(fd, chunk)
                os.fsync(fd)
        finally:
            os.close(fd)
        return total / (time.perf_counter() - started)

    baseline = raw()
    mine = asyncio.run(ours())
    return [
        Row(
            f"bus: embedded append, batches of {batch} (fsync each) vs raw append+fsync",
            mine,
            baseline,
            "records/s",
            "≥ 0.50",
            f"{len(value)}-byte records",
        )
    ]


def bench_writer(root: Path, total: int) -> list[Row]:
    """The writer (typed records → rows → insert → commit) vs a raw clickhouse-connect insert."""
    from prometheus_client import REGISTRY

    from forgeline.bus.embedded import EmbeddedBus
    from forgeline.bus.port import OutgoingRecord
    from forgeline.schemas.records import ERROR
    from forgeline.warehouse.client import ClickHouseWarehouse
    from forgeline.warehouse.migrations import migrate
    from services.writer.main import Writer
    from services.writer.steps import to_columns

    warehouse = ClickHouseWarehouse(f"chdb://{root / 'warehouse'}")
    migrate(warehouse)
    bus = EmbeddedBus(root / "writer-bus", default_partitions=2)
    now = int(time.time() * 1000)
    docs = [_typed_error(i, now) for i in range(total)]
    batch_rows = 5000

    async def fill() -> None:
        producer = bus.producer()
        await producer.start()
        for start in range(0, total, 1000):
            await producer.send_many(
                [
                    OutgoingRecord(ERROR.topic, orjson.dumps(d), key=str(d["event_id"]).encode())
                    for d in docs[start : start + 1000]
                ]
            )
        await producer.stop()

    asyncio.run(fill())

    async def ours() -> float:
        writer = Writer(bus, warehouse, batch_rows=batch_rows, flush_seconds=0.2)
        task = asyncio.create_task(writer.run())
        started = time.perf_counter()
        # Watch the writer's own counter: polling count() would contend for chDB's lock.
        while (REGISTRY.get_sample_value("forgeline_writer_rows_inserted_total", {"table": "errors"}) or 0) < total:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        writer.stop()
        await task
        stored = warehouse.query_rows("SELECT count() FROM forgeline.errors FINAL")[0][0]
        if stored != total:
            raise RuntimeError(f"writer benchmark stored {stored} rows, expected {total}")
        return total / elapsed

    mine = asyncio.run(ours())

    # Baselines: the same rows in the same batch size, with nothing of ours around them —
    # clickhouse-connect's usual row-oriented insert (the "raw insert"), and its
    # fastest path, the rows already transposed to columns (stricter still).
    columns, _ = to_columns(ERROR, [{**d, "project_id": "raw"} for d in docs])
    rows = list(zip(*columns, strict=True))

    def raw_rate(insert_chunk: Callable[[int], None]) -> float:
        started = time.perf_counter()
        for start in range(0, total, batch_rows):
            insert_chunk(start)
        return total / (time.perf_counter() - started)

    by_rows = raw_rate(lambda start: warehouse.insert("errors", rows[start : start + batch_rows], ERROR.column_names))
    by_columns = raw_rate(
        lambda start: warehouse.insert_columns(
            "errors", [column[start : start + batch_rows] for column in columns], ERROR.column_names
        )
    )
    warehouse.close()
    scenario = f"writer: bus → columns → chDB insert → commit, batches of {batch_rows}"
    skipped = "the baseline skips the bus read, JSON decoding and checks"
    return [
        Row(f"{scenario} vs raw row insert", mine, by_rows, "rows/s", "≥ 0.80", skipped),
        Row(f"{scenario} vs raw columnar insert", mine, by_columns, "rows/s", "(stricter)", skipped),
    ]


def bench_exporter(root: Path, total: int) -> list[Row]:
    """The exporter (bus → rows → NDJSON files, fsync'd, committed) vs orjson dumps + write of the rows."""
    from forgeline.blobstore.local import LocalBlobStore
    from forgeline.bus.embedded import EmbeddedBus
    from forgeline.bus.port import OutgoingRecord
    from forgeline.schemas.records import ERROR
    from forgeline.telemetry.metrics import EXPORTER_LINES
    from services.exporter.files import row_from_record
    from services.exporter.main import Exporter

    bus = EmbeddedBus(root / "bus", default_partitions=4)
    now = int(time.time() * 1000)
    values = [orjson.dumps(_typed_error(i, now)) for i in range(total)]
    max_rows = 50_000

    async def fill() -> None:
        producer = bus.producer()
        await producer.start()
        for start in range(0, total, 1000):
            await producer.send_many(
                [
                    OutgoingRecord(ERROR.topic, v, key=str(n).encode())
                    for n, v in enumerate(values[start : start + 1000])
                ]
            )
        await producer.stop()

    asyncio.run(fill())

    async def ours(compress: bool) -> float:
        store = LocalBlobStore(root / f"exports-{compress}", b"bench", "http://127.0.0.1")
        exporter = Exporter(bus, store, max_rows=max_rows, max_bytes=1 << 30, flush_seconds=0.5, compress=compress)
        lines = EXPORTER_LINES.labels(table="errors")
        before = lines._value.get()
        task = asyncio.create_task(exporter.run())
        started = time.perf_counter()
        while lines._value.get() - before < total:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        exporter.stop()
        await task
        return total / elapsed

    def reset() -> None:
        for offset_file in (root / "bus" / "groups" / "exporter").glob("*.offset"):
            offset_file.unlink()

    plain = asyncio.run(ours(False))
    reset()
    gzipped = asyncio.run(ours(True))

    # Baseline: the same rows, already converted, dumped and written in the same file sizes.
    rows = [row_from_record(ERROR, v) for v in values]
    started = time.perf_counter()
    for n, start in enumerate(range(0, total, max_rows)):
        data = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows[start : start + max_rows])
        fd = os.open(root / f"raw-{n}.ndjson", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    baseline = total / (time.perf_counter() - started)
    return [
        Row(
            f"exporter: bus → NDJSON files (atomic, fsync'd, committed), flushes of {max_rows} vs orjson dumps+write",
            plain,
            baseline,
            "lines/s",
            "≥ 0.30",
            "baseline skips reading the bus, decoding and converting records",
        ),
        Row(
            "exporter: the same with gzip vs orjson dumps+write (uncompressed)",
            gzipped,
            baseline,
            "lines/s",
            "report",
        ),
    ]


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
        result = _load(
            port,
            "/api/v1/ingest_events",
            _event_body(),
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


@contextmanager
def _kafka_broker(root: Path) -> Iterator[str | None]:
    """FORGELINE_BENCH_KAFKA (host:port) if set, else the test suite's local KRaft launcher.

    Yields None (the scenario is skipped, with the reason printed) when neither is there.
    """
    given = os.environ.get("FORGELINE_BENCH_KAFKA")
    if given:
        yield given
        return
    # A source checkout has the test suite's launcher (Maven + Java 17). The `forgeline`
    # console script does not put the checkout on sys.path, so add it when it is there.
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "tests" / "fixtures" / "kafka.py").is_file() and str(checkout) not in sys.path:
        sys.path.append(str(checkout))
    try:
        from tests.fixtures.kafka import LocalKafka
    except ImportError as err:
        print(f"  kafka: skipped (set FORGELINE_BENCH_KAFKA=host:port; no local launcher: {err})", flush=True)
        yield None
        return
    broker = LocalKafka(root / "kafka")
    try:
        broker.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        print(f"  kafka: skipped (could not start a local broker: {err!r})", flush=True)
        yield None
        return
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


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

    with _kafka_broker(root) as bootstrap:
        if bootstrap is None:
            return []
        bus_url = f"kafka://{bootstrap}"
        data_dir = root / "data"
        from services.bench.fixtures import bootstrap_tokens

        token = bootstrap_tokens(data_dir, bus_url)["logister_token"]
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        port = _free_port()
        env = {
            **os.environ,
            "FORGELINE_DATA_DIR": str(data_dir),
            "FORGELINE_BUS_URL": bus_url,
            "FORGELINE_PORT": str(port),
            "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000000",
        }
        with _process([sys.executable, "-m", "services.cli.main", "gateway"], env):
            _wait_http(f"http://{HOST}:{port}/ready")
            gateway = _load(port, "/api/v1/ingest_events", _event_body(), headers, 32, seconds)
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


def run_bench(quick: bool, out: Path, only: list[str] | None = None) -> list[Row]:
    from services.bench.console import bench_console
    from services.bench.memory import bench_memory  # these build on this module's helpers
    from services.bench.scale import bench_scale
    from services.bench.sizing import bench_sizing

    seconds = 3.0 if quick else 10.0
    rows: list[Row] = []
    scenarios: dict[str, Callable[[Path], list[Row]]] = {
        "http": lambda d: bench_http(d, seconds),
        "msgpack": lambda d: bench_msgpack(d, seconds),
        "bus": lambda d: bench_bus(d, 5_000 if quick else 50_000),
        "writer": lambda d: bench_writer(d, 20_000 if quick else 200_000),
        "exporter": lambda d: bench_exporter(d, 20_000 if quick else 200_000),
        "pipeline": lambda d: bench_pipeline(d, seconds),
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
    _print_table(rows)
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


def _print_table(rows: list[Row]) -> None:
    print()
    header = f"{'scenario':78} {'ours':>12} {'baseline':>12} {'unit':>10} {'ratio':>7}  target"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.scenario[:78]:78} {r.ours:12,.0f} {r.baseline:12,.0f} {r.unit:>10} {r.ratio:7.2f}  {r.target}")
        if r.note:
            print(f"{'':4}{r.note}")
