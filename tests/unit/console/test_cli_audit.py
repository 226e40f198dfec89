"""The tenancy CLI goes through the management operations: every change is audited."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from forgeline.bus.factory import create_bus
from forgeline.manage.model import AuditEntry
from forgeline.manage.store import ConsoleStore
from services.cli.main import main

pytestmark = pytest.mark.unit


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FORGELINE_"):
            monkeypatch.delenv(name)


def _audit(data_dir: Path) -> list[AuditEntry]:
    async def read() -> list[AuditEntry]:
        async with ConsoleStore(create_bus(f"embedded://{data_dir / 'bus'}")) as store:
            return list(store.table.audit)

    return asyncio.run(read())


@pytest.mark.usefixtures("clean_env")
def test_cli_changes_land_in_the_audit_log_without_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["bootstrap", *data]) == 0
    assert main(["projects", "create", "racing", *data]) == 0
    assert main(["projects", "rename", "racing", "racing-2", *data]) == 0
    assert main(["tokens", "create", "--project", "racing-2", "--name", "ci", *data]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["admin-keys", "create", "--project", "racing-2", *data]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("fla_")

    entries = _audit(tmp_path / "data")
    assert [e.action for e in entries] == ["project.create", "project.rename", "token.create", "admin_key.create"]
    assert all(e.actor.startswith("cli:") and e.at for e in entries)
    text = repr(entries)
    assert token not in text and key not in text
    # A name already taken is a clear error, not a second project of that name.
    assert main(["projects", "rename", "default", "racing-2", *data]) == 1
    assert "racing-2" in capsys.readouterr().err


@pytest.mark.usefixtures("clean_env")
def test_notify_add_and_remove_are_audited(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["bootstrap", *data]) == 0
    assert main(["notify", "add", "webhook", "--url", "https://93.184.216.34/hook", "--name", "ops", *data]) == 0
    target_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["notify", "remove", target_id, *data]) == 0
    entries = _audit(tmp_path / "data")
    assert [(e.action, e.target) for e in entries] == [("notify.add", target_id), ("notify.remove", target_id)]
    assert "93.184.216.34" not in repr(entries)  # a target's URL is not in the log
