"""`forgeline bootstrap`: the first-start tenancy of a deployment that never runs `forgeline up`."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from services.cli.main import main

pytestmark = pytest.mark.unit


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FORGELINE_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_env")
def test_bootstrap_creates_the_defaults_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    assert main(["bootstrap", "--data-dir", str(data_dir)]) == 0
    tokens_file = data_dir / "bootstrap-tokens.json"
    assert str(tokens_file) in capsys.readouterr().out
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    tokens = json.loads(tokens_file.read_text())
    assert tokens["logister_token"] and tokens["forge_token"] and tokens["msgpack_secret_key"]

    # Idempotent: a second run (a re-applied job) changes nothing and keeps the file.
    before = tokens_file.read_bytes()
    assert main(["bootstrap", "--data-dir", str(data_dir)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert tokens_file.read_bytes() == before

    # The project exists on the bus, so `projects create` and `tokens create` work next.
    assert main(["projects", "list", "--data-dir", str(data_dir)]) == 0
    assert "default" in capsys.readouterr().out
    assert main(["tokens", "create", "--project", "default", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.strip()
