"""A `forgeline up` fed at a steady rate with short log retention holds a flat disk footprint.

An hour of a small studio's traffic, compressed: retention of one second, segments closed
every 200 ms, a steady stream for fifteen seconds. The bus directory must stop growing once
retention kicks in, while every event still reaches the warehouse (the processors keep up,
so retention never takes anything they need).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fixtures.pipeline import ForgelineUp, post_until_acknowledged

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENV = {
    "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000",
    "FORGELINE_BUS_RETENTION_MS": "1000",
    "FORGELINE_BUS_SEGMENT_MS": "200",
    "FORGELINE_BUS_SEGMENT_BYTES": "65536",
}


def bus_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.log") if p.is_file())


async def steady_feed(up: ForgelineUp, release: str, seconds: float, per_second: int) -> tuple[int, list[int]]:
    """POST ``per_second`` events each second for ``seconds``; sample the log size each second."""
    sent = 0
    samples: list[int] = []
    async with httpx.AsyncClient(base_url=up.base_url, timeout=30) as client:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            tick = time.monotonic()
            batch = []
            for _ in range(per_second):
                event = {"event_type": "log", "message": "x" * 400, "release": release, "uuid": str(uuid.uuid4())}
                batch.append(post_until_acknowledged(client, "/api/v1/ingest_events", {"event": event}, up.auth))
            await asyncio.gather(*batch)
            sent += per_second
            samples.append(bus_bytes(up.data_dir / "bus"))
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    return sent, samples


def test_steady_feed_with_short_retention_holds_a_flat_footprint(tmp_path: Path) -> None:
    up = ForgelineUp(tmp_path / "data", env=ENV).start()
    try:
        release = f"retention-{uuid.uuid4()}"
        sent, samples = asyncio.run(steady_feed(up, release, seconds=15, per_second=100))
        assert len(samples) >= 10, samples
        count = up.wait_for(f"SELECT count() FROM forgeline.logs FINAL WHERE release = '{release}'", sent, 120)
        assert count == sent, up.tail_log()
        # Each event goes through raw and typed topics (~1 KB a record on the log): far more
        # went through than the log holds at the end.
        written = sent * 1000
        assert samples[-1] < written / 3, samples
        # Flat: after the first seconds (retention of 1 s, segments of 200 ms, consumers'
        # commits), the footprint stops growing with time.
        early, late = samples[2:5], samples[-3:]
        assert max(late) <= 1.5 * max(early) + 256 * 1024, samples
    finally:
        up.stop()
