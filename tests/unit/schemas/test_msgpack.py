"""schemas/msgpack.py: decoding limits, kind inference, validation and rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgpack as mp
import pytest

from forgeline.schemas import msgpack
from forgeline.schemas.checks import Invalid
from forgeline.schemas.records import FUNNEL_STEP, GAMEPLAY_EVENT, PLAYER, TRAJECTORY

pytestmark = pytest.mark.unit

CTX = msgpack.AppContext("org", "proj", "production", "app", datetime(2026, 2, 12, tzinfo=UTC))
BASE = {"app_id": "app", "player_id": "p", "session_id": "s"}


@pytest.mark.parametrize(
    ("doc", "kind"),
    [
        ({"event_name": "Create_Player"}, PLAYER),
        ({"funnel_step_name": "x", "event_name": "Create_Player"}, FUNNEL_STEP),
        ({"event_name": "Jump", "positions": [1, 2, 3]}, GAMEPLAY_EVENT),
        ({"positions": []}, TRAJECTORY),
        ({"timestamp_start": "x"}, TRAJECTORY),
        ({"player_id": "p"}, None),
        ([], None),
    ],
)
def test_kind_is_inferred_from_fields(doc: Any, kind: Any) -> None:
    assert msgpack.infer_kind(doc) is kind


def test_decode_refuses_what_json_cannot_hold() -> None:
    for body in (b"", b"\xc1", mp.packb(mp.ExtType(1, b"x")), mp.packb({"a": b"x"}, use_bin_type=True)):
        with pytest.raises(Invalid):
            msgpack.decode(body, 32)
    with pytest.raises(Invalid):
        msgpack.decode(mp.packb([[[[["deep"]]]]]), 4)
    assert msgpack.decode(mp.packb({"a": [1, 2.5, None, True]}), 32) == {"a": [1, 2.5, None, True]}


def test_trajectory_positions_split_into_parallel_arrays() -> None:
    doc = {
        **BASE,
        "positions": [1, 2, 3, 4, 5, 6],
        "fps": {"mean": 60},
        "timestamp_start": "2026-02-12T10:00:00Z",
        "timestamp_end": "2026-02-12T10:00:05Z",
    }
    kind, row = msgpack.normalize(doc, CTX, uuid.uuid4())
    assert kind is TRAJECTORY
    assert (row["xs"], row["ys"], row["zs"], row["point_count"]) == ([1.0, 4.0], [2.0, 5.0], [3.0, 6.0], 2)
    assert row["fps_mean"] == 60.0 and row["fps_low_1"] is None
    assert set(row) == set(TRAJECTORY.column_names)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"positions": [1, 2]}, "positions"),
        ({"positions": []}, "positions"),
        ({"positions": [1, 2, "3"]}, "positions"),
        ({"timestamp_end": "2026-02-12T09:00:00Z"}, "timestamp_end"),
        ({"fps": {"mean": "fast"}}, "fps.mean"),
        ({"player_id": None}, "player_id"),
    ],
)
def test_trajectory_problems(patch: dict[str, Any], field: str) -> None:
    doc = {
        **BASE,
        "positions": [1, 2, 3],
        "timestamp_start": "2026-02-12T10:00:00Z",
        "timestamp_end": "2026-02-12T10:00:05Z",
        **patch,
    }
    doc = {k: v for k, v in doc.items() if v is not None}
    assert [p.field for p in msgpack.check_item(doc, 0).check.problems] == [field]


def test_gameplay_position_must_be_three_numbers() -> None:
    doc = {**BASE, "event_name": "Jump", "position": [1, 2], "timestamp": "2026-02-12T10:00:00Z"}
    assert [p.field for p in msgpack.check_item(doc, None).check.problems] == ["position"]
    doc["position"] = [1, 2, 3]
    _, row = msgpack.normalize(doc, CTX, uuid.uuid4())
    assert (row["position_x"], row["position_z"]) == (1.0, 3.0)


def test_foreign_app_ids_and_stable_ids() -> None:
    assert msgpack.foreign_app_ids([{"app_id": "app"}, {"app_id": "other"}, {"app_id": 3}, "x"], "app") == [1]
    assert (
        msgpack.event_id("p", "a", "d", 0) == msgpack.event_id("p", "a", "d", 0) != msgpack.event_id("p", "a", "d", 1)
    )
    # Two projects never share a row, even for the same application id and bytes.
    assert msgpack.event_id("p", "a", "d", 0) != msgpack.event_id("q", "a", "d", 0)
    assert msgpack.model_id("p", "a", "l", "h") != msgpack.model_id("q", "a", "l", "h")
