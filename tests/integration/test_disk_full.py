"""A full disk: the gateway answers 503 + Retry-After, /ready says so, nothing acknowledged is lost.

The data directory is a small tmpfs the test mounts (root only; skipped otherwise), filled
with a file: once to just under the free-space threshold, once to the last byte so that the
append itself hits ENOSPC mid-write.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from forgeline.bus import embedded
from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.factory import create_bus
from forgeline.bus.topics import RAW_LOGISTER
from forgeline.config import Settings
from services.gateway.app import create_app
from services.supervisor.bootstrap import BOOTSTRAP_FILE, bootstrap_tenancy
from tests.conftest import read_all

pytestmark = pytest.mark.integration

INGEST = "/api/v1/ingest_events"
FS_BYTES = 16 * 1024 * 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the disk-full test needs root")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@dataclass
class Gateway:
    client: TestClient
    bus: EmbeddedBus
    auth: dict[str, str]
    acknowledged: list[str]

    def post_event(self, size: int = 200) -> int:
        event_id = str(uuid.uuid4())
        body = {"event": {"event_type": "log", "level": "info", "message": "m" * size, "uuid": event_id}}
        response = self.client.post(INGEST, content=orjson.dumps(body), headers=self.auth)
        assert response.status_code in (201, 503), response.text  # never a 500
        if response.status_code == 201:
            self.acknowledged.append(event_id)
        else:
            assert response.headers["Retry-After"] == "10"
            assert "disk" in response.json()["error"]
        return response.status_code

    def ready(self) -> tuple[int, dict[str, bool]]:
        response = self.client.get("/ready")
        return response.status_code, response.json()["checks"]


@contextlib.contextmanager
def gateway_on(data_dir: Path, min_free_bytes: int) -> Iterator[Gateway]:
    settings = Settings(data_dir=data_dir, token_refresh_seconds=0.2, min_free_bytes=min_free_bytes)
    bus = create_bus(f"embedded://{data_dir / 'bus'}", 1, settings)
    assert isinstance(bus, EmbeddedBus)
    asyncio.run(bootstrap_tenancy(bus, data_dir))
    tokens = orjson.loads((data_dir / BOOTSTRAP_FILE).read_bytes())
    with TestClient(create_app(settings, bus), raise_server_exceptions=False) as client:
        yield Gateway(client, bus, {"Authorization": f"Bearer {tokens['logister_token']}"}, [])


def fill(path: Path, leave_free: int) -> None:
    """Grow ``path`` until the filesystem has ``leave_free`` bytes or less available."""
    with open(path, "ab") as handle:
        while True:
            st = os.statvfs(path.parent)
            free = st.f_bavail * st.f_frsize
            if free <= leave_free:
                return
            try:
                handle.write(b"\0" * min(free - leave_free, 1 << 20))
                handle.flush()
            except OSError as err:
                assert err.errno == errno.ENOSPC
                return


def assert_log_is_whole_and_holds_exactly(gw: Gateway) -> None:
    """Every 201'd event is readable; nothing refused is there; no torn record anywhere."""
    on_log = [orjson.loads(r.value)["event_id"] for r in read_all(gw.bus, RAW_LOGISTER)]
    assert sorted(on_log) == sorted(gw.acknowledged)
    directory = gw.bus.partition_dir(RAW_LOGISTER, 0)
    for path in directory.glob("*.log"):
        fd = os.open(path, os.O_RDONLY)
        try:
            scanner = embedded._Scanner(fd, 0)
            while scanner.next() is not None:
                pass
            assert scanner.stopped == "end", (path, scanner.stopped)
        finally:
            os.close(fd)


def wait_ready(gw: Gateway, expected: int) -> dict[str, bool]:
    deadline = time.monotonic() + 5
    while True:
        status, checks = gw.ready()
        if status == expected or time.monotonic() > deadline:
            assert status == expected, checks
            return checks
        time.sleep(0.1)


def test_below_the_free_space_threshold_ingest_pauses_and_resumes(small_fs: Path) -> None:
    threshold = 4 * 1024 * 1024
    with gateway_on(small_fs / "data", threshold) as gw:
        assert [gw.post_event() for _ in range(5)] == [201] * 5
        assert wait_ready(gw, 200)["disk_space"]
        filler = small_fs / "filler"
        fill(filler, threshold - 64 * 1024)
        checks = wait_ready(gw, 503)
        assert checks["disk_space"] is False
        assert [gw.post_event() for _ in range(5)] == [503] * 5
        filler.unlink()  # space returns: no restart needed
        wait_ready(gw, 200)
        assert [gw.post_event() for _ in range(5)] == [201] * 5
        assert_log_is_whole_and_holds_exactly(gw)


def test_an_append_that_hits_enospc_is_refused_whole_and_ingest_resumes(small_fs: Path) -> None:
    with gateway_on(small_fs / "data", 0) as gw:
        assert [gw.post_event() for _ in range(5)] == [201] * 5
        filler = small_fs / "filler"
        fill(filler, 0)
        # The segment's last page may still have room for a record or two; then ENOSPC.
        statuses = [gw.post_event() for _ in range(40)]
        assert statuses[-5:] == [503] * 5, statuses
        # A little room: some appends fit, then one is cut off by ENOSPC part-way through.
        os.truncate(filler, filler.stat().st_size - 3 * 4096)
        statuses = [gw.post_event(size=1500) for _ in range(30)]
        assert 201 in statuses and statuses[-1] == 503, statuses
        filler.unlink()
        assert [gw.post_event() for _ in range(5)] == [201] * 5
        assert_log_is_whole_and_holds_exactly(gw)
