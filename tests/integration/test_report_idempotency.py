"""Idempotent bug reports through a real `forgeline up` (SPEC 4.1): 50 concurrent identical
requests get identical bodies, and the reports table ends with exactly one row for them."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.fixtures.pipeline import ForgelineUp

pytestmark = pytest.mark.integration


def test_fifty_concurrent_identical_reports_store_one(forgeline_up: ForgelineUp) -> None:
    up = forgeline_up
    headers = {"Authorization": f"Bearer {up.tokens['forge_token']}"}
    session = httpx.post(
        f"{up.base_url}/v1/ingest/sessions",
        json={"build": {"version": f"idem-{uuid.uuid4().hex[:8]}", "platform": "linux"}},
        headers=headers,
        timeout=10,
    ).json()
    sid = session["sessionId"]
    report = {
        "sessionId": sid,
        "title": "Softlock in menu",
        "description": "pressed start twice",
        "severity": "medium",
        "reporterType": "tester",
        "clientRequestId": str(uuid.uuid4()),
    }

    def send(_: int) -> tuple[int, bytes]:
        response = httpx.post(f"{up.base_url}/v1/ingest/reports", json=report, headers=headers, timeout=30)
        return response.status_code, response.content

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(send, range(50)))
    assert {status for status, _ in answers} == {201}
    assert len({body for _, body in answers}) == 1
    # All 50 were enqueued under one reportId (one partition, in order); the reports table
    # (ReplacingMergeTree on report_id) holds one report however many rows the writer wrote.
    assert up.wait_for(f"SELECT count() FROM forgeline.reports WHERE session_id = '{sid}'", 1) >= 1
    assert up.scalar(f"SELECT count() FROM forgeline.reports FINAL WHERE session_id = '{sid}'") == 1
    assert up.scalar(f"SELECT uniqExact(report_id) FROM forgeline.reports WHERE session_id = '{sid}'") == 1
