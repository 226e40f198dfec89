"""The admin port as real processes serve it: its address, its key, and the CLI that calls it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.fixtures.pipeline import REPO, ForgelineUp, free_port

pytestmark = pytest.mark.integration

KEY = "test-admin-key-0123456789abcdef"
BASE_ENV = {"PATH": "/usr/bin:/bin"}  # no FORGELINE_* from the outer environment


def listening_on(port: int) -> set[str]:
    """The addresses a socket LISTENs on at ``port`` (Linux /proc/net/tcp, tcp6)."""
    found: set[str] = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, port_hex = fields[1].partition(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))
            found.add(socket.inet_ntop(socket.AF_INET if size == 4 else socket.AF_INET6, raw))
    return found


class Process:
    """`forgeline process NAME` on its own data dir and admin port."""

    def __init__(self, data_dir: Path, name: str, *flags: str, env: dict[str, str] | None = None) -> None:
        self.admin_port = free_port()
        self.data_dir = data_dir
        self.log = data_dir.parent / f"{name}-{self.admin_port}.log"
        argv = [sys.executable, "-m", "services.cli.main", "process", name, "--data-dir", str(data_dir)]
        argv += ["--admin-port", str(self.admin_port), *flags]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(argv, cwd=REPO, env={**BASE_ENV, **(env or {})}, stderr=log)

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("not ready")

    def cli(self, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**BASE_ENV, **({"FORGELINE_ADMIN_KEY": key} if key else {})}
        argv = [sys.executable, "-m", "services.cli.main", *args, "--data-dir", str(self.data_dir)]
        argv += ["--admin-url", f"http://127.0.0.1:{self.admin_port}"]
        return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in started:
            process.stop()


def test_the_gateway_host_does_not_publish_the_admin_port(tmp_path: Path, processes: list[Process]) -> None:
    proc = Process(tmp_path / "d", "normalizer", "--host", "0.0.0.0")
    processes.append(proc)
    proc.wait_ready()
    assert listening_on(proc.admin_port) == {"127.0.0.1"}


def test_a_public_admin_port_without_a_key_does_not_start(tmp_path: Path) -> None:
    proc = Process(tmp_path / "d", "normalizer", "--admin-host", "0.0.0.0")
    assert proc.process.wait(timeout=60) == 2
    assert "FORGELINE_ADMIN_KEY" in proc.log.read_text()


def test_a_keyed_admin_port_serves_sql_only_with_the_key(tmp_path: Path, processes: list[Process]) -> None:
    env = {"FORGELINE_ADMIN_HOST": "0.0.0.0", "FORGELINE_ADMIN_KEY": KEY}
    proc = Process(tmp_path / "d", "writer", env=env)
    processes.append(proc)
    proc.wait_ready()
    assert listening_on(proc.admin_port) == {"0.0.0.0"}
    base = f"http://127.0.0.1:{proc.admin_port}"
    body = {"sql": "SELECT 1", "format": "TSV"}
    assert httpx.post(f"{base}/query", json=body, timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer " + "x" * len(KEY)}
    assert httpx.post(f"{base}/query", json=body, headers=wrong, timeout=10).status_code == 401
    ok = httpx.post(f"{base}/query", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert (ok.status_code, ok.text) == (200, "1\n")
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(f"{base}{path}", timeout=10).status_code == 200, path

    # forgeline sql, export and errors send FORGELINE_ADMIN_KEY.
    sql = proc.cli("sql", "SELECT 40 + 2", "--format", "TSV", key=KEY)
    assert (sql.returncode, sql.stdout) == (0, "42\n"), sql.stderr
    denied = proc.cli("sql", "SELECT 1")
    assert denied.returncode == 1 and "FORGELINE_ADMIN_KEY" in denied.stderr
    refused = proc.cli("sql", "SELECT * FROM file('/etc/passwd', 'LineAsString')", key=KEY)
    assert refused.returncode == 1 and "file()" in refused.stderr and "root:" not in refused.stdout + refused.stderr
    out = tmp_path / "export"
    span = ("--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T02:00:00Z", "--out", str(out))
    export = proc.cli("export", "--kind", "errors", *span, key=KEY)
    assert export.returncode == 0 and "0 rows" in export.stdout, export.stderr
    denied = proc.cli("export", "--kind", "errors", *span)
    assert denied.returncode == 1 and "FORGELINE_ADMIN_KEY" in denied.stderr
    errors = proc.cli("errors", "list", key=KEY)
    assert errors.returncode == 0, errors.stderr
    assert proc.cli("errors", "list").returncode == 1


def test_up_on_all_interfaces_keeps_the_admin_port_on_loopback(tmp_path: Path) -> None:
    up = ForgelineUp(tmp_path / "data", env={"FORGELINE_HOST": "0.0.0.0"}).start()
    try:
        run = orjson.loads((up.data_dir / "run.json").read_bytes())
        assert run["admin_url"] == f"http://127.0.0.1:{up.admin_port}"
        assert "key" not in orjson.dumps(run).decode().lower()
        assert listening_on(up.admin_port) == {"127.0.0.1"}
        assert listening_on(up.port) == {"0.0.0.0"}
        assert up.sql("SELECT 1").strip() == "1"
    finally:
        up.stop()
