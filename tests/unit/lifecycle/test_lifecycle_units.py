"""Erasure and retention pieces that need no warehouse: requests, hashes, export rewrites,
the blob and export sweeps, the settings, and the admin endpoints' key."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from forgeline.blobstore.local import LocalBlobStore
from forgeline.config import Settings, SettingsError
from forgeline.lifecycle.erasure import Subject, line_matcher, load_salt, rewrite_export, subject_hashes
from forgeline.lifecycle.retention import DEFAULTS_PROJECT
from forgeline.lifecycle.sweep import SweepResult, blob_kind, sweep_blobs, sweep_exports
from services.admin import admin_app

pytestmark = pytest.mark.unit
KEY = "admin-key-0123456789abcdef"


def _store(root: Path) -> LocalBlobStore:
    return LocalBlobStore(root, b"k" * 32, "http://unused")


def _ndjson(*rows: dict[str, object]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def test_a_request_must_name_a_person_with_lists_of_strings() -> None:
    with pytest.raises(ValueError, match="name the person"):
        Subject.parse({"project_id": "p"})
    with pytest.raises(ValueError, match="list of strings"):
        Subject.parse({"project_id": "p", "player_ids": "x"})
    with pytest.raises(ValueError, match="project_id"):
        Subject.parse({"player_ids": ["x"]})
    with pytest.raises(ValueError, match="unknown field"):
        Subject.parse({"project_id": "p", "player_ids": ["x"], "names": ["y"]})
    with pytest.raises(ValueError, match="at most"):
        Subject.parse({"project_id": "p", "player_ids": [str(i) for i in range(101)]})
    subject = Subject.parse({"project_id": "p", "player_ids": ["a", "a", " "], "emails": ["e@x"]})
    assert subject.identifiers == {"player_id": ("a",), "email": ("e@x",)}


def test_hashes_never_hold_the_identifier_and_depend_on_the_salt(tmp_path: Path) -> None:
    subject = Subject("p", {"player_id": ("player-42",), "email": ("ann@example.com",)})
    salt = load_salt(tmp_path)
    assert load_salt(tmp_path) == salt  # generated once
    assert (tmp_path / "erasure-salt.key").stat().st_mode & 0o777 == 0o600
    hashes = subject_hashes(salt, subject)
    assert len(hashes) == 2 and not any("player-42" in h or "ann" in h for h in hashes)
    assert subject_hashes(salt, subject) == hashes
    assert subject_hashes(b"other", subject) != hashes


def test_an_export_loses_exactly_the_persons_lines_gzip_or_not(tmp_path: Path) -> None:
    store = _store(tmp_path)
    subject = Subject("p", {"player_id": ("ann",), "email": ("ann@x",)})
    rows = [
        {"project_id": "p", "player_id": "ann", "n": 1},
        {"project_id": "p", "player_id": "bob", "n": 2},
        {"project_id": "q", "player_id": "ann", "n": 3},  # another project's ann
        {"project_id": "p", "user_id": "u", "context": '{"user": {"email": "ann@x"}}', "n": 4},
        {"project_id": "p", "session_id": "s-ann", "n": 5},
    ]
    store.put("errors/date=2026-01-01/hour=00/0-0-4.ndjson", _ndjson(*rows))
    store.put("errors/date=2026-01-01/hour=00/1-0-4.ndjson.gz", gzip.compress(_ndjson(*rows) + b"not json\n"))
    untouched = "errors/date=2026-01-01/hour=00/2-0-0.ndjson"
    store.put(untouched, _ndjson(rows[1]))
    before = os.stat(tmp_path / untouched).st_mtime_ns
    matches = line_matcher(subject, ["s-ann"])
    for key in ("errors/date=2026-01-01/hour=00/0-0-4.ndjson", "errors/date=2026-01-01/hour=00/1-0-4.ndjson.gz"):
        assert rewrite_export(store, key, matches) == 3
    plain = store.get("errors/date=2026-01-01/hour=00/0-0-4.ndjson")
    assert [orjson.loads(line)["n"] for line in plain.splitlines()] == [2, 3]
    packed = gzip.decompress(store.get("errors/date=2026-01-01/hour=00/1-0-4.ndjson.gz"))
    assert packed.splitlines()[-1] == b"not json"  # not ours to judge: kept
    assert rewrite_export(store, untouched, matches) == 0
    assert os.stat(tmp_path / untouched).st_mtime_ns == before  # nothing to remove: not rewritten
    assert not list((tmp_path / ".tmp").glob("*.part"))  # the rewrite's temp file was renamed


def test_uploads_and_models_are_swept_by_their_projects_days(tmp_path: Path) -> None:
    store = _store(tmp_path)
    now = datetime.now(UTC)
    for key in ("short/u1/shot.png", "long/u2/shot.png", "short/models/app/m1", "loose.txt"):
        store.put(key, b"x")
        old = (now - timedelta(days=10)).timestamp()
        os.utime(tmp_path / key, (old, old))
    store.put("short/u3/fresh.png", b"x")
    policies = {"short": {"uploads": 7}, "long": {"uploads": 30}, DEFAULTS_PROJECT: {"models": 365}}
    result = SweepResult()
    sweep_blobs(store, policies, now, result)
    left = [info.key for info in store.list_objects("")]
    assert left == ["long/u2/shot.png", "loose.txt", "short/models/app/m1", "short/u3/fresh.png"]
    assert result.blobs_deleted == 1
    assert blob_kind("p/models/a/b") == ("p", "models") and blob_kind("x") is None


def test_exports_lose_the_lines_past_their_projects_days(tmp_path: Path) -> None:
    store = _store(tmp_path)
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    old = "errors/date=2026-02-20/hour=10/0-0-1.ndjson"  # 9 days old
    store.put(old, _ndjson({"project_id": "short", "n": 1}, {"project_id": "long", "n": 2}))
    gone = "logs/date=2026-02-20/hour=10/0-0-0.ndjson"
    store.put(gone, _ndjson({"project_id": "short", "n": 3}))
    recent = "errors/date=2026-02-28/hour=10/0-2-2.ndjson"
    store.put(recent, _ndjson({"project_id": "short", "n": 4}))
    policies = {"short": {"errors": 7, "logs": 7}, DEFAULTS_PROJECT: {"errors": 30}}
    result = SweepResult()
    sweep_exports(store, policies, now, result)
    assert [orjson.loads(line)["n"] for line in store.get(old).splitlines()] == [2]
    assert [info.key for info in store.list_objects("logs/")] == []
    assert store.get(recent)
    assert (result.export_lines_removed, result.export_files_deleted) == (2, 1)


def test_retention_settings_are_checked() -> None:
    settings = Settings.from_env({"FORGELINE_RETENTION_DAYS": "2w", "FORGELINE_RETENTION": "errors=30d, spans=7"})
    assert settings.retention_days == 14 and settings.retention == (("errors", 30), ("spans", 7))
    for bad in ({"FORGELINE_RETENTION": "error=30d"}, {"FORGELINE_RETENTION": "errors"},
                {"FORGELINE_RETENTION_DAYS": "0"}):  # fmt: skip
        with pytest.raises(SettingsError):
            Settings.from_env(bad)


@pytest.mark.parametrize("path", ["/erase", "/retention"])
def test_the_lifecycle_endpoints_need_the_admin_key(path: str) -> None:
    client = TestClient(admin_app(lambda: {}, None, KEY))
    body = {"project_id": "p", "player_ids": ["x"]}
    assert client.post(path, json=body).status_code == 401
    assert client.post(path, json=body, headers={"Authorization": "Bearer wrong-key-0123456789"}).status_code == 401
    # With the key: this process has no warehouse, so nothing to erase here.
    assert client.post(path, json=body, headers={"Authorization": f"Bearer {KEY}"}).status_code == 404
