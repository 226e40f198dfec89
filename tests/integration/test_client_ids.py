"""One client id is one row: a resend without occurred_at, seconds later, through `forgeline up`."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.fixtures.pipeline import ForgelineUp

pytestmark = pytest.mark.integration


def test_a_resent_event_without_occurred_at_is_one_row(forgeline_up: ForgelineUp) -> None:
    up = forgeline_up
    client_id = str(uuid.uuid4())
    event = {"event": {"event_type": "error", "message": f"resent {client_id}", "uuid": client_id}}
    for _ in range(2):
        response = httpx.post(f"{up.base_url}/api/v1/ingest_events", json=event, headers=up.auth, timeout=10)
        assert response.status_code == 201, response.text
        time.sleep(1.2)  # the second one arrives at another millisecond, and second
    query = f"SELECT count() FROM forgeline.errors WHERE event_id = '{client_id}'"
    assert up.wait_for(query, 2) >= 1  # both written (a merge may already have folded them)
    assert up.scalar(f"SELECT count() FROM forgeline.errors FINAL WHERE event_id = '{client_id}'") == 1
