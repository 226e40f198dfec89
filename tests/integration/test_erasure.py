"""Erasure of one person through a real `forgeline up`: their data planted through every
route family (Logister, Forge Logger with an upload, MessagePack), exported, then
`forgeline erase`: nothing of theirs is left in any table, the blob store or the exports,
another player's data is intact, and the audit row holds hashes only."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from forgeline.lifecycle.retention import TABLES_BY_NAME
from tests.fixtures.kafka import BUSES
from tests.fixtures.pipeline import REPO, ForgelineUp

pytestmark = pytest.mark.integration


@pytest.fixture(params=BUSES)
def pipeline(request: pytest.FixtureRequest) -> ForgelineUp:
    fixture = "forgeline_up" if request.param == "embedded" else "kafka_forgeline_up"
    up: ForgelineUp = request.getfixturevalue(fixture)
    return up


def _wait(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.25)


def _counts(up: ForgelineUp, queries: dict[str, str]) -> dict[str, int]:
    """Several counts in one query through the admin port (what `forgeline sql` calls)."""
    sql = " UNION ALL ".join(f"SELECT '{name}', ({query})" for name, query in queries.items())
    response = httpx.post(f"{up.admin_url}/query", json={"sql": sql, "format": "TabSeparated"}, timeout=30)
    assert response.status_code == 200, response.text
    return {name: int(n) for name, n in (line.split("\t") for line in response.text.splitlines())}


def _exports_settled(up: ForgelineUp, people: list[Person]) -> None:
    """Flush the exporter until every person's lines are out and no more arrive."""
    seen: list[tuple[int, ...]] = []
    deadline = time.monotonic() + 60
    while len(seen) < 3 or len(set(seen[-3:])) != 1 or min(seen[-1]) == 0:
        assert time.monotonic() < deadline, seen
        assert httpx.post(f"{up.base_url}/api/export", timeout=10).status_code == 200
        time.sleep(0.5)
        seen.append(tuple(person.exported() for person in people))


class Person:
    """Everything one player sends, each identifier unique to this test run."""

    def __init__(self, up: ForgelineUp, name: str) -> None:
        tag = f"{name}-{uuid.uuid4().hex[:10]}"
        self.up, self.tag = up, tag
        self.player_id, self.device_id = f"player-{tag}", f"device-{tag}"
        self.user_id, self.email = f"user-{tag}", f"{tag}@example.com"
        self.session_id = ""
        self.upload_key = ""
        self.error_ids: list[str] = []  # known once written, kept after the erasure

    def send_everything(self) -> None:
        up = self.up
        # Logister: an error and a log of the user (the address in their context).
        ctx = {"user_id": self.user_id, "email": self.email, "release": self.tag}
        for event in ({"event_type": "error", "message": f"boom {self.tag}", "context": ctx},
                      {"event_type": "log", "message": f"login {self.tag}", "context": ctx}):  # fmt: skip
            r = httpx.post(f"{up.base_url}/api/v1/ingest_events", json={"event": event}, headers=up.auth, timeout=10)
            assert r.status_code == 201, r.text
        # Forge Logger: a session of the device, events, a report, an upload.
        forge = {"Authorization": f"Bearer {up.tokens['forge_token']}"}
        session = {"build": {"version": "1.0", "platform": "linux", "channel": "qa"},
                   "player": {"deviceId": self.device_id, "externalId": self.player_id}}  # fmt: skip
        r = httpx.post(f"{up.base_url}/v1/ingest/sessions", json=session, headers=forge, timeout=10)
        assert r.status_code == 201, r.text
        self.session_id = r.json()["sessionId"]
        # A backend log of that game session, without the user: reached through the session.
        tagged = {"event_type": "log", "message": "match start", "context": {"session_id": self.session_id}}
        r = httpx.post(f"{up.base_url}/api/v1/ingest_events", json={"event": tagged}, headers=up.auth, timeout=10)
        assert r.status_code == 201, r.text
        events = [{"sessionId": self.session_id, "type": "died", "timestamp": "2026-04-08T14:30:00Z"}]
        r = httpx.post(f"{up.base_url}/v1/ingest/events", json=events, headers=forge, timeout=10)
        assert r.status_code == 201, r.text
        files = [{"filename": "shot.png", "contentType": "image/png", "size": 9, "type": "screenshot"}]
        r = httpx.post(f"{up.base_url}/v1/ingest/uploads", json={"sessionId": self.session_id, "files": files},
                       headers=forge, timeout=10)  # fmt: skip
        assert r.status_code == 201, r.text
        target = r.json()["uploads"][0]
        put = httpx.put(target["url"], content=b"PNGPIXELS", headers=target["headers"], timeout=10)
        assert put.status_code in (200, 201), put.text
        report = {"sessionId": self.session_id, "title": f"stuck {self.tag}", "description": "", "severity": "low",
                  "reporterType": "player", "eventIds": [], "clientRequestId": str(uuid.uuid4()),
                  "uploadIds": [target["uploadId"]]}  # fmt: skip
        r = httpx.post(f"{up.base_url}/v1/ingest/reports", json=report, headers=forge, timeout=10)
        assert r.status_code == 201, r.text
        # MessagePack: one event of each kind.
        common = {"app_id": up.tokens["msgpack_app_id"], "build_id": "Win64_1.0", "player_id": self.player_id}
        session = f"s-{self.tag}"
        batch = [
            {**common, "event_name": "Create_Player", "region": "EU", "timestamp": "2026-02-12T10:00:00Z"},
            {
                **common,
                "funnel_step_name": "Tutorial_Start",
                "session_id": session,
                "timestamp": "2026-02-12T10:00:01Z",
            },
            {
                **common,
                "event_name": "Player_Jump",
                "session_id": session,
                "level_id": "L1",
                "position": [1.0, 2.0, 3.0],
                "timestamp": "2026-02-12T10:00:02Z",
            },  # fmt: skip
            {
                **common,
                "session_id": session,
                "level_id": "L1",
                "positions": [1.0, 0.0, 1.0],
                "timestamp_start": "2026-02-12T10:00:00Z",
                "timestamp_end": "2026-02-12T10:00:05Z",
            },  # fmt: skip
        ]
        r = httpx.post(f"{up.base_url}/api/events", content=msgpack.packb(batch), timeout=10,
                       headers={"x-public-token": up.tokens["msgpack_public_token"],
                                "Content-Type": "application/msgpack"})  # fmt: skip
        assert r.status_code == 200, r.text

    def rows(self) -> dict[str, int]:
        """Rows of this person in each table they reach (by their identifiers or their session)."""
        sid = self.session_id
        errors = ", ".join(f"'{e}'" for e in self.error_ids) or "''"
        checks = {
            "errors": f"user_id = '{self.user_id}'",
            "logs": f"user_id = '{self.user_id}'",
            "sessions": f"device_id = '{self.device_id}'",
            "logs of the session": f"session_id = '{sid}'",
            "game_events": f"toString(session_id) = '{sid}'",
            "reports": f"toString(session_id) = '{sid}'",
            "uploads": f"session_id = '{sid}'",
            "players": f"player_id = '{self.player_id}'",
            "funnel_steps": f"player_id = '{self.player_id}'",
            "gameplay_events": f"player_id = '{self.player_id}'",
            "trajectories": f"player_id = '{self.player_id}'",
            "error_group_events": f"event_id IN ({errors})",
        }
        return _counts(
            self.up,
            {name: f"SELECT count() FROM forgeline.{name.split()[0]} WHERE {where}" for name, where in checks.items()},
        )

    def everywhere(self) -> dict[str, int]:
        """Tables with rows whose text mentions this person's tag (every column, as text)."""
        found = _counts(self.up, {
            table: f"SELECT count() FROM forgeline.{table} AS t WHERE position(toString(tuple(t.*)), '{self.tag}') > 0"
            for table in TABLES_BY_NAME
        })  # fmt: skip
        return {table: n for table, n in found.items() if n}

    def exported(self) -> int:
        return sum(path.read_bytes().count(self.tag.encode()) for path in self.up.exports.rglob("*.ndjson*"))

    def blobs(self) -> list[Path]:
        return [p for p in (self.up.data_dir / "blobs").rglob("*") if p.is_file() and self.upload_key in str(p)]


