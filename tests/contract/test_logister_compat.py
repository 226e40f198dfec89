"""Logister compatibility: upper-case keys inside an envelope, and malformed commit ids."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.conftest import GatewayHarness

pytestmark = pytest.mark.contract


def _post(gw: GatewayHarness, path: str, body: Any) -> Any:
    return gw.client.post(path, json=body, headers=gw.auth)


def test_upper_case_keys_inside_an_event_envelope_are_accepted(gateway: GatewayHarness) -> None:
    client_id = str(uuid.uuid4())
    body = {"EVENT": {"EVENT_TYPE": "error", "MESSAGE": "boom", "LEVEL": "fatal", "UUID": client_id}}
    response = _post(gateway, "/api/v1/ingest_events", body)
    assert response.status_code == 201, response.text
    assert response.json()["id"] == client_id, "an upper-case UUID is the client's id too"
    raw = gateway.raw()[-1]["body"]
    assert raw["EVENT_TYPE"] == "error"


def test_upper_case_keys_inside_a_check_in_envelope_are_accepted(gateway: GatewayHarness) -> None:
    body = {"CHECK_IN": {"SLUG": "nightly", "STATUS": "ok", "EXPECTED_INTERVAL_SECONDS": 900}}
    assert _post(gateway, "/api/v1/check_ins", body).status_code == 201


@pytest.mark.parametrize("sha", ["abc", "not-a-sha", "g" * 40, "a" * 65, "a1b2c3d 4"])
def test_a_malformed_commit_sha_is_422(gateway: GatewayHarness, sha: str) -> None:
    response = _post(gateway, "/api/v1/deployments", {"deployment": {"release": "1.0.0", "commit_sha": sha}})
    assert response.status_code == 422, response.text
    assert response.json() == {"errors": ["Commit sha is invalid"]}


@pytest.mark.parametrize("sha", ["a1b2c3d", "A1B2C3D4E5F6", "0" * 40, "f" * 64, ""])
def test_a_commit_id_short_long_or_absent_is_201(gateway: GatewayHarness, sha: str) -> None:
    deployment = {"release": f"1.0.{len(sha)}", **({"commit_sha": sha} if sha else {})}
    assert _post(gateway, "/api/v1/deployments", {"deployment": deployment}).status_code == 201


def _received(gw: GatewayHarness, event_id: str) -> list[int]:
    """The receive times of ``event_id`` on the raw log: single records, and batch records' items."""
    return [item["received_at"] for raw in gw.raw() for item in raw.get("items", [raw]) if item["event_id"] == event_id]


def test_a_resent_client_id_without_occurred_at_keeps_its_first_receive_time(gateway: GatewayHarness) -> None:
    client_id = str(uuid.uuid4())
    event = {"event": {"event_type": "error", "message": "boom", "uuid": client_id}}
    assert _post(gateway, "/api/v1/ingest_events", event).status_code == 201
    gateway.clock.advance(30)  # a retry, half a minute later
    assert _post(gateway, "/api/v1/ingest_events", event).status_code == 201
    line = json.dumps(event) + "\n"
    headers = {**gateway.auth, "Content-Type": "application/x-ndjson"}
    assert gateway.client.post("/api/v1/ingest_events/batch", content=line, headers=headers).status_code == 202
    times = set(_received(gateway, client_id))
    assert len(times) == 1, "one receive time, so one occurred_at, so one row"
    other_id = str(uuid.uuid4())
    other = {"event": {"event_type": "error", "message": "boom", "uuid": other_id}}
    assert _post(gateway, "/api/v1/ingest_events", other).status_code == 201
    (arrived,) = _received(gateway, other_id)
    assert arrived > times.pop(), "a new id gets the time it arrives"
