"""The measuring harness of `forgeline bench`: result rows, processes, load, brokers, the table.

Scenarios build on this module and on services.bench.payloads; nothing here imports a scenario.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from services.bench.loadgen import LoadResult, build_request, load_in_process

HOST = "127.0.0.1"


@dataclass
class Row:
    scenario: str
    ours: float
    baseline: float
    unit: str
    target: str
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(
    argv: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` running while inside; SIGTERM (SIGKILL after 30 s) on leaving. Output to ``log`` or nowhere."""
    with ExitStack() as files:
        out = files.enter_context(open(log, "ab")) if log is not None else subprocess.DEVNULL
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def load(port: int, path: str, body: bytes, headers: dict[str, str], connections: int, seconds: float) -> LoadResult:
    request = build_request(HOST, port, path, body, headers)
    # A separate process: the generator and the server each get a core.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(load_in_process, (HOST, port, request, connections, seconds))


@dataclass(frozen=True)
class RunningUp:
    port: int
    admin_port: int
    tokens: dict[str, str]
    children: dict[str, int]


@contextmanager
def forgeline_up(data_dir: Path, env: dict[str, str]) -> Iterator[RunningUp]:
    """`forgeline up` as users run it, on free ports, ready when this yields; SIGTERM after."""
    port, admin = free_port(), free_port()
    argv = [sys.executable, "-m", "services.cli.main", "up", "--data-dir", str(data_dir)]
    argv += ["--port", str(port), "--admin-port", str(admin)]
    with process(argv, {**os.environ, **env}):
        wait_http(f"http://{HOST}:{port}/ready")
        wait_http(f"http://{HOST}:{admin}/ready")
        tokens = orjson.loads((data_dir / "bootstrap-tokens.json").read_bytes())
        children = orjson.loads((data_dir / "run.json").read_bytes())["children"]
        yield RunningUp(port, admin, tokens, children)


@contextmanager
def kafka_broker(root: Path) -> Iterator[str | None]:
    """FORGELINE_BENCH_KAFKA (host:port) if set, else a local KRaft broker (services.devtools.kafka).

    Yields None (the scenario is skipped, with the reason printed) when it cannot start (no Maven or Java).
    """
    given = os.environ.get("FORGELINE_BENCH_KAFKA")
    if given:
        yield given
        return
    from services.devtools.kafka import LocalKafka

    broker = LocalKafka(root / "kafka")
    try:
        broker.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        print(f"  kafka: skipped (could not start a local broker: {err!r})", flush=True)
        yield None
        return
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def print_table(rows: list[Row]) -> None:
    print()
    header = f"{'scenario':78} {'ours':>12} {'baseline':>12} {'unit':>10} {'ratio':>7}  target"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.scenario[:78]:78} {r.ours:12,.0f} {r.baseline:12,.0f} {r.unit:>10} {r.ratio:7.2f}  {r.target}")
        if r.note:
            print(f"{'':4}{r.note}")
