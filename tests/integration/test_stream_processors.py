"""The stateful processors through a real `forgeline up`: errors → error_groups,
spans → trace_summaries/span_tree, check-ins → monitor_states."""

from __future__ import annotations

import subprocess
import uuid

import httpx
import pytest

from tests.fixtures.pipeline import REPO, ForgelineUp

pytestmark = pytest.mark.integration


def _post(up: ForgelineUp, path: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{up.base_url}{path}", json=body, headers=up.auth, timeout=10)


def _cli(up: ForgelineUp, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        up.cli(*args, "--data-dir", str(up.data_dir)), cwd=REPO, env=up.env(), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def test_errors_group_count_and_resolve_regress(forgeline_up: ForgelineUp) -> None:
    up = forgeline_up
    marker = uuid.uuid4().hex[:12]
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for n, event_id in enumerate(ids):
        event = {"event_type": "error", "message": f"cart {marker}x {n + 100} not found", "uuid": event_id}
        assert _post(up, "/api/v1/ingest_events", {"event": event}).status_code == 201
    # A client retry of the first event: same uuid, counted once.
    retry = {"event_type": "error", "message": f"cart {marker}x 100 not found", "uuid": ids[0]}
    assert _post(up, "/api/v1/ingest_events", {"event": retry}).status_code == 201
    title = f"cart {marker}x <n> not found"
    where = f"FROM forgeline.error_groups FINAL WHERE fingerprint = '{title}'"
    assert up.wait_for(f"SELECT sum(event_count) {where}", 3) == 3
    assert up.scalar(f"SELECT count() {where}") == 1
    assert up.scalar(f"SELECT uniqExact(event_id) FROM forgeline.error_group_events FINAL "
                     f"WHERE group_id IN (SELECT group_id {where})") == 3  # fmt: skip

    group_id = up.sql(f"SELECT group_id {where}").strip()
    out = _cli(up, "errors", "resolve", group_id[:12])
    assert out.returncode == 0, out.stderr
    assert up.wait_for(f"SELECT count() {where} AND status = 'resolved'", 1) == 1
    listing = _cli(up, "errors", "list", "--status", "resolved")
    assert group_id in listing.stdout, listing.stderr

    again = {"event_type": "error", "message": f"cart {marker}x 999 not found"}
    assert _post(up, "/api/v1/ingest_events", {"event": again}).status_code == 201
    assert up.wait_for(f"SELECT count() {where} AND status = 'unresolved' AND regressed = 1", 1) == 1
    assert up.scalar(f"SELECT sum(event_count) {where}") == 4
