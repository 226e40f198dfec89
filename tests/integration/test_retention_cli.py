"""`forgeline projects retention` through a real `forgeline up`: set, shown back, stored,
and the project's existing rows re-dated; bad input is refused with a message."""

from __future__ import annotations

import subprocess
import uuid

import httpx
import pytest

from tests.fixtures.pipeline import REPO, ForgelineUp

pytestmark = pytest.mark.integration


def _cli(up: ForgelineUp, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(up.cli(*args, "--data-dir", str(up.data_dir)), cwd=REPO, env=up.env(),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_a_projects_retention_is_set_shown_and_applied(forgeline_up: ForgelineUp) -> None:
    up = forgeline_up
    marker = f"ret-{uuid.uuid4().hex[:8]}"
    event = {"event_type": "log", "message": marker}
    r = httpx.post(f"{up.base_url}/api/v1/ingest_events", json={"event": event}, headers=up.auth, timeout=10)
    assert r.status_code == 201, r.text
    assert up.wait_for(f"SELECT count() FROM forgeline.logs WHERE message = '{marker}'", 1) == 1

    out = _cli(up, "projects", "retention", "default", "--logs", "2w", "--analytics", "400")
    assert out.returncode == 0, out.stderr
    shown = dict(line.split()[:2] for line in out.stdout.splitlines())
    assert shown["logs"] == "14d" and shown["analytics"] == "400d"
    assert "(default)" in next(line for line in out.stdout.splitlines() if line.startswith("errors"))
    days = up.scalar(f"SELECT dateDiff('day', received_at, expires_at) FROM forgeline.logs WHERE message = '{marker}'")
    assert days == 14  # the existing row was re-dated

    again = _cli(up, "projects", "retention", "default")  # no flag: show only
    assert again.returncode == 0 and "logs           14d" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--logs", "3h"), "bad retention"),
        (("--logs", "0d"), "bad retention"),
        (("--errors", "9999d"), "between 1 day"),
    ],
)
def test_bad_retention_is_refused(forgeline_up: ForgelineUp, args: tuple[str, ...], message: str) -> None:
    out = _cli(forgeline_up, "projects", "retention", "default", *args)
    assert out.returncode == 1 and message in out.stderr


def test_an_unknown_project_is_named(forgeline_up: ForgelineUp) -> None:
    out = _cli(forgeline_up, "projects", "retention", "no-such-project", "--logs", "7d")
    assert out.returncode == 1 and "no project 'no-such-project'" in out.stderr
