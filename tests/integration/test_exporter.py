"""The NDJSON exporter through a real `forgeline up`: flush requests, read-back, backfill, kill -9."""

from __future__ import annotations

import gzip
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from forgeline.schemas.records import ERROR, METRIC, SPAN, RecordKind
from services.exporter.files import encode_line, read_lines, row_from_warehouse
from tests.fixtures.pipeline import REPO, ForgelineUp, free_port

pytestmark = pytest.mark.integration


def exported_rows(root: Path, table: str, pattern: str = "*.ndjson*") -> list[tuple[str, dict[str, Any]]]:
    """(file key, row) for every line of every file of ``table`` (read_lines refuses partial files)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for path in sorted((root / table).rglob(pattern)):
        key = path.relative_to(root).as_posix()
        out.extend((key, row) for row in read_lines(path.read_bytes()))
    return out


def exported_lines(root: Path, table: str, field: str, marker: str) -> list[bytes]:
    lines: list[bytes] = []
    for path in sorted((root / table).rglob("*.ndjson*")):
        data = path.read_bytes()
        data = gzip.decompress(data) if path.name.endswith(".gz") else data
        lines.extend(line + b"\n" for line in data.splitlines() if marker in orjson.loads(line)[field])
    return lines


def warehouse_lines(up: ForgelineUp, kind: RecordKind, where: str) -> list[bytes]:
    columns = ", ".join(kind.column_names)
    # No SETTINGS (the admin endpoint runs read-only): row_from_warehouse reads quoted 64-bit ints.
    sql = f"SELECT {columns} FROM forgeline.{kind.table} FINAL WHERE {where}"
    return [
        encode_line(row_from_warehouse(kind, orjson.loads(line))) for line in up.sql(sql, "JSONEachRow").splitlines()
    ]


def wait_until(check: Any, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return bool(check())


def send_logister(up: ForgelineUp, marker: str) -> None:
    events = [{"event_type": "error", "level": "error", "message": f"{marker} error {i}", "fingerprint": f"fp-{i % 3}",
               "context": {"n": i, "unicode": "ü✓"}} for i in range(20)]  # fmt: skip
    events += [{"event_type": "metric", "message": f"{marker} metric {i}", "name": f"{marker}.m", "value": i,
                "unit": "ms"} for i in range(10)]  # fmt: skip
    events += [{"event_type": "span", "name": f"{marker} span {i}", "trace_id": f"{marker}-t", "span_id": f"s{i}",
                "parent_span_id": "s0" if i else "", "duration_ms": 1.5 * i} for i in range(5)]  # fmt: skip
    with httpx.Client(base_url=up.base_url, headers=up.auth, timeout=10) as client:
        for event in events:
            response = client.post("/api/v1/ingest_events", json={"event": event})
            assert response.status_code == 201, response.text


def test_a_flush_request_writes_files_that_read_back_as_the_warehouse_rows(forgeline_up: ForgelineUp) -> None:
    up = forgeline_up
    marker = f"x{uuid.uuid4().hex[:10]}"
    send_logister(up, marker)
    checks = [(ERROR, "message", 20), (METRIC, "name", 10), (SPAN, "name", 5)]
    for kind, field, n in checks:
        where = f"position({field}, '{marker}') > 0"
        assert up.wait_for(f"SELECT count() FROM forgeline.{kind.table} FINAL WHERE {where}", n) == n

    # The exporter's timer is an hour here (tests/fixtures/pipeline.py): only the request flushes.
    assert httpx.post(f"{up.base_url}/api/export", timeout=10).status_code == 200
    for kind, field, n in checks:
        found = wait_until(lambda k=kind, f=field, n=n: len(exported_lines(up.exports, k.table, f, marker)) >= n)
        assert found, up.tail_log()

    # Every exported line is, byte for byte, the warehouse row rendered the same way.
    for kind, field, n in checks:
        ours = sorted(exported_lines(up.exports, kind.table, field, marker))
        theirs = sorted(warehouse_lines(up, kind, f"position({field}, '{marker}') > 0"))
        assert len(ours) == n and ours == theirs, kind.table

    # And ClickHouse itself reads the files back into the table's values (chDB, in this process).
    import chdb

    structure = ", ".join(
        f"{line.split(chr(9))[0]} {line.split(chr(9))[1]}"
        for line in up.sql("DESCRIBE TABLE forgeline.errors", "TSVRaw").splitlines()
    ).replace("'", "\\'")
    columns = ", ".join(ERROR.column_names)
    query = f"SELECT {columns} FROM %s WHERE position(message, '{marker}') > 0 ORDER BY event_id"
    files = f"file('{up.exports}/errors/*/*/*.ndjson', 'JSONEachRow', '{structure}')"
    from_files = str(chdb.query(query % files, "JSONEachRow"))
    from_table = up.sql(query % "forgeline.errors FINAL", "JSONEachRow")
    assert from_files.count("\n") == 20 and from_files == from_table

    metrics = httpx.get(f"{up.admin_url}/metrics", timeout=10).text
    assert 'forgeline_exporter_flushes_total{reason="request"}' in metrics
    assert 'forgeline_exporter_lines_written_total{table="errors"}' in metrics
    assert httpx.get(f"{up.admin_url}/ready", timeout=10).json()["checks"]["exporter"] is True


def test_backfill_writes_the_same_lines_from_the_warehouse(forgeline_up: ForgelineUp, tmp_path: Path) -> None:
    up = forgeline_up
    marker = f"b{uuid.uuid4().hex[:10]}"
    send_logister(up, marker)
    assert up.wait_for(f"SELECT count() FROM forgeline.errors FINAL WHERE position(message, '{marker}') > 0", 20) == 20
    out = tmp_path / "backfill"
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    argv = up.cli("export", "--kind", "errors", "--from", hour_ago, "--to", soon, "--out", str(out), "--gzip")
    done = subprocess.run([*argv, "--data-dir", str(up.data_dir)], cwd=REPO, env=up.env(), capture_output=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert b"hours" in done.stderr  # the progress bar
    files = sorted(out.rglob("backfill-*.ndjson.gz"))
    assert files and all("errors/date=" in p.as_posix() for p in files)
    ours = sorted(exported_lines(out, "errors", "message", marker))
    assert ours == sorted(warehouse_lines(up, ERROR, f"position(message, '{marker}') > 0"))

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(up.cli(*args), cwd=REPO, env=up.env(), capture_output=True, timeout=60, check=False)

    bad = cli("export", "--kind", "nope", "--from", "2026-01-01", "--to", "2026-01-02", "--out", str(out))
    assert bad.returncode == 1 and b"unknown kind 'nope'" in bad.stderr
    backwards = cli("export", "--kind", "errors", "--from", "2026-01-02", "--to", "2026-01-01", "--out", str(out))
    assert backwards.returncode == 1 and b"--to must be after --from" in backwards.stderr


def ready(admin_url: str) -> bool:
    try:
        response = httpx.get(f"{admin_url}/ready", timeout=2)
    except httpx.TransportError:
        return False
    return response.status_code == 200 and response.json()["checks"] == {"exporter": True}


def file_count(root: Path) -> int:
    return len(list((root / "errors").rglob("*.ndjson"))) if (root / "errors").exists() else 0


@pytest.mark.slow
def test_kill_9_of_the_exporter_mid_write_leaves_no_partial_file_and_no_duplicate(tmp_path: Path) -> None:
    # The exporter runs as its own service, so that only it is killed: a killed normalizer may
    # append a record twice to a typed topic, which the files would then hold twice (docs/exporter.md).
    env = {"FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000", "FORGELINE_PROCESSORS": "normalizer,writer"}
    up = ForgelineUp(tmp_path / "data", env=env).start()
    exporter: subprocess.Popen[bytes] | None = None
    try:
        marker = f"k{uuid.uuid4().hex[:8]}"
        total = 6000
        lines = [orjson.dumps({"event": {"event_type": "error", "message": f"{marker} {i}", "fingerprint": f"f{i % 7}",
                                         "uuid": str(uuid.uuid4())}}) for i in range(total)]  # fmt: skip
        headers = {**up.auth, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
        with httpx.Client(base_url=up.base_url, headers=headers, timeout=30) as client:
            for start in range(0, total, 500):
                body = gzip.compress(b"\n".join(lines[start : start + 500]) + b"\n")
                response = client.post("/api/v1/ingest_events/batch", content=body)
                assert response.status_code == 202, response.text
        where = f"startsWith(message, '{marker} ')"
        assert up.wait_for(f"SELECT count() FROM forgeline.errors FINAL WHERE {where}", total, 120) == total

        admin = free_port()
        exporter_env = {**up.env(), "FORGELINE_EXPORT_FLUSH_SECONDS": "0.3"}
        argv = up.cli("process", "exporter", "--data-dir", str(up.data_dir), "--admin-port", str(admin))
        log = open(tmp_path / "exporter.log", "ab")  # noqa: SIM115 - closed in finally

        # Each start flushes at another row count, so a replay cannot fall on the same ranges
        # by chance: only the exporter's own recovery keeps it from writing a line twice.
        max_rows = iter(["60", "37", "83", "500"])

        def start_exporter() -> subprocess.Popen[bytes]:
            env = {**exporter_env, "FORGELINE_EXPORT_MAX_ROWS": next(max_rows)}
            return subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

        rng = random.Random(11)
        for _kill in range(3):
            exporter = start_exporter()
            seen = file_count(up.exports)
            deadline = time.monotonic() + 60
            while file_count(up.exports) <= seen and time.monotonic() < deadline:
                time.sleep(0.005)
            assert file_count(up.exports) > seen, (tmp_path / "exporter.log").read_text()[-3000:]
            time.sleep(rng.random() * 0.05)  # somewhere inside the flush that just began, or the next
            exporter.send_signal(signal.SIGKILL)
            exporter.wait()
        killed_at = len(exported_lines(up.exports, "errors", "message", marker))
        assert killed_at < total, "the exporter finished before the last kill (nothing was tested)"

        exporter = start_exporter()
        assert wait_until(lambda: ready(f"http://127.0.0.1:{admin}"), 60)
        done = wait_until(lambda: len(exported_lines(up.exports, "errors", "message", marker)) >= total, 120)
        assert done, (tmp_path / "exporter.log").read_text()[-3000:]
        exporter.send_signal(signal.SIGTERM)  # graceful: flushes whatever else it buffers
        assert exporter.wait(timeout=60) == 0
        log.close()

        rows = [row for _, row in exported_rows(up.exports, "errors") if row["message"].startswith(marker)]
        ids = Counter(row["event_id"] for row in rows)
        assert len(ids) == total and max(ids.values()) == 1  # no duplicate line across the files
        table_ids = set(up.sql(f"SELECT toString(event_id) FROM forgeline.errors FINAL WHERE {where}").split())
        assert set(ids) == table_ids  # the same rows as the warehouse, counted against it
        # No partial file: every file read whole (read_lines) and no temp file among the tables.
        assert not [p for p in (up.exports / "errors").rglob("*") if p.name.startswith(".")]
    finally:
        if exporter is not None and exporter.poll() is None:
            exporter.kill()
            exporter.wait()
        up.stop()
