"""Per-event cost of reading a 100-event Logister NDJSON batch, four ways (µs per event).

    .venv/bin/python scripts/bench_logister_validation.py [rounds]

- ``orjson.loads``: parsing alone, the floor of any Python-side validation;
- ``msgspec decode``: decoding each line into the fast path's Structs (types checked in C);
- ``msgspec decode + validate``: the gateway's fast path (forgeline.schemas.logister_fast):
  decode, plus the few rules types cannot say (blank message, timestamp, context strings);
- ``full path``: what the gateway did per line before the fast path, and still does for a line
  the fast path cannot prove valid: orjson, depth check, envelope, identity, normalize_event.

Best of ``rounds`` (default 200) runs over the same body; a report, never a test.
"""

from __future__ import annotations

import gzip
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from forgeline.schemas import logister
from forgeline.schemas.common import json_depth_exceeds
from forgeline.schemas.logister_fast import accepted_event_id, decode_line
from services.bench import payloads

MAX_DEPTH = 32


def full_path(line: bytes) -> None:
    doc = orjson.loads(line)
    if json_depth_exceeds(doc, MAX_DEPTH):
        raise ValueError("too deep")
    raw = logister.extract_envelope(doc, logister.EVENT_ENVELOPES)
    event_id = uuid.UUID(str(raw.get("uuid", raw.get("event_id"))))
    logister.normalize_event(raw, logister.IngestContext(event_id, "org", "proj", "production", NOW))


def fast_path(line: bytes) -> None:
    if accepted_event_id(line, MAX_DEPTH) is None:
        raise ValueError("the benchmark body should take the fast path")


NOW = datetime.now(UTC)
WAYS: dict[str, Callable[[bytes], object]] = {
    "orjson.loads": orjson.loads,
    "msgspec decode": decode_line,
    "msgspec decode + validate": fast_path,
    "full path": full_path,
}


def best_us_per_event(read: Callable[[bytes], object], lines: list[bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for line in lines:
            read(line)
        best = min(best, time.perf_counter() - started)
    return best / len(lines) * 1e6


def main(rounds: int) -> None:
    body = gzip.decompress(payloads.batch_body(100))
    lines = [line for line in body.split(b"\n") if line.strip()]
    print(f"{len(lines)} events, {len(body)} bytes inflated; best of {rounds} rounds")
    for name, read in WAYS.items():
        print(f"  {name:<28} {best_us_per_event(read, lines, rounds):6.2f} µs/event")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
