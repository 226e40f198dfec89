"""`forgeline projects retention` goes through the management operations: a change is audited
as the management API's is (project.retention, actor cli:<login>); showing is not a change."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from forgeline.bus.factory import create_bus
from forgeline.manage.model import AuditEntry
from forgeline.manage.store import ConsoleStore
from services.cli.main import main

pytestmark = pytest.mark.unit


class FakeAdminPort:
    """The processors' ``POST /retention``: remembers what it was asked, answers like the real one."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.own: dict[str, int] = {}
        port = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                port.requests.append(doc)
                if doc["days"].get("logs") == 9999:
                    self._answer(400, {"error": "bad retention: between 1 day and 3650 days"})
                    return
                port.own.update(doc["days"])
                days = {"errors": 90, "logs": 90, "dead_letters": 30, **port.own}
                self._answer(200, {"days": days, "own": dict(port.own), "rewritten": sorted(doc["days"])})

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def admin_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAdminPort]:
    for name in list(os.environ):
        if name.startswith("FORGELINE_"):
            monkeypatch.delenv(name)
    port = FakeAdminPort()
    thread = threading.Thread(target=port.server.serve_forever, daemon=True)
    thread.start()
    yield port
    port.server.shutdown()
    port.server.server_close()


def _audit(data_dir: Path) -> list[AuditEntry]:
    async def read() -> list[AuditEntry]:
        async with ConsoleStore(create_bus(f"embedded://{data_dir / 'bus'}")) as store:
            return list(store.table.audit)

    return asyncio.run(read())


def test_a_retention_change_is_audited_and_showing_is_not(
    tmp_path: Path, admin_port: FakeAdminPort, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path / "data"), "--admin-url", admin_port.url]
    assert main(["bootstrap", "--data-dir", str(tmp_path / "data")]) == 0
    assert main(["projects", "create", "racing", "--data-dir", str(tmp_path / "data")]) == 0
    before = len(_audit(tmp_path / "data"))
    capsys.readouterr()

    assert main(["projects", "retention", "racing", "--logs", "2w", *data]) == 0
    shown = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines())
    assert shown["logs"] == "14d" and "dead_letters" not in shown  # not a project's kind
    assert main(["projects", "retention", "racing", *data]) == 0  # no flag: show only

    entries = _audit(tmp_path / "data")[before:]
    assert len(entries) == 1
    (entry,) = entries
    project_id = admin_port.requests[0]["project_id"]
    assert (entry.action, entry.target, entry.project_id) == ("project.retention", project_id, project_id)
    assert entry.actor.startswith("cli:") and entry.at
    assert entry.details == {"logs": "14d"}
    assert [r["days"] for r in admin_port.requests] == [{"logs": 14}, {}]


def test_a_refused_change_is_not_audited(
    tmp_path: Path, admin_port: FakeAdminPort, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path / "data"), "--admin-url", admin_port.url]
    assert main(["bootstrap", "--data-dir", str(tmp_path / "data")]) == 0
    before = len(_audit(tmp_path / "data"))
    capsys.readouterr()
    assert main(["projects", "retention", "default", "--logs", "3h", *data]) == 1  # refused here
    assert "bad retention" in capsys.readouterr().err
    assert main(["projects", "retention", "default", "--logs", "9999", *data]) == 1  # refused by the port
    assert "between 1 day" in capsys.readouterr().err
    assert main(["projects", "retention", "no-such", "--logs", "7d", *data]) == 1
    assert "no project 'no-such'" in capsys.readouterr().err
    unreachable = ["--data-dir", str(tmp_path / "data"), "--admin-url", "http://127.0.0.1:9"]
    assert main(["projects", "retention", "default", "--logs", "7d", *unreachable]) == 1
    assert "cannot reach the processors" in capsys.readouterr().err
    assert len(_audit(tmp_path / "data")) == before
