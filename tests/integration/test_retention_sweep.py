"""The processors sweep expired uploads and export lines by themselves (a running `forgeline up`,
sweeping every second): old objects go, fresh ones and other projects' stay."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import pytest

from tests.fixtures.pipeline import ForgelineUp

pytestmark = pytest.mark.integration


def _file(path: Path, data: bytes, age_days: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age_days:
        when = time.time() - age_days * 86400
        os.utime(path, (when, when))
    return path


def test_a_running_up_sweeps_expired_uploads_and_export_lines(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old_upload = _file(data / "blobs" / "some-project" / "u-1" / "shot.png", b"x", age_days=10)
    fresh_upload = _file(data / "blobs" / "some-project" / "u-2" / "shot.png", b"x")
    model = _file(data / "blobs" / "some-project" / "models" / "app" / "m-1", b"x", age_days=10)
    line = orjson.dumps({"project_id": "some-project", "message": "old"}) + b"\n"
    old_export = _file(data / "exports" / "errors" / "date=2020-01-01" / "hour=00" / "0-0-0.ndjson", line)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    fresh_export = _file(data / "exports" / "errors" / f"date={today}" / "hour=00" / "0-1-1.ndjson", line)
    env = {"FORGELINE_RETENTION_SWEEP_SECONDS": "1", "FORGELINE_RETENTION": "uploads=7d"}
    up = ForgelineUp(data, env).start()
    try:
        deadline = time.monotonic() + 30
        while (old_upload.exists() or old_export.exists()) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert not old_upload.exists() and not old_export.exists(), up.tail_log()
        assert fresh_upload.exists() and fresh_export.exists()
        assert model.exists()  # models keep the default 90 days
    finally:
        up.stop()
