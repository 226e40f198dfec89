"""Game telemetry through a real `forgeline up`: HTTP in, rows out through `forgeline sql`."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import msgpack
import pytest

from tests.fixtures.pipeline import ForgelineUp

pytestmark = pytest.mark.integration


def _forge(up: ForgelineUp, path: str, body: Any) -> Any:
    headers = {"Authorization": f"Bearer {up.tokens['forge_token']}"}
    response = httpx.post(f"{up.base_url}{path}", json=body, headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_forge_session_events_and_report_land_in_their_tables(forgeline_up: ForgelineUp) -> None:
    up = forgeline_up
    version = f"it-{uuid.uuid4().hex[:8]}"
    session = _forge(
        up,
        "/v1/ingest/sessions",
        {"build": {"version": version, "platform": "linux", "channel": "qa"}, "player": {"deviceId": "d-1"}},
    )
    sid = session["sessionId"]
    events = _forge(
        up,
        "/v1/ingest/events",
        [{"sessionId": sid, "type": f"step-{n}", "timestamp": f"2026-04-08T14:30:0{n}Z"} for n in range(3)],
    )
    report = {
        "sessionId": sid,
        "title": "Crash on load",
        "description": "",
        "severity": "critical",
        "reporterType": "qa",
        "eventIds": events["eventIds"],
        "clientRequestId": str(uuid.uuid4()),
        "export": ["jira"],
    }
    first = _forge(up, "/v1/ingest/reports", report)
    assert _forge(up, "/v1/ingest/reports", report) == first

    assert up.wait_for(f"SELECT count() FROM forgeline.sessions FINAL WHERE session_id = '{sid}'", 1) == 1
    assert up.wait_for(f"SELECT count() FROM forgeline.game_events FINAL WHERE session_id = '{sid}'", 3) == 3
    assert up.wait_for(f"SELECT count() FROM forgeline.reports WHERE session_id = '{sid}'", 2) >= 1
    assert up.scalar(f"SELECT count() FROM forgeline.reports FINAL WHERE session_id = '{sid}'") == 1
    assert up.wait_for(f"SELECT count() FROM forgeline.builds FINAL WHERE version = '{version}'", 1) == 1
    assert (
        up.sql(f"SELECT toString(build_id) FROM forgeline.builds FINAL WHERE version = '{version}'").strip()
        == (session["buildId"])
    )
    ordered = up.sql(f"SELECT type FROM forgeline.game_events FINAL WHERE session_id = '{sid}' ORDER BY occurred_at")
    assert ordered.split() == ["step-0", "step-1", "step-2"]
    row = up.sql(f"SELECT export_providers, length(event_ids) FROM forgeline.reports FINAL WHERE session_id = '{sid}'")
    assert row.strip() == "['jira']\t3"


def test_a_msgpack_batch_of_each_kind_lands_in_its_table(forgeline_up: ForgelineUp) -> None:
    up = forgeline_up
    app = up.tokens["msgpack_app_id"]
    session = f"s-{uuid.uuid4().hex[:8]}"
    common = {"app_id": app, "build_id": "Win64_1.0", "player_id": f"p-{session}"}
    batch = [
        {**common, "event_name": "Create_Player", "region": "EU", "timestamp": "2026-02-12T10:00:00Z"},
        {**common, "funnel_step_name": "Tutorial_Start", "session_id": session, "timestamp": "2026-02-12T10:00:01Z"},
        {
            **common,
            "event_name": "Player_Jump",
            "session_id": session,
            "level_id": "Level_1",
            "position": [1.0, 2.0, 3.0],
            "custom_data": {"ammo": 10},
            "timestamp": "2026-02-12T10:00:02Z",
        },
        {
            **common,
            "session_id": session,
            "level_id": "Level_1",
            "fps": {"mean": 60, "low_5": 55, "low_1": 30},
            "positions": [10.0, 0.0, 1.0, 10.1, 0.0, 1.1],
            "timestamp_start": "2026-02-12T10:00:00Z",
            "timestamp_end": "2026-02-12T10:00:05Z",
        },
    ]
    response = httpx.post(
        f"{up.base_url}/api/events",
        content=msgpack.packb(batch),
        headers={"x-public-token": up.tokens["msgpack_public_token"], "Content-Type": "application/msgpack"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    player = common["player_id"]
    assert up.wait_for(f"SELECT count() FROM forgeline.players FINAL WHERE player_id = '{player}'", 1) == 1
    assert up.wait_for(f"SELECT count() FROM forgeline.funnel_steps FINAL WHERE session_id = '{session}'", 1) == 1
    assert up.wait_for(f"SELECT count() FROM forgeline.gameplay_events FINAL WHERE session_id = '{session}'", 1) == 1
    assert up.wait_for(f"SELECT count() FROM forgeline.trajectories FINAL WHERE session_id = '{session}'", 1) == 1
    row = up.sql(f"SELECT point_count, xs, fps_low_1 FROM forgeline.trajectories FINAL WHERE session_id = '{session}'")
    assert row.strip() == "2\t[10,10.1]\t30"
    assert up.scalar(f"SELECT count() FROM forgeline.dead_letters WHERE payload LIKE '%{session}%'") == 0


def test_a_level_model_upload_then_an_event_both_land_and_no_processor_restarts(forgeline_up: ForgelineUp) -> None:
    """POST /api/models used to crash the normalizer (KeyError in its partition key) on every
    restart: nothing after it was stored again, for any tenant."""
    up = forgeline_up
    children = up.children()
    level = f"Level-{uuid.uuid4().hex[:8]}"
    model = httpx.post(
        f"{up.base_url}/api/models",
        data={"app_name": "default-game", "level_name": level},
        files={"model_file": ("level.glb", b"glTF-model-bytes", "model/gltf-binary")},
        headers={"x-api-key": up.tokens["msgpack_secret_key"]},
        timeout=10,
    )
    assert model.status_code == 200, model.text
    model_id = model.json()["model_id"]
    session = f"s-{uuid.uuid4().hex[:8]}"
    event = {
        "app_id": up.tokens["msgpack_app_id"],
        "build_id": "Win64_1.0",
        "player_id": f"p-{session}",
        "session_id": session,
        "event_name": "Level_Start",
        "level_id": level,
        "timestamp": "2026-02-12T10:00:00Z",
    }
    response = httpx.post(
        f"{up.base_url}/api/events",
        content=msgpack.packb([event]),
        headers={"x-public-token": up.tokens["msgpack_public_token"], "Content-Type": "application/msgpack"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert up.wait_for(f"SELECT count() FROM forgeline.gameplay_events FINAL WHERE session_id = '{session}'", 1) == 1
    where = f"FROM forgeline.level_models FINAL WHERE model_id = '{model_id}'"
    assert up.wait_for(f"SELECT count() {where}", 1) == 1
    assert up.sql(f"SELECT level_name, size_bytes {where}").strip() == f"{level}\t16"
    assert up.scalar(f"SELECT count() FROM forgeline.dead_letters WHERE payload LIKE '%{level}%'") == 0
    assert up.children() == children  # the same processes: nothing crashed and restarted
