"""A real `forgeline up` subprocess: HTTP in, rows out through `forgeline sql`."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.fixtures.kafka import BUSES
from tests.fixtures.pipeline import ForgelineUp

pytestmark = pytest.mark.integration


def _post(up: ForgelineUp, path: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{up.base_url}{path}", json=body, headers=up.auth, timeout=10)


@pytest.fixture(params=BUSES)
def pipeline(request: pytest.FixtureRequest) -> ForgelineUp:
    """The same `forgeline up` on either bus (FORGELINE_BUS_URL is the only difference)."""
    fixture = "forgeline_up" if request.param == "embedded" else "kafka_forgeline_up"
    up: ForgelineUp = request.getfixturevalue(fixture)
    return up


def test_every_logister_kind_lands_in_its_table(pipeline: ForgelineUp) -> None:
    forgeline_up = pipeline
    marker = f"e2e-{uuid.uuid4()}"
    ctx = {"environment": "staging", "release": marker}
    sent = {
        "errors": {"event_type": "error", "message": "boom in checkout", "context": ctx},
        "logs": {"event_type": "log", "message": "user logged in", "context": ctx},
        "metrics": {"event_type": "metric", "message": "db.query", "context": {**ctx, "value": 12.5}},
        "transactions": {
            "event_type": "transaction",
            "message": "GET /checkout",
            "transactionName": "GET /checkout",
            "durationMs": 120.5,
            "context": ctx,
        },
        "spans": {
            "event_type": "span",
            "name": "SELECT orders",
            "kind": "db",
            "trace_id": marker,
            "span_id": "span-db",
            "duration_ms": 40.2,
            "context": ctx,
        },
    }
    ids = {}
    for table, event in sent.items():
        response = _post(forgeline_up, "/api/v1/ingest_events", {"event": event})
        assert response.status_code == 201, response.text
        ids[table] = response.json()["id"]
    response = _post(
        forgeline_up,
        "/api/v1/check_ins",
        {
            "check_in": {
                "slug": marker,
                "status": "error",
                "expected_interval_seconds": 900,
                "release": marker,
            }
        },
    )
    assert response.status_code == 201, response.text
    ids["check_ins"] = response.json()["id"]

    for table, event_id in ids.items():
        found = forgeline_up.wait_for(
            f"SELECT count() FROM forgeline.{table} WHERE event_id = '{event_id}'", 1, timeout_s=20
        )
        assert found == 1, f"{table}: {found} rows for {event_id}\n{forgeline_up.tail_log()}"

    row = forgeline_up.sql(
        f"SELECT environment, release, duration_ms, transaction_name FROM forgeline.transactions "
        f"WHERE event_id = '{ids['transactions']}'"
    )
    assert row.strip().split("\t") == ["staging", marker, "120.5", "GET /checkout"]
    check_in = forgeline_up.sql(
        f"SELECT slug, status, expected_interval_seconds FROM forgeline.check_ins WHERE event_id = '{ids['check_ins']}'"
    )
    assert check_in.strip().split("\t") == [marker, "error", "900"]


def test_sql_formats_and_read_only(forgeline_up: ForgelineUp) -> None:
    assert forgeline_up.sql("SELECT 1 AS one", fmt="JSONEachRow").strip() == '{"one":1}'
    with pytest.raises(AssertionError, match="read-only"):
        forgeline_up.sql("DROP TABLE forgeline.errors")
    with pytest.raises(AssertionError, match="one statement"):
        forgeline_up.sql("SELECT 1; DROP TABLE forgeline.errors")
    assert (
        forgeline_up.scalar("SELECT count() FROM system.tables WHERE database = 'forgeline' AND name = 'errors'") == 1
    )


def test_processors_metrics_and_health(forgeline_up: ForgelineUp) -> None:
    assert httpx.get(f"{forgeline_up.admin_url}/health").status_code == 200
    metrics = httpx.get(f"{forgeline_up.admin_url}/metrics").text
    assert "forgeline_processor_records_consumed_total" in metrics
    assert "forgeline_writer_insert_duration_seconds" in metrics
