"""One inbox: a game crash and a server exception, through a real `forgeline up`, in one group."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.fixtures.pipeline import ForgelineUp

pytestmark = pytest.mark.integration


def _post(up: ForgelineUp, path: str, body: Any, headers: dict[str, str]) -> Any:
    response = httpx.post(f"{up.base_url}{path}", json=body, headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def test_game_crashes_and_backend_errors_are_grouped_together(forgeline_up: ForgelineUp) -> None:
    up = forgeline_up
    forge = {"Authorization": f"Bearer {up.tokens['forge_token']}"}
    tag = uuid.uuid4().hex[:8]
    version = f"inbox-{tag}"
    session = _post(
        up, "/v1/ingest/sessions", {"build": {"version": version, "platform": "android", "channel": "beta"}}, forge
    )
    sid = session["sessionId"]
    crash = {"exceptionClass": f"MatchTimeout{tag}", "message": "match 17 timed out", "stackTrace": "at Match.cs:9"}
    _post(up, "/v1/ingest/events", [{"sessionId": sid, "type": "exception", "properties": crash}], forge)
    _post(up, "/v1/ingest/events", [{"sessionId": sid, "type": "level_loaded", "severity": "low"}], forge)
    report = {
        "sessionId": sid,
        "title": f"Hard crash {tag}",
        "description": "froze then quit",
        "severity": "critical",
        "reporterType": "system",
        "metadata": {"crash": True},
    }
    _post(up, "/v1/ingest/reports", report, forge)
    backend = {
        "event": {
            "event_type": "error",
            "message": "match 9001 timed out",
            "context": {"exception": {"class": f"MatchTimeout{tag}"}},
        }
    }
    _post(up, "/api/v1/ingest_events", backend, up.auth)

    group = f"forgeline.error_groups FINAL WHERE exception_class = 'MatchTimeout{tag}'"
    assert up.wait_for(f"SELECT sum(event_count) FROM {group}", 2) == 2
    assert up.scalar(f"SELECT count() FROM {group}") == 1, "one group for the game and the server"
    assert up.wait_for(f"SELECT count() FROM forgeline.error_groups FINAL WHERE title = 'Hard crash {tag}'", 1) == 1
    # Each game error carries its session, and through it the build and platform.
    rows = up.sql(
        "SELECT source, build, platform, channel, level FROM forgeline.error_events "
        f"WHERE session_id = '{sid}' ORDER BY level"
    )
    assert rows.splitlines() == [f"game\t{version}\tandroid\tbeta\terror", f"game\t{version}\tandroid\tbeta\tfatal"]
    backend_row = up.sql(
        "SELECT source, build FROM forgeline.error_events "
        f"WHERE exception_class = 'MatchTimeout{tag}' AND session_id = ''"
    )
    assert backend_row.rstrip("\n") == "backend\t", "a server error has no build"
    # The game event stays in its own table too.
    assert up.scalar(f"SELECT count() FROM forgeline.game_events FINAL WHERE session_id = '{sid}'") == 2
