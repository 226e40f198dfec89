"""The game queries of docs/queries.md, run as written against seeded data: the expected numbers."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import msgpack
import pytest

from tests.fixtures.pipeline import ForgelineUp
from tests.integration.test_queries import doc_queries

pytestmark = pytest.mark.integration

GAME_QUERIES = (
    "funnel conversion per step",
    "level heatmap from trajectory points",
    "bug reports per build",
    "sessions per platform and channel",
    "events of one session in order",
)


def _rows(up: ForgelineUp, title: str) -> list[list[str]]:
    return [line.split("\t") for line in up.sql(doc_queries()[title]).splitlines()]


def _forge(up: ForgelineUp, path: str, body: Any) -> Any:
    headers = {"Authorization": f"Bearer {up.tokens['forge_token']}"}
    response = httpx.post(f"{up.base_url}{path}", json=body, headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def _msgpack(up: ForgelineUp, batch: list[dict[str, Any]]) -> None:
    response = httpx.post(
        f"{up.base_url}/api/events",
        content=msgpack.packb(batch),
        headers={"x-public-token": up.tokens["msgpack_public_token"], "Content-Type": "application/msgpack"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_the_doc_has_the_game_queries() -> None:
    assert set(GAME_QUERIES) <= set(doc_queries())


def test_msgpack_queries(forgeline_up: ForgelineUp) -> None:
    up = forgeline_up
    tag = uuid.uuid4().hex[:8]
    app, build, level = up.tokens["msgpack_app_id"], f"b-{tag}", f"L-{tag}"
    steps = []
    # 4 players start the tutorial, 2 finish it.
    for n in range(4):
        for step in ("Tutorial_Start", "Tutorial_End")[: 2 if n < 2 else 1]:
            steps.append(
                {
                    "funnel_step_name": step,
                    "app_id": app,
                    "build_id": build,
                    "player_id": f"p{n}",
                    "session_id": f"s{n}",
                    "timestamp": "2026-02-12T10:00:00Z",
                }
            )
    # Three points in cell (0, 0), one in cell (10, 20); y is ignored by the heatmap.
    realtime = {
        "app_id": app,
        "build_id": build,
        "player_id": "p0",
        "session_id": "s0",
        "level_id": level,
        "positions": [1.0, 5.0, 1.0, 2.0, 5.0, 2.0, 9.9, 0.0, 9.9, 15.0, 0.0, 25.0],
        "timestamp_start": "2026-02-12T10:00:00Z",
        "timestamp_end": "2026-02-12T10:00:05Z",
    }
    _msgpack(up, [*steps, realtime])
    assert up.wait_for(f"SELECT count() FROM forgeline.funnel_steps FINAL WHERE build_id = '{build}'", 6) == 6
    assert up.wait_for(f"SELECT count() FROM forgeline.trajectories FINAL WHERE level_id = '{level}'", 1) == 1

    funnel = {(r[2]): (r[3], r[4]) for r in _rows(up, "funnel conversion per step") if r[1] == build}
    assert funnel == {"Tutorial_Start": ("4", "1"), "Tutorial_End": ("2", "0.5")}
    heat = [(r[2], r[3], r[4]) for r in _rows(up, "level heatmap from trajectory points") if r[1] == level]
    assert heat == [("0", "0", "3"), ("10", "20", "1")]


def test_forge_queries(forgeline_up: ForgelineUp) -> None:
    up = forgeline_up
    tag = uuid.uuid4().hex[:8]
    platform = f"plat-{tag}"
    sessions = [
        _forge(
            up,
            "/v1/ingest/sessions",
            {"build": {"version": version, "platform": platform, "channel": "beta"}},
        )["sessionId"]
        for version in ("1.0", "1.0", "1.1")
    ]
    for sid, severities in zip(sessions, (["critical", "low"], ["critical"], ["medium"]), strict=True):
        for severity in severities:
            _forge(
                up,
                "/v1/ingest/reports",
                {"sessionId": sid, "title": "t", "description": "d", "severity": severity, "reporterType": "qa"},
            )
    last = sessions[-1]
    _forge(
        up,
        "/v1/ingest/events",
        [
            {"sessionId": last, "type": t, "timestamp": at}
            for t, at in (("b", "2026-01-01T00:00:02Z"), ("a", "2026-01-01T00:00:01Z"))
        ],
    )
    assert up.wait_for(f"SELECT count() FROM forgeline.sessions FINAL WHERE platform = '{platform}'", 3) == 3
    assert up.wait_for("SELECT count() FROM forgeline.reports FINAL WHERE title = 't' AND description = 'd'", 4) >= 4
    assert up.wait_for(f"SELECT count() FROM forgeline.game_events FINAL WHERE session_id = '{last}'", 2) == 2
    up.wait_for(f"SELECT count() FROM forgeline.builds FINAL WHERE platform = '{platform}'", 2)

    per_build = {(r[0], r[3], r[4]) for r in _rows(up, "bug reports per build") if r[1] == platform}
    assert per_build == {("1.0", "2", "3"), ("1.1", "0", "1")}
    per_platform = [r[2:4] for r in _rows(up, "sessions per platform and channel") if r[0] == platform]
    assert per_platform == [["3", "2"]]
    assert [r[1] for r in _rows(up, "events of one session in order")] == ["a", "b"]
