"""The real logister-python SDK (0.6.0 from PyPI), unchanged, against `forgeline up`."""

from __future__ import annotations

import uuid

import pytest
from logister import LogisterClient

from tests.fixtures.pipeline import ForgelineUp

pytestmark = pytest.mark.integration


def test_sdk_error_log_metric_transaction_check_in_land_as_rows(forgeline_up: ForgelineUp) -> None:
    release = f"sdk-{uuid.uuid4()}"
    client = LogisterClient(
        api_key=forgeline_up.tokens["logister_token"],
        base_url=forgeline_up.base_url,
        environment="sdk-test",
        release=release,
    )
    with client:
        try:
            raise KeyError("missing basket item 42")
        except KeyError as err:
            error = client.capture_exception(err, fingerprint="basket-missing")
        log = client.capture_message("player joined", level="info")
        metric = client.capture_metric("db.query", 12.5, unit="ms")
        transaction = client.capture_transaction("GET /shop", 87.25)
        span = client.capture_span("SELECT items", 3.5, kind="db")
        check_in = client.check_in(f"nightly-{release}", "ok", expected_interval_seconds=120)
        batch = client.send_events([{"event_type": "log", "level": "warn", "message": "batched line"}])

    for answer in (error, log, metric, transaction, span, check_in):
        assert answer["status"] == "accepted"
    assert span["type"] == "span"
    # The SDK sends its own uuid per event; Forgeline answers with that id.
    assert batch[0].error is None and batch[0].response is not None
    assert batch[0].response["status"] == "accepted"
    assert batch[0].response["results"][0]["id"] == batch[0].event_id

    expectations = {
        "errors": error["id"],
        "logs": log["id"],
        "metrics": metric["id"],
        "transactions": transaction["id"],
        "spans": span["id"],
        "check_ins": check_in["id"],
    }
    for table, event_id in expectations.items():
        assert forgeline_up.wait_for(f"SELECT count() FROM forgeline.{table} WHERE event_id = '{event_id}'", 1) == 1

    def row(query: str) -> list[str]:
        return forgeline_up.sql(query).strip().split("\t")

    assert row(
        "SELECT exception_class, fingerprint, environment, release FROM forgeline.errors "
        f"WHERE event_id = '{error['id']}'"
    ) == ["KeyError", "basket-missing", "sdk-test", release]
    assert row(f"SELECT name, value, unit FROM forgeline.metrics WHERE event_id = '{metric['id']}'") == [
        "db.query",
        "12.5",
        "ms",
    ]
    assert row(
        f"SELECT transaction_name, duration_ms FROM forgeline.transactions WHERE event_id = '{transaction['id']}'"
    ) == ["GET /shop", "87.25"]
    assert row(
        f"SELECT status, expected_interval_seconds FROM forgeline.check_ins WHERE event_id = '{check_in['id']}'"
    ) == ["ok", "120"]
    assert forgeline_up.wait_for(f"SELECT count() FROM forgeline.logs WHERE event_id = '{batch[0].event_id}'", 1) == 1


def test_sdk_retry_with_same_uuid_stores_one_row(forgeline_up: ForgelineUp) -> None:
    client = LogisterClient(api_key=forgeline_up.tokens["logister_token"], base_url=forgeline_up.base_url)
    with client:
        prepared = client.prepare_event(event_type="log", level="info", message=f"retried {uuid.uuid4()}")
        first = client.send_prepared_event(prepared)
        second = client.send_prepared_event(prepared)
    assert first["id"] == second["id"] == prepared.event_id
    assert (
        forgeline_up.wait_for(f"SELECT count() FROM forgeline.logs WHERE event_id = '{prepared.event_id}'", 2, 5) >= 1
    )
    assert forgeline_up.scalar(f"SELECT count() FROM forgeline.logs FINAL WHERE event_id = '{prepared.event_id}'") == 1
