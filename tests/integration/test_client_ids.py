"""One client id is one row, whatever the retry timing, through `forgeline up`.

An event that names itself (Logister's `uuid`; a Forge Logger request resent as it was
derives the same ids) but sends no time is stored at its receive time. A resend arrives
later: the first resend reaches the same gateway, which remembers the first receipt; the
second reaches a gateway restarted in between, which does not — the writer then finds the
stored row by id and writes the resend as that row.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx
import pytest

from tests.fixtures.pipeline import ForgelineUp

pytestmark = pytest.mark.integration


def _restart_gateway(up: ForgelineUp) -> None:
    victim = up.children()["gateway"]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while up.children().get("gateway") == victim:
        assert time.monotonic() < deadline, "the supervisor did not restart the gateway"
        time.sleep(0.2)
    up.wait_ready(60)


def _post(url: str, body: object, headers: dict[str, str]) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:  # the restarted gateway may still be loading its tokens
        response = httpx.post(url, json=body, headers=headers, timeout=10)
        if response.status_code not in (401, 503) or time.monotonic() > deadline:
            return response
        time.sleep(0.3)


def test_a_resent_event_without_its_time_is_one_row_across_a_gateway_restart(forgeline_up: ForgelineUp) -> None:
    up = forgeline_up
    forge = {"Authorization": f"Bearer {up.tokens['forge_token']}"}
    session = {"build": {"version": "1.0.0", "platform": "linux", "channel": "qa"}, "player": {"deviceId": "d-r"}}
    r = _post(f"{up.base_url}/v1/ingest/sessions", session, forge)
    assert r.status_code == 201, r.text
    client_id = str(uuid.uuid4())
    logister = {"event": {"event_type": "error", "message": f"resent {client_id}", "uuid": client_id}}
    game = [{"sessionId": r.json()["sessionId"], "type": f"crash_{client_id[:8]}", "severity": "low"}]

    game_ids: set[str] = set()
    for attempt in range(3):
        if attempt == 2:
            _restart_gateway(up)
        response = _post(f"{up.base_url}/api/v1/ingest_events", logister, up.auth)
        assert response.status_code == 201, response.text
        response = _post(f"{up.base_url}/v1/ingest/events", game, forge)
        assert response.status_code in (200, 201, 202), response.text
        game_ids.update(response.json()["eventIds"])
        time.sleep(1.1)  # every copy arrives at another second
    assert len(game_ids) == 1, "a request resent as it was names the same event"
    game_id = game_ids.pop()

    errors = f"FROM forgeline.errors {{}} WHERE event_id = '{client_id}'"
    events = f"FROM forgeline.game_events {{}} WHERE event_id = '{game_id}'"
    # The copies after the restart are written as the first receipt's row (the writer counts them).
    deadline = time.monotonic() + 60
    while _resends(up, "errors") < 1 or _resends(up, "game_events") < 1:
        assert time.monotonic() < deadline, "the resends after the restart were never written as the first row"
        time.sleep(0.5)
    assert up.scalar(f"SELECT count() {errors.format('FINAL')}") == 1
    assert up.scalar(f"SELECT count() {events.format('FINAL')}") == 1
    # Every copy took the first receipt's times.
    assert up.scalar(f"SELECT uniqExact(occurred_at, received_at) {errors.format('')}") == 1
    assert up.scalar(f"SELECT uniqExact(occurred_at, received_at) {events.format('')}") == 1


def _resends(up: ForgelineUp, table: str) -> float:
    try:
        metrics = httpx.get(f"{up.admin_url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return 0.0  # the processors are restarting
    name = f'forgeline_writer_resends_total{{table="{table}"}} '
    return sum(float(line.removeprefix(name)) for line in metrics.splitlines() if line.startswith(name))