def test_erase_removes_one_player_everywhere_and_nothing_else(pipeline: ForgelineUp) -> None:
    up = pipeline
    victim, bystander = Person(up, "victim"), Person(up, "bystander")
    for person in (victim, bystander):
        person.send_everything()
    for person in (victim, bystander):
        # The grouper's rows come on their own time: waited for below, once the error ids are known.
        _wait(lambda p=person: all(n >= 1 for t, n in p.rows().items() if t != "error_group_events"), timeout_s=60)
        person.upload_key = up.sql(
            f"SELECT storage_key FROM forgeline.uploads WHERE session_id = '{person.session_id}'"
        ).strip()
        assert person.blobs(), person.upload_key
        ids = up.sql(f"SELECT toString(event_id) FROM forgeline.errors WHERE user_id = '{person.user_id}'")
        person.error_ids = ids.split()
        # Grouped before the erasure, or the grouper would write their group after it.
        _wait(lambda p=person: p.rows()["error_group_events"] >= 1, timeout_s=60)
    _exports_settled(up, [victim, bystander])
    bystander_rows, bystander_exported = bystander.rows(), bystander.exported()

    started = time.monotonic()
    out = subprocess.run(
        up.cli("erase", "--project", "default", "--player-id", victim.player_id, "--device-id", victim.device_id,
               "--user-id", victim.user_id, "--email", victim.email, "--data-dir", str(up.data_dir)),  # fmt: skip
        cwd=REPO, env=up.env(), capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    assert "erased:" in out.stdout.decode()
    print(f"erase took {time.monotonic() - started:.1f}s: {out.stdout.decode()}")

    assert victim.rows() == dict.fromkeys(victim.rows(), 0)
    assert victim.everywhere() == {}
    assert victim.exported() == 0
    assert victim.blobs() == []
    # The other player: every row, line and upload still there.
    assert bystander.rows() == bystander_rows
    assert bystander.exported() == bystander_exported
    assert bystander.blobs()
    # The audit: the request and its completion, hashes only.
    audit = up.sql("SELECT state, length(subject_hashes), rows_deleted > 0 FROM forgeline.erasure_audit FINAL "
                   "ORDER BY requested_at DESC LIMIT 1")  # fmt: skip
    assert audit.split() == ["completed", "4", "1"]
    assert victim.tag not in up.sql("SELECT * FROM forgeline.erasure_audit", "JSONEachRow")


def test_erase_refuses_a_request_without_a_person(forgeline_up: ForgelineUp) -> None:
    up = forgeline_up
    out = subprocess.run(up.cli("erase", "--project", "default", "--data-dir", str(up.data_dir)),
                         cwd=REPO, env=up.env(), capture_output=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode == 2 and b"name the person" in out.stderr
    bad: dict[str, Any] = {"project_id": "x", "player_ids": "not-a-list"}
    response = httpx.post(f"{up.admin_url}/erase", json=bad, timeout=10)
    assert response.status_code == 400 and "list of strings" in response.json()["error"]
    response = httpx.post(f"{up.admin_url}/retention", json={"project_id": "x", "days": {"errors": 0}}, timeout=10)
    assert response.status_code == 400
