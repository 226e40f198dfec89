"""`forgeline dlq list|show|replay` on a real embedded bus, after a real normalizer dead-lettered a record."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from forgeline.bus.factory import create_bus
from forgeline.bus.port import Bus, OutgoingRecord, Record
from forgeline.bus.provision import ensure_topics
from forgeline.bus.topics import RAW_MSGPACK, TYPED_LEVEL_MODELS, dead_letter_topic
from forgeline.config import Settings
from forgeline.processing.deadletter import InvalidMessage, dead_letter
from services.cli.main import main
from services.normalizer.main import Normalizer, process_batch
from services.normalizer.steps import NORMALIZERS
from tests.fixtures.bus_io import send_all

pytestmark = pytest.mark.integration
NOW = int(time.time() * 1000)


def model_value(level: str) -> dict[str, Any]:
    return {
        "v": 1, "route": "model", "id": str(uuid.uuid4()), "organisation_id": "org", "project_id": "proj",
        "environment": "production", "app_id": "app", "token_id": "tok", "received_at": NOW,
        "body": {"app_name": "game", "level_name": level, "filename": "l.glb", "content_type": "model/gltf-binary",
                 "size_bytes": 1, "sha256": "0" * 64, "storage_key": "k"},
    }  # fmt: skip


async def _read(bus: Bus, topic: str) -> list[Record]:
    reader = bus.reader([topic])
    await reader.start()
    try:
        out: list[Record] = []
        while batch := await reader.poll(1000, timeout_s=0.3):
            out += batch
        return out
    finally:
        await reader.stop()


@pytest.fixture
def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bus:
    monkeypatch.setenv("FORGELINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FORGELINE_BUS_URL", raising=False)
    settings = Settings.from_env({"FORGELINE_DATA_DIR": str(tmp_path / "data")})
    bus = create_bus(settings.resolved_bus_url, settings.partitions)
    asyncio.run(ensure_topics(bus))
    return bus


def test_list_show_and_replay_a_dead_letter_idempotently(
    bus: Bus, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_deploy = f"level-{uuid.uuid4().hex}"
    original = NORMALIZERS[RAW_MSGPACK]

    def broken(record: Record) -> OutgoingRecord:
        if bad_deploy.encode() in record.value:
            raise RuntimeError("bad deploy")
        return original(record)

    # A bad deploy dead-letters one record; a real normalizer does it (and commits past it).
    monkeypatch.setitem(NORMALIZERS, RAW_MSGPACK, broken)
    poisoned = OutgoingRecord(RAW_MSGPACK, orjson.dumps(model_value(bad_deploy)), key=b"k1")
    asyncio.run(send_all(bus, [poisoned]))

    async def normalize_once() -> None:
        service = Normalizer(bus)
        task = asyncio.create_task(service.run())
        deadline = time.monotonic() + 30
        while not await _read(bus, dead_letter_topic("normalizer")):
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.1)
        service.stop()
        await task

    asyncio.run(normalize_once())
    monkeypatch.setitem(NORMALIZERS, RAW_MSGPACK, original)  # the fix is deployed
    # A dead letter of another processor, older, from a typed topic.
    source = Record("typed.errors", 0, 3, b"e", b'{"x": 1}', NOW - 3_600_000, ())
    letter = dead_letter("writer", source, InvalidMessage("insert_rejected", "column x"))
    old = OutgoingRecord(letter.topic, letter.value, key=letter.key,
                         headers=tuple((n, v if n != "failed_at_ms" else str(NOW - 3_600_000).encode())
                                       for n, v in letter.headers))  # fmt: skip
    asyncio.run(send_all(bus, [old]))

    assert main(["dlq", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split("\t")[0] for line in lines]
    assert [name.split("/")[0] for name in names] == ["writer", "normalizer"]  # oldest first
    w_name, n_name = names  # GROUP/PARTITION/OFFSET: the partition follows the original key
    raw_partition = asyncio.run(_read(bus, RAW_MSGPACK))[0].partition
    assert lines[1].split("\t")[2:4] == ["processing_error", f"{RAW_MSGPACK}/{raw_partition}/0"]
    assert "RuntimeError: bad deploy" in lines[1]

    assert main(["dlq", "list", "--group", "writer", "--kind", "errors"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == [w_name]
    recent = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOW / 1000 - 60))
    assert main(["dlq", "list", "--from", recent]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == [n_name]
    assert main(["dlq", "list", "--kind", "msgpack", "--to", recent]) == 0
    assert capsys.readouterr().out == ""

    assert main(["dlq", "show", n_name]) == 0
    shown = capsys.readouterr().out
    assert bad_deploy in shown and "source_topic" in shown and "reason      processing_error" in shown
    assert main(["dlq", "show", n_name + "9"]) == 1
    assert main(["dlq", "show", "nobody/0/0"]) == 2
    capsys.readouterr()

    # Replaying a typed record would count it again downstream: refused, nothing appended.
    assert main(["dlq", "replay"]) == 2
    assert "only the normalizer" in capsys.readouterr().err
    assert main(["dlq", "replay", "--group", "normalizer", "--dry-run"]) == 0
    assert capsys.readouterr().out == f"would replay {n_name} to {RAW_MSGPACK}\n"
    assert len(asyncio.run(_read(bus, RAW_MSGPACK))) == 1

    # Replayed twice: the original bytes twice more on their topic and partition.
    assert main(["dlq", "replay", "--group", "normalizer"]) == 0
    assert main(["dlq", "replay", n_name]) == 0
    raw = asyncio.run(_read(bus, RAW_MSGPACK))
    assert len(raw) == 3
    replays = raw[1:]
    assert all(r.value == poisoned.value and r.key == b"k1" and r.partition == raw[0].partition for r in replays)
    assert all(r.header("replayed_from") == n_name.encode() for r in replays)
    # Through the normalizer's own path: one typed record each, the same bytes (same event id),
    # so the warehouse's table keeps one row however often it is replayed.
    typed = [out for out in process_batch(replays) if out.topic == TYPED_LEVEL_MODELS]
    assert len(typed) == 2 and typed[0].value == typed[1].value and typed[0].key == typed[1].key
    assert orjson.loads(typed[0].value)["level_name"] == bad_deploy
