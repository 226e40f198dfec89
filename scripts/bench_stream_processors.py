"""Events/s each stateful processor sustains alone (embedded bus + chDB), one process."""

import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from forgeline.bus.factory import create_bus
from forgeline.bus.port import OutgoingRecord
from forgeline.bus.topics import TYPED_CHECKINS, TYPED_ERRORS, TYPED_SPANS
from forgeline.warehouse.client import ClickHouseWarehouse
from forgeline.warehouse.migrations import migrate
from services.errors.main import ErrorGrouperService
from services.monitors.main import MonitorEvaluatorService
from services.spans.main import SpanAssemblerService

N = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
which = sys.argv[1]
root = Path(tempfile.mkdtemp())
bus = create_bus(f"embedded://{root / 'bus'}")
wh = ClickHouseWarehouse(f"chdb://{root / 'wh'}")
migrate(wh)


def records():
    for i in range(N):
        if which == "errors":
            fp = f"user {i % 200} not found"
            doc = {
                "event_id": str(uuid.uuid4()),
                "project_id": "p",
                "organisation_id": "o",
                "environment": "prod",
                "occurred_at": 1_700_000_000_000 + i,
                "level": "error",
                "message": fp,
                "fingerprint": fp,
                "exception_class": "",
                "release": "r1",
            }
            yield OutgoingRecord(TYPED_ERRORS, orjson.dumps(doc), key=f"p/{i % 200}".encode())
        elif which == "spans":
            t, s = divmod(i, 10)
            doc = {
                "project_id": "p",
                "trace_id": f"t{t}",
                "span_id": f"s{s}",
                "parent_span_id": "" if s == 0 else f"s{(s - 1) // 2}",
                "started_at": 1_700_000_000_000 + s,
                "duration_ms": 10,
                "received_at": 1,
                "event_id": f"{t}-{s}",
            }
            yield OutgoingRecord(TYPED_SPANS, orjson.dumps(doc), key=f"p/t{t}".encode())
        else:
            doc = {
                "event_id": str(i),
                "project_id": "p",
                "environment": "prod",
                "slug": f"m{i % 1000}",
                "status": "ok",
                "expected_interval_seconds": 3600,
                "received_at": 1_700_000_000_000 + i,
            }
            yield OutgoingRecord(TYPED_CHECKINS, orjson.dumps(doc), key=f"p/prod/m{i % 1000}".encode())


async def main():
    p = bus.producer()
    await p.start()
    batch = []
    for r in records():
        batch.append(r)
        if len(batch) == 5000:
            await p.send_many(batch)
            batch = []
    if batch:
        await p.send_many(batch)
    await p.stop()
    topic = {"errors": TYPED_ERRORS, "spans": TYPED_SPANS, "monitors": TYPED_CHECKINS}[which]
    if which == "errors":
        svc = ErrorGrouperService(bus, wh)
    elif which == "spans":
        svc = SpanAssemblerService(bus, wh, quiet_s=0.0)
    else:
        svc = MonitorEvaluatorService(bus, wh, tick_s=3600)
    t = time.perf_counter()
    task = asyncio.create_task(svc.run())
    group = which
    while True:
        await asyncio.sleep(0.2)
        done = 0
        for q in range(bus.partitions(topic)):
            f = root / "bus" / "groups" / group / f"{topic}.{q}.offset"
            if f.exists():
                done += orjson.loads(f.read_bytes())["offset"]
        if done >= N:
            break
    el = time.perf_counter() - t
    svc.stop()
    await task
    print(f"{which}: {N} records in {el:.1f}s = {int(N / el)}/s")


asyncio.run(main())
