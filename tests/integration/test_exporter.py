"""The NDJSON exporter through a real `forgeline up`: flush requests, read-back, backfill, kill -9."""

from __future__ import annotations

import gzip
import os
import random
import signal
import subprocess
import threading
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
from tests.fixtures.pipeline import REPO, ForgelineUp

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
    sql = (
        f"SELECT {columns} FROM forgeline.{kind.table} FINAL WHERE {where} "
        "SETTINGS output_format_json_quote_64bit_integers = 0"
    )
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


@pytest.mark.slow
def test_kill_9_mid_write_leaves_no_partial_file_and_no_duplicate(tmp_path: Path) -> None:
    env = {
        "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "1000000",
        "FORGELINE_EXPORT_MAX_ROWS": "120",  # many small flushes, several files each: kills land mid-flush
        "FORGELINE_EXPORT_FLUSH_SECONDS": "0.3",
    }
    up = ForgelineUp(tmp_path / "data", env=env).start()
    try:
        marker = f"k{uuid.uuid4().hex[:8]}"
        total = 3000
        lines = [orjson.dumps({"event": {"event_type": "error", "message": f"{marker} {i}", "fingerprint": f"f{i % 7}",
                                         "uuid": str(uuid.uuid4())}}) for i in range(total)]  # fmt: skip
        sent = threading.Event()

        def sender() -> None:
            headers = {**up.auth, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
            with httpx.Client(base_url=up.base_url, headers=headers, timeout=30) as client:
                for start in range(0, total, 50):
                    body = gzip.compress(b"\n".join(lines[start : start + 50]) + b"\n")
                    for _attempt in range(100):
                        response = client.post("/api/v1/ingest_events/batch", content=body)
                        if response.status_code == 202:
                            break
                        time.sleep(0.1)  # 503 while the bus is busy: the client retries
                    assert response.status_code == 202, response.text
                    time.sleep(0.02)
            sent.set()

        thread = threading.Thread(target=sender)
        thread.start()
        kills = 0
        rng = random.Random(11)
        while kills < 3 and not sent.is_set():
            seen = len(list((up.exports / "errors").rglob("*.ndjson"))) if up.exports.exists() else 0
            # Kill right after a new file shows up: the rest of that flush is being written.
            if wait_until(lambda s=seen: len(list((up.exports / "errors").rglob("*.ndjson"))) > s, 20):
                time.sleep(rng.random() * 0.02)
                os.kill(up.children()["processors"], signal.SIGKILL)
                kills += 1
                up.wait_ready(90)
        thread.join()
        assert kills >= 2, "the load ended before the kills (nothing was tested)"

        where = f"startsWith(message, '{marker} ')"
        assert up.wait_for(f"SELECT count() FROM forgeline.errors FINAL WHERE {where}", total, 120) == total
        done = wait_until(lambda: len(exported_lines(up.exports, "errors", "message", marker)) >= total, 120)
        assert done, up.tail_log()
        time.sleep(1.0)  # a duplicate, if any were coming, has time to land

        rows = [(key, row) for key, row in exported_rows(up.exports, "errors") if row["message"].startswith(marker)]
        ids = Counter(row["event_id"] for _, row in rows)
        assert len(ids) == total and max(ids.values()) == 1  # no duplicate line across the files
        table_ids = set(up.sql(f"SELECT toString(event_id) FROM forgeline.errors FINAL WHERE {where}").split())
        assert set(ids) == table_ids
        # No partial file: every file read whole (read_lines) and no temp file under the tables.
        assert not [p for p in (up.exports / "errors").rglob("*") if p.name.startswith(".")]
    finally:
        up.stop()
