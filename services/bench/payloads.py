"""Request bodies and bus records the bench scenarios send (the same shapes clients and the normalizer produce)."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from forgeline.schemas.forge import new_session_id


def event_body() -> bytes:
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


def batch_body(n: int) -> bytes:
    event = orjson.loads(event_body())["event"]
    lines = [orjson.dumps({"event": {**event, "uuid": str(uuid.uuid4())}}) for _ in range(n)]
    return gzip.compress(b"\n".join(lines) + b"\n")


def forge_batch_body(n: int, project_id: str) -> bytes:
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


def typed_error(i: int, now_ms: int) -> dict[str, Any]:
    """A typed.errors record as the normalizer writes it (the writer's and exporter's input)."""
    return {
        "event_id": str(uuid.uuid4()),
        "legacy_id": i,
        "organisation_id": "org",
        "project_id": "bench",
        "environment": "production",
        "occurred_at": now_ms - 250,  # sent by the client, as its SDKs do (a row without one is looked up)
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


def msgpack_batch(app_id: str, n: int) -> bytes:
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
