"""The console's monitor timeline and trajectory heatmap, computed from query rows."""

from __future__ import annotations

import pytest

from services.console.game_pages import heatmap, monitor_timeline

pytestmark = pytest.mark.unit


def test_the_timeline_covers_the_window_by_state() -> None:
    changes = [
        {"previous_state": "ok", "state": "missed", "at_ms": 1_250},
        {"previous_state": "missed", "state": "ok", "at_ms": 1_500},
        {"previous_state": "ok", "state": "failing", "at_ms": 1_900},
    ]
    segments = monitor_timeline(changes, 1_000, 2_000)
    assert [(s["state"], s["left_pct"], s["width_pct"]) for s in segments] == [
        ("ok", 0.0, 25.0),
        ("missed", 25.0, 25.0),
        ("ok", 50.0, 40.0),
        ("failing", 90.0, 10.0),
    ]
    assert sum(s["width_pct"] for s in segments) == 100.0
    # No change in the window: nothing is known to draw.
    assert monitor_timeline([], 1_000, 2_000) == []


def test_the_heatmap_bins_positions_on_the_floor_plane() -> None:
    paths = [{"xs": [0.0, 10.0, 10.0], "ys": [1.0, 1.0, 1.0], "zs": [0.0, 10.0, 10.0]}]
    heat = heatmap(paths, cells=2)
    assert heat["axes"] == ("x", "z") and heat["points"] == 3
    # z grows upwards in the picture: (0, 0) bottom left, (10, 10) twice top right.
    assert heat["grid"] == [[0, 2], [1, 0]] and heat["max"] == 2
    flat = heatmap([{"xs": [0.0, 4.0], "ys": [0.0, 4.0], "zs": []}], cells=2)
    assert flat["axes"] == ("x", "y") and flat["points"] == 2
    assert heatmap([]) == {"grid": [], "max": 0, "points": 0}
