"""Upgrade in place: a data dir written by an older Forgeline, started with today's code.

tests/fixtures/upgrade/data.tar.gz was written by the commit its manifest names
(tests/fixtures/upgrade/README.md): rows already in the warehouse, typed records no writer
read, raw records no normalizer read, committed offsets, tokens made by `forgeline up` and by
the CLI. Today's `forgeline up` must store every event the old gateway acknowledged exactly
once, dead-letter none of them, and keep accepting the old tokens.
"""

from __future__ import annotations

import hashlib
import tarfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import msgpack
import orjson
import pytest

from forgeline.bus.factory import create_bus
from forgeline.schemas.msgpack import event_id as msgpack_event_id
from tests.conftest import read_all
from tests.fixtures.pipeline import ForgelineUp

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade"
# Far enough that rows received when the fixture was made are not expired (re-dated at start),
# and no log segment is deleted by age, whenever this runs.
ENV = {"FORGELINE_RETENTION_DAYS": "3650", "FORGELINE_BUS_RETENTION_MS": "-1"}


def _manifest() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((FIXTURE / "manifest.json").read_bytes())
    return doc


def _expected_by_table(manifest: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    by_table: dict[tuple[str, str], list[str]] = defaultdict(list)
    for entry in manifest["expected"]:
        by_table[(entry["table"], entry["id_column"])].extend(entry["ids"])
    return dict(by_table)


def _query(up: ForgelineUp, sql: str) -> str:
    response = httpx.post(f"{up.admin_url}/query", json={"sql": sql, "format": "TSV"}, timeout=60)
    assert response.status_code == 200, response.text
    return response.text


def _counts(up: ForgelineUp, table: str, column: str, ids: list[str], final: bool) -> dict[str, int]:
    """Rows per id among ``ids`` (ids with no row are absent)."""
    quoted = ",".join(f"'{i}'" for i in ids)
    sql = (
        f"SELECT toString({column}) AS id, count() FROM forgeline.{table}{' FINAL' if final else ''} "
        f"WHERE id IN ({quoted}) GROUP BY id"
    )
    rows = (line.split("\t") for line in _query(up, sql).splitlines() if line)
    return {row[0]: int(row[1]) for row in rows}


def _wait_stored(up: ForgelineUp, expected: dict[tuple[str, str], list[str]], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    missing: dict[str, int] = {}
    while time.monotonic() < deadline:
        missing = {}
        for (table, column), ids in expected.items():
            found = _counts(up, table, column, ids, final=True)
            if len(found) < len(set(ids)):
                missing[table] = len(set(ids)) - len(found)
        if not missing:
            return
        time.sleep(0.5)
    raise AssertionError(f"not stored after {timeout_s}s, missing per table: {missing}\n{up.tail_log()}")


def _unpack(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE / "data.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "data"


def _send_with_old_tokens(up: ForgelineUp, manifest: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """One new event per old token; returns where each must land, as _expected_by_table does."""
    tokens, ids = manifest["tokens"], manifest["ids"]
    new: dict[tuple[str, str], list[str]] = defaultdict(list)
    for owner in ("default", "studio"):
        bearer = {"Authorization": f"Bearer {tokens[f'{owner}_logister']}"}
        event = {"event": {"event_type": "error", "message": f"after the upgrade ({owner})"}}
        response = httpx.post(f"{up.base_url}/api/v1/ingest_events", json=event, headers=bearer, timeout=30)
        assert response.status_code == 201, response.text
        new[("errors", "event_id")].append(response.json()["id"])

        # A session the old code opened is still this project's own.
        sessions = [e for e in manifest["expected"] if e["family"] == "forge_session"]
        old_session = next(e["ids"][0] for e in sessions if e["token"] == f"{owner}_forge")
        forge = {"Authorization": f"Bearer {tokens[f'{owner}_forge']}"}
        body = [{"sessionId": old_session, "type": "after_upgrade", "timestamp": "2026-04-08T15:00:00Z"}]
        response = httpx.post(f"{up.base_url}/v1/ingest/events", json=body, headers=forge, timeout=30)
        assert response.status_code == 201, response.text
        new[("game_events", "event_id")].extend(response.json()["eventIds"])

        app_id = ids[f"{owner}_app"]
        item = {"app_id": app_id, "build_id": "Win64_1.1", "player_id": f"p-{uuid.uuid4().hex[:8]}"}
        item |= {"event_name": "Create_Player", "region": "EU", "timestamp": "2026-02-12T10:00:00Z"}
        packed = bytes(msgpack.packb([item], use_bin_type=True))
        headers = {"x-public-token": tokens[f"{owner}_msgpack"], "Content-Type": "application/msgpack"}
        response = httpx.post(f"{up.base_url}/api/events", content=packed, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        digest = hashlib.sha256(packed).hexdigest()
        new[("players", "event_id")].append(str(msgpack_event_id(ids[f"{owner}_project"], app_id, digest, 0)))
    return dict(new)


def test_a_data_dir_of_the_previous_version_upgrades_in_place(tmp_path: Path) -> None:
    manifest = _manifest()
    expected = _expected_by_table(manifest)
    assert sum(len(ids) for ids in expected.values()) > 300, "the fixture holds a few hundred events"
    stages = {entry["stage"] for entry in manifest["expected"]}
    assert stages == {"warehouse", "typed", "raw"}, stages

    up = ForgelineUp(_unpack(tmp_path), env=ENV)
    try:
        up.start()
        children = up.children()
        _wait_stored(up, expected)
        # Give a replay that would double rows time to show: the writer flushes every 0.5 s.
        time.sleep(2)
        for (table, column), ids in expected.items():
            assert len(ids) == len(set(ids)), f"the fixture repeats an id of {table}"
            once = dict.fromkeys(ids, 1)
            assert _counts(up, table, column, ids, final=True) == once, f"{table} FINAL"
            assert _counts(up, table, column, ids, final=False) == once, f"{table}: a row stored twice"

        new = _send_with_old_tokens(up, manifest)
        _wait_stored(up, new, timeout_s=60)
        assert _query(up, "SELECT count() FROM forgeline.dead_letters").strip() == "0"
        assert up.children() == children, "a process crashed and was restarted"
    finally:
        up.stop()

    # Nothing waits on a dead-letter topic either (a dead letter not yet written to its table).
    bus = create_bus(up.bus_url)
    topics = sorted(p.name for p in (up.data_dir / "bus" / "topics").glob("dlq.*"))
    assert topics, "the fixture's dead-letter topics are there"
    for topic in topics:
        assert read_all(bus, topic) == [], topic
