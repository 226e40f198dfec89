"""logister-python's batch delivery, deployments and retries against `forgeline up`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from logister import LogisterClient

from tests.fixtures.pipeline import ForgelineUp

pytestmark = pytest.mark.integration


def test_send_events_250_then_again_stores_250_rows(forgeline_up: ForgelineUp) -> None:
    release = f"batch-{uuid.uuid4()}"
    client = LogisterClient(api_key=forgeline_up.tokens["logister_token"], base_url=forgeline_up.base_url)
    with client:
        prepared = [
            client.prepare_event(event_type="log", level="info", message=f"line {i}", release=release)
            for i in range(250)
        ]
        first = client.send_events(prepared)
        second = client.send_events(prepared)
    for results in (first, second):
        assert len(results) == 250
        assert all(r.error is None for r in results), [r.error for r in results if r.error][:3]
        # 100 + 100 + 50: three batch requests, not 250 single ones.
        assert len({id(r.response) for r in results}) == 3
    assert [r.event_id for r in first] == [e.event_id for e in prepared]
    # The replay is recognised as such by the gateway's bounded memory.
    assert all(r.response is not None and r.response["duplicates"] == len(r.response["results"]) for r in second)

    where = f"FROM forgeline.logs FINAL WHERE release = '{release}'"
    assert forgeline_up.wait_for(f"SELECT count() {where}", 250) == 250
    assert forgeline_up.scalar(f"SELECT uniqExact(event_id) {where}") == 250


def test_record_deployment_lands_in_deployments(forgeline_up: ForgelineUp) -> None:
    release = f"deploy-{uuid.uuid4().hex[:8]}"
    client = LogisterClient(
        api_key=forgeline_up.tokens["logister_token"],
        base_url=forgeline_up.base_url,
        environment="production",
        repository="studio/game-server",
        commit_sha="abc123def",
        branch="main",
    )
    with client:
        answer = client.record_deployment(release=release, workflow_run_url="https://ci.example/run/1")
        again = client.record_deployment(release=release, workflow_run_url="https://ci.example/run/1")
    assert answer["status"] == "accepted"
    assert again["id"] == answer["id"], "the same deployment recorded twice is one deployment"
    query = f"SELECT count() FROM forgeline.deployments FINAL WHERE release = '{release}'"
    assert forgeline_up.wait_for(query, 1) == 1
    row = forgeline_up.sql(
        f"SELECT environment, repository, commit_sha, branch, workflow_run_url FROM forgeline.deployments "
        f"WHERE release = '{release}' LIMIT 1"
    )
    assert row.strip().split("\t") == [
        "production",
        "studio/game-server",
        "abc123def",
        "main",
        "https://ci.example/run/1",
    ]


@pytest.fixture
def limited_up(tmp_path: Path) -> Iterator[ForgelineUp]:
    # Three requests per two-second window (fixed windows): nine requests in a row cannot all
    # fit unless each takes over half a second, so the SDK meets at least one 429.
    env = {
        "LOGISTER_PUBLIC_API_RATE_LIMIT_REQUESTS": "3",
        "LOGISTER_PUBLIC_API_RATE_LIMIT_PERIOD_SECONDS": "2",
    }
    pipeline = ForgelineUp(tmp_path / "data", env=env).start()
    try:
        yield pipeline
    finally:
        pipeline.stop()


def test_sdk_retries_through_429_without_duplicates(limited_up: ForgelineUp) -> None:
    client = LogisterClient(api_key=limited_up.tokens["logister_token"], base_url=limited_up.base_url)
    release = f"retry-{uuid.uuid4()}"
    with client:
        answers = [client.capture_message(f"burst {i}", release=release) for i in range(9)]
    # Some were refused with 429 and retried by the SDK after Retry-After; every one was
    # accepted exactly once.
    assert [a["status"] for a in answers] == ["accepted"] * 9
    metrics = httpx.get(f"{limited_up.base_url}/metrics").text
    limited = [line for line in metrics.splitlines() if 'reason="rate_limited"' in line and "_total" in line]
    assert limited and float(limited[0].split()[-1]) >= 1, "the SDK really was refused at least once"
    where = f"FROM forgeline.logs FINAL WHERE release = '{release}'"
    assert limited_up.wait_for(f"SELECT count() {where}", 9) == 9
    assert limited_up.scalar("SELECT count() FROM forgeline.logs") == 9
