"""The stateful processors through a real `forgeline up`: errors → error_groups,
spans → trace_summaries/span_tree, check-ins → monitor_states."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.kafka import BUSES, STREAM_TIMINGS
from tests.fixtures.pipeline import REPO, ForgelineUp
from tests.integration.test_queries import doc_queries

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedded_streams_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgelineUp]:
    """A pipeline with short stream-processor timings, so tests wait less than a second."""
    up = ForgelineUp(tmp_path_factory.mktemp("streams") / "data", env=dict(STREAM_TIMINGS)).start()
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture(params=BUSES)
def streams_up(request: pytest.FixtureRequest) -> ForgelineUp:
    """The same timings on either bus (Kafka: the session pipeline, which has them too)."""
    up: ForgelineUp = request.getfixturevalue(
        "embedded_streams_up" if request.param == "embedded" else "kafka_forgeline_up"
    )
    return up


def _post(up: ForgelineUp, path: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{up.base_url}{path}", json=body, headers=up.auth, timeout=10)


def _cli(up: ForgelineUp, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        up.cli(*args, "--data-dir", str(up.data_dir)), cwd=REPO, env=up.env(), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def test_errors_group_count_and_resolve_regress(streams_up: ForgelineUp) -> None:
    up = streams_up
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


def test_spans_out_of_order_become_one_tree_and_summary(streams_up: ForgelineUp) -> None:
    up = streams_up
    trace = f"trace-{uuid.uuid4().hex[:12]}"
    base = {"event_type": "span", "trace_id": trace, "started_at": "2026-01-01T00:00:00Z"}
    # Children first, the root last; one span's parent never arrives (an orphan).
    spans = [
        {**base, "name": "SELECT", "kind": "db", "span_id": "db", "parent_span_id": "app", "duration_ms": 40,
         "started_at": "2026-01-01T00:00:00.050Z"},
        {**base, "name": "render", "span_id": "app", "parent_span_id": "root", "duration_ms": 120,
         "started_at": "2026-01-01T00:00:00.010Z", "status": "error", "context": {"service": "web"}},
        {**base, "name": "lost", "span_id": "lost", "parent_span_id": "gone", "duration_ms": 5},
        {**base, "name": "GET /checkout", "kind": "server", "span_id": "root", "duration_ms": 245,
         "context": {"service": "edge"}},
    ]  # fmt: skip
    for body in spans:
        assert _post(up, "/api/v1/ingest_events", {"event": body}).status_code == 201
    where = f"FROM forgeline.trace_summaries FINAL WHERE trace_id = '{trace}'"
    assert up.wait_for(f"SELECT max(span_count) {where}", 4) == 4
    row = up.sql(f"SELECT root_span_id, max_depth, error_count, orphan_count, services, duration_ms {where}")
    assert row.strip().split("\t") == ["root", "2", "1", "1", "['edge','web']", "245"]
    tree = up.sql(
        f"SELECT span_id, depth, is_orphan, self_time_ms FROM forgeline.span_tree FINAL "
        f"WHERE trace_id = '{trace}' ORDER BY span_id"
    )
    assert tree.split() == ["app", "1", "0", "80", "db", "2", "0", "40", "lost", "0", "1", "5", "root", "0", "0", "125"]

    # A late span re-summarizes the trace: still one current row, with the new count.
    late = {**base, "name": "cache", "span_id": "cache", "parent_span_id": "root", "duration_ms": 3}
    assert _post(up, "/api/v1/ingest_events", {"event": late}).status_code == 201
    assert up.wait_for(f"SELECT max(span_count) {where}", 5) == 5
    assert up.scalar(f"SELECT count() {where}") == 1


def test_monitor_states_failing_missed_recovered(streams_up: ForgelineUp) -> None:
    up = streams_up
    slug = f"job-{uuid.uuid4().hex[:10]}"

    def check_in(status: str, interval: int) -> None:
        body = {"check_in": {"slug": slug, "status": status, "expected_interval_seconds": interval}}
        assert _post(up, "/api/v1/check_ins", body).status_code == 201

    where = f"FROM forgeline.monitor_states FINAL WHERE slug = '{slug}'"
    check_in("error", 3600)
    assert up.wait_for(f"SELECT count() {where} AND state = 'failing'", 1) == 1
    check_in("ok", 1)  # recovers; then nothing comes within 1 s + 1 s margin
    assert up.wait_for(f"SELECT count() {where} AND state = 'recovered'", 1, timeout_s=3) in (0, 1)
    assert up.wait_for(f"SELECT count() {where} AND state = 'missed'", 1, timeout_s=30) == 1
    check_in("ok", 3600)
    assert up.wait_for(f"SELECT count() {where} AND state = 'recovered'", 1) == 1
    history = up.sql(
        f"SELECT state FROM forgeline.monitor_state_changes FINAL WHERE slug = '{slug}' ORDER BY changed_at"
    ).split()
    assert history == ["failing", "recovered", "missed", "recovered"]
    metrics = httpx.get(f"{up.admin_url}/metrics", timeout=10).text
    assert 'forgeline_monitors_monitors{state="recovered"}' in metrics
    assert 'forgeline_monitors_state_changes_total{state="missed"}' in metrics
    assert "forgeline_monitors_stream_clock_seconds" in metrics


def test_documented_queries_show_the_derived_tables(streams_up: ForgelineUp) -> None:
    up = streams_up
    marker = uuid.uuid4().hex[:10]
    error = {"event_type": "error", "message": f"doc {marker} failed", "fingerprint": f"doc-{marker}"}
    span = {"event_type": "span", "name": f"doc {marker}", "trace_id": f"doc-{marker}", "span_id": "s1"}
    for body in (error, span):
        assert _post(up, "/api/v1/ingest_events", {"event": body}).status_code == 201
    body = {"check_in": {"slug": f"doc-{marker}", "status": "error"}}
    assert _post(up, "/api/v1/check_ins", body).status_code == 201
    assert up.wait_for(f"SELECT count() FROM forgeline.error_groups FINAL WHERE fingerprint = 'doc-{marker}'", 1)
    assert up.wait_for(f"SELECT count() FROM forgeline.trace_summaries FINAL WHERE trace_id = 'doc-{marker}'", 1)
    assert up.wait_for(f"SELECT count() FROM forgeline.monitor_states FINAL WHERE slug = 'doc-{marker}'", 1)

    queries = doc_queries()
    inbox = [line.split("\t") for line in up.sql(queries["error groups inbox"]).splitlines()]
    assert [row[1:6] for row in inbox if row[3] == f"doc {marker} failed"] == [
        ["unresolved", "0", error["message"], "1", "1"]
    ]
    assert f"doc-{marker}" in up.sql(queries["slowest traces"])
    assert f"doc {marker}" in up.sql(queries["trace tree with self time"])
    states = [line.split("\t") for line in up.sql(queries["monitor states"]).splitlines()]
    assert [row[3] for row in states if row[2] == f"doc-{marker}"] == ["failing"]
