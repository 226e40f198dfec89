"""Validation cost per event of the game event routes: compiled (msgspec) vs plain decode vs the Python validators.

    .venv/bin/python scripts/bench_game_validation.py [repeats]

Bodies: a 200-event Forge Logger batch and a 500-item MessagePack batch (services.bench.payloads,
the bodies `forgeline bench` sends). For each, µs per event (best of 5 rounds, thread CPU time):

- plain decode: orjson.loads / msgpack.unpackb, no checks at all (the floor);
- msgspec decode + validate: forgeline.schemas.game_structs, what the gateway runs first;
- validators: the Python path the gateway ran before (decode, depth walk, every Check) and still
  runs for a request the compiled path does not accept (to name every problem);
- ids: the Forge eventIds, forge.event_ids (UUID objects) vs game_ids (bytes);
- normalizer: the typed records of the same request from one raw record per event (envelope
  version 1) vs one raw record per request (version 2, split in the normalizer).

It reports; it asserts nothing about time.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import msgpack
import orjson

from forgeline.bus.port import Record
from forgeline.bus.topics import RAW_FORGE, RAW_MSGPACK
from forgeline.schemas import forge, game_ids, game_raw, game_structs
from forgeline.schemas import msgpack as msgpack_schema
from forgeline.schemas.common import json_depth_exceeds
from services.bench import payloads
from services.normalizer.steps import normalize

PROJECT, ENVIRONMENT, APP = "bench-project", "production", "bench-app"
MAX_DEPTH = 32


def per_event(work: Callable[[], object], events: int, repeats: int) -> float:
    """Best-of-5 thread CPU µs per event of ``work`` run ``repeats`` times."""
    work()
    best = float("inf")
    for _ in range(5):
        started = time.thread_time()
        for _ in range(repeats):
            work()
        best = min(best, time.thread_time() - started)
    return best / repeats / events * 1e6


def forge_validators(raw: bytes) -> None:
    """The events route's Python path: parse, depth, items, scope, checks, citations."""
    doc = orjson.loads(raw)
    assert not json_depth_exceeds(doc, MAX_DEPTH)
    items, batch = forge.event_items(doc)
    for item in items:
        assert item.get("projectId") in (None, PROJECT) and item.get("environment") in (None, ENVIRONMENT)
    assert not forge.check_events(items, batch, datetime.now(UTC))
    assert not [p for n, item in enumerate(items) for p in forge.foreign_references(item, PROJECT, index=n)]


def msgpack_validators(raw: bytes) -> None:
    docs, batch = msgpack_schema.items(msgpack_schema.decode(raw, MAX_DEPTH))
    assert not msgpack_schema.foreign_app_ids(docs, APP)
    assert not msgpack_schema.check_items(docs, batch)


def normalizer_rows(forge_body: bytes, packed: bytes, repeats: int) -> list[tuple[str, str, float]]:
    """CPU per event of normalizing one request, as v1 records (one per item) and as one v2 record."""
    tenancy = {"organisation_id": "org", "project_id": PROJECT, "environment": ENVIRONMENT}
    received = {"token_id": "tok", "received_at": 1_775_000_000_000}
    ids = game_ids.forge_event_ids(PROJECT, ENVIRONMENT, hashlib.sha256(forge_body).hexdigest(), 200)
    [forge_v2] = game_raw.forge_events_values({**tenancy, **received}, forge_body, ids)
    msgpack_env = {**tenancy, "app_id": APP, **received}
    [msgpack_v2] = game_raw.msgpack_events_values(msgpack_env, packed, hashlib.sha256(packed).hexdigest())
    rows = []
    for name, topic, v2, events in (
        ("forge 200", RAW_FORGE, forge_v2, 200),
        ("msgpack 500", RAW_MSGPACK, msgpack_v2, 500),
    ):
        v1 = [Record(topic, 0, n, None, orjson.dumps(view), 0) for n, view in enumerate(game_raw.v1_views(topic, v2))]
        one = [Record(topic, 0, 0, None, v2, 0)]
        rows.append(
            (
                name,
                "normalizer: v1, a record per item",
                per_event(lambda v1=v1: [normalize(r) for r in v1], events, repeats),
            )
        )
        rows.append(
            (
                name,
                "normalizer: v2, one record, split",
                per_event(lambda one=one: [normalize(r) for r in one], events, repeats),
            )
        )
    return rows


def main(repeats: int) -> None:
    forge_body = payloads.forge_batch_body(200, PROJECT)
    assert game_structs.forge_events(forge_body, PROJECT, ENVIRONMENT, MAX_DEPTH) is not None
    forge_validators(forge_body)
    rows = [
        ("forge 200", "plain decode (orjson.loads)", per_event(lambda: orjson.loads(forge_body), 200, repeats)),
        (
            "forge 200",
            "msgspec decode + validate",
            per_event(lambda: game_structs.forge_events(forge_body, PROJECT, ENVIRONMENT, MAX_DEPTH), 200, repeats),
        ),
        ("forge 200", "Python validators", per_event(lambda: forge_validators(forge_body), 200, repeats)),
    ]
    digest = hashlib.sha256(forge_body).hexdigest()
    rows += [
        (
            "forge 200",
            "eventIds: forge.event_ids",
            per_event(lambda: [str(i) for i in forge.event_ids(PROJECT, ENVIRONMENT, digest, 200)], 200, repeats),
        ),
        (
            "forge 200",
            "eventIds: game_ids",
            per_event(lambda: game_ids.forge_event_ids(PROJECT, ENVIRONMENT, digest, 200), 200, repeats),
        ),
    ]
    packed = payloads.msgpack_batch(APP, 500)
    assert game_structs.msgpack_items(packed, APP, MAX_DEPTH, 1000) is not None
    msgpack_validators(packed)
    rows += [
        ("msgpack 500", "plain decode (msgpack.unpackb)", per_event(lambda: msgpack.unpackb(packed), 500, repeats)),
        (
            "msgpack 500",
            "msgspec decode + validate",
            per_event(lambda: game_structs.msgpack_items(packed, APP, MAX_DEPTH, 1000), 500, repeats),
        ),
        ("msgpack 500", "Python validators", per_event(lambda: msgpack_validators(packed), 500, repeats)),
    ]
    rows += normalizer_rows(forge_body, packed, repeats)
    for body, what, micros in rows:
        print(f"{body:12s} {what:34s} {micros:7.2f} µs/event")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
