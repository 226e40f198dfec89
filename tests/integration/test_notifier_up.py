"""The notifier inside `forgeline up`: configured with the CLI while it runs, fed by the real
error grouper and Forge Logger reports, dead letters stored in the warehouse by the writer."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests.contract.test_forge_routes import SESSION
from tests.fixtures.pipeline import REPO, ForgelineUp
from tests.fixtures.providers import WEBHOOK_SECRET, Receivers

pytestmark = pytest.mark.integration


def _cli(up: ForgelineUp, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        up.cli(*args, "--data-dir", str(up.data_dir)),
        cwd=REPO,
        env={**up.env(), "HOOK_SECRET": WEBHOOK_SECRET},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_notifier_in_up_forwards_error_groups_and_reports(tmp_path: Path, receivers: Receivers) -> None:
    env = {"FORGELINE_NOTIFY_BACKOFF_SECONDS": "0.05", "FORGELINE_NOTIFY_MAX_ATTEMPTS": "2"}
    up = ForgelineUp(tmp_path / "data", env=env).start()
    try:
        ready = httpx.get(f"{up.admin_url}/ready", timeout=5).json()
        assert ready["checks"]["notifier"] is True
        base = receivers.base_url
        # The receivers listen on 127.0.0.1: loopback targets need the explicit opt-in.
        ok = _cli(up, "notify", "add", "webhook", "--url", f"{base}/webhook/up", "--secret-env", "HOOK_SECRET",
                  "--allow-private")  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        broken = _cli(up, "notify", "add", "webhook", "--url", f"{base}/webhook/broken", "--secret-env", "HOOK_SECRET",
                      "--on", "report", "--allow-private")  # fmt: skip
        assert broken.returncode == 0, broken.stderr
        receivers.always("/webhook/broken", 503)

        marker = uuid.uuid4().hex[:10]
        event = {"event_type": "error", "message": f"inventory {marker} overflow", "uuid": str(uuid.uuid4())}
        response = httpx.post(f"{up.base_url}/api/v1/ingest_events", json={"event": event}, headers=up.auth)
        assert response.status_code == 201
        forge = {"Authorization": f"Bearer {up.tokens['forge_token']}"}
        session = httpx.post(f"{up.base_url}/v1/ingest/sessions", json=SESSION, headers=forge).json()["sessionId"]
        report = {
            "sessionId": session,
            "title": f"Fell through the floor {marker}",
            "description": "Near the bridge",
            "severity": "high",
            "reporterType": "tester",
            "export": ["webhook", "github"],
        }
        assert httpx.post(f"{up.base_url}/v1/ingest/reports", json=report, headers=forge).status_code == 201

        assert receivers.wait_for("webhook", 2, timeout_s=60) == 2
        by_subject = {i["subject"]: i for i in receivers.items("webhook")}
        assert set(by_subject) == {"error_new", "report"}
        assert marker in by_subject["error_new"]["title"] and marker in by_subject["report"]["title"]
        assert by_subject["report"]["project_id"] == up.tokens["project_id"]
        # The report to the broken target: retried, then a dead_letters row written by the writer.
        where = "FROM forgeline.dead_letters WHERE consumer_group = 'notifier'"
        assert up.wait_for(f"SELECT count() {where}", 1) == 1
        assert "notify_http_503" in up.sql(f"SELECT reason {where}")
        assert receivers.arrivals["webhook"] == 2 + 2
    finally:
        up.stop()
    assert WEBHOOK_SECRET not in up.log_path.read_text(errors="replace")
