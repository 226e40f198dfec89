"""Player data at rest: everything the stores create under a data dir is the owner's only
(directories 0700, files 0600) whatever the umask, and a data dir an older version left 0755
is tightened when it is opened again."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from forgeline.blobstore.factory import create_blob_store
from forgeline.blobstore.local import LocalBlobStore
from forgeline.blobstore.port import UploadGrant
from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.port import OutgoingRecord
from forgeline.config import Settings
from forgeline.notify.crypto import load_key
from forgeline.private_fs import make_private_dirs, private_dir
from forgeline.schemas.records import KINDS
from services.cli.main import main
from services.exporter import files
from services.supervisor.up import _write_run_file

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common default, under which open() and mkdir() give 0644 / 0755."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    """Permission bits of ``root`` and of everything below it, by path relative to ``root``."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(root: Path) -> None:
    found = modes(root)
    wrong = {path: oct(mode) for path, mode in found.items() if mode != (0o700 if (root / path).is_dir() else 0o600)}
    assert not wrong, wrong
    assert len(found) > 1


async def _bus_round_trip(bus: EmbeddedBus) -> None:
    producer = bus.producer()
    await producer.start()
    try:
        await producer.send(OutgoingRecord("raw.test", b'{"player": "p1"}', key=b"p1"))
    finally:
        await producer.stop()
    consumer = bus.consumer("tester", ["raw.test"])
    await consumer.start()
    try:
        records = await consumer.poll(10, timeout_s=1.0)
        assert records
        await consumer.commit({records[-1].tp: records[-1].offset + 1})
    finally:
        await consumer.stop()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_every_store_writes_private_dirs_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FORGELINE_"):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "nested" / "data"  # parents that do not exist yet are made private too
    settings = Settings(data_dir=data_dir)

    # Tenancy and tokens (the bus's control topics, bootstrap-tokens.json), as `forgeline bootstrap`.
    assert main(["bootstrap", "--data-dir", str(data_dir)]) == 0
    # A record through the bus: topic, segment, lock files, a consumer group's offsets.
    bus = EmbeddedBus(Path(settings.resolved_bus_url.removeprefix("embedded://")), default_partitions=2)
    asyncio.run(_bus_round_trip(bus))
    # An upload received by the gateway, and a blob put by a processor.
    blobs = create_blob_store(settings.resolved_blob_store_url, "", data_dir / "blob-signing.key", "http://x")
    assert isinstance(blobs, LocalBlobStore)
    grant = UploadGrant("u1", "p1/s1/u1/shot.png", "image/png", 1024, int(time.time()) + 60)
    asyncio.run(blobs.receive(grant, _chunks(b"\x89PNG")))
    blobs.put("p1/models/m1.json", b"{}")
    # An export file, as the exporter writes one.
    exports = create_blob_store(settings.resolved_export_url, "", data_dir / "blob-signing.key", "http://x")
    kind = KINDS["error"]
    key = files.file_key(kind, "2024-01-01", "00", 0, 0, 0, compress=True)
    exports.put(key, files.encode_file([b'{"message": "boom"}\n'], compress=True))
    # The notify key, and `forgeline up`'s run file.
    load_key(data_dir)
    _write_run_file(data_dir, {"pid": 1}, [])

    tree = modes(data_dir)
    for expected in ("bus", "blobs", "exports", "notify.key", "blob-signing.key", "bootstrap-tokens.json", "run.json"):
        assert expected in tree, sorted(tree)
    assert any(path.startswith("exports/errors/date=2024-01-01/hour=00/") for path in tree)
    assert any(path.startswith("bus/groups/tester/") for path in tree)
    assert_private(data_dir)
    assert stat.S_IMODE((tmp_path / "nested").stat().st_mode) == 0o700


def test_a_data_dir_from_an_older_version_is_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    for sub in ("bus", "blobs", "exports"):
        (data_dir / sub).mkdir(parents=True)  # 0755 under umask 022, as before
        (data_dir / sub / "old.bin").write_bytes(b"x")  # 0644
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o755

    private_dir(data_dir)  # what `forgeline up` and `forgeline bootstrap` do at start
    asyncio.run(_bus_round_trip(EmbeddedBus(data_dir / "bus")))
    LocalBlobStore(data_dir / "blobs", b"k" * 32, "http://x")
    LocalBlobStore(data_dir / "exports", b"k" * 32, "http://x")
    for path in (data_dir, data_dir / "bus", data_dir / "blobs", data_dir / "exports"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_make_private_dirs_ignores_a_hostile_umask(tmp_path: Path) -> None:
    os.umask(0o777)  # would give d---------: the owner keeps rwx
    make_private_dirs(tmp_path / "a" / "b")
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
