"""Token and project management through the real CLI while `forgeline up` runs."""

from __future__ import annotations

import subprocess
import time
import uuid

import httpx
import pytest

from tests.fixtures.kafka import BUSES
from tests.fixtures.pipeline import REPO, ForgelineUp

pytestmark = pytest.mark.integration


def _run(up: ForgelineUp, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        up.cli(*args, "--data-dir", str(up.data_dir)),
        cwd=REPO,
        env=up.env(),
        stdin=subprocess.DEVNULL,  # no terminal: confirmations need --yes
        capture_output=True,
        timeout=60,
        check=False,
    )


def _cli(up: ForgelineUp, *args: str) -> str:
    out = _run(up, *args)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def _refused(up: ForgelineUp, *args: str) -> str:
    out = _run(up, *args)
    assert out.returncode == 1, out.stdout.decode()
    return out.stderr.decode()


def _status(up: ForgelineUp, token: str) -> int:
    response = httpx.post(
        f"{up.base_url}/api/v1/ingest_events",
        json={"event": {"event_type": "log", "message": "tenancy probe"}},
        headers={"X-Api-Key": token},
    )
    return response.status_code


def _eventually(up: ForgelineUp, token: str, expected: int, within_s: float = 5.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if _status(up, token) == expected:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"token did not answer {expected} within {within_s}s")


def test_created_token_works_and_revocation_reaches_the_gateway_within_5s(forgeline_up: ForgelineUp) -> None:
    token = _cli(forgeline_up, "tokens", "create", "--kind", "logister", "--name", "ci").strip()
    assert token.startswith("lgst_")
    assert _status(forgeline_up, token) == 201, "a created token works at once"
    listing = _cli(forgeline_up, "tokens", "list")
    assert token not in listing, "a token is shown once, never listed"
    token_id = next(line.split()[0] for line in listing.splitlines() if token[:12] in line)
    _cli(forgeline_up, "tokens", "revoke", token_id)
    _eventually(forgeline_up, token, 401)
    assert "revoked" in _cli(forgeline_up, "tokens", "list")


def test_archiving_a_project_refuses_its_tokens(forgeline_up: ForgelineUp) -> None:
    name = f"game-{uuid.uuid4().hex[:8]}"
    _cli(forgeline_up, "projects", "create", name)
    token = _cli(forgeline_up, "tokens", "create", "--project", name, "--environment", "staging").strip()
    _eventually(forgeline_up, token, 201)
    assert "--yes" in _refused(forgeline_up, "projects", "archive", name)
    assert _status(forgeline_up, token) == 201, "an unconfirmed archive changes nothing"
    _cli(forgeline_up, "projects", "archive", name, "--yes")
    _eventually(forgeline_up, token, 401)
    # The default project's token is untouched.
    assert _status(forgeline_up, forgeline_up.tokens["logister_token"]) == 201
    assert "archived" in _refused(forgeline_up, "tokens", "create", "--project", name)
    assert "already" in _refused(forgeline_up, "projects", "create", name)
    _cli(forgeline_up, "projects", "unarchive", name)
    _eventually(forgeline_up, token, 201)


@pytest.fixture(params=BUSES)
def pipeline(request: pytest.FixtureRequest) -> ForgelineUp:
    up: ForgelineUp = request.getfixturevalue("forgeline_up" if request.param == "embedded" else "kafka_forgeline_up")
    return up


def test_a_created_token_is_accepted_at_once_on_either_bus(pipeline: ForgelineUp) -> None:
    """The gateway reads the control topic to its end before refusing a token it does not know."""
    for kind, probe in (("logister", _status), ("forge", _forge_status)):
        token = _cli(pipeline, "tokens", "create", "--kind", kind, "--name", "at-once").strip()
        assert probe(pipeline, token) in (200, 201), f"{kind} token refused right after tokens create"


def _forge_status(up: ForgelineUp, token: str) -> int:
    body = {"build": {"version": "1.0.0", "platform": "linux"}}
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.post(f"{up.base_url}/v1/ingest/sessions", json=body, headers=headers, timeout=10).status_code
