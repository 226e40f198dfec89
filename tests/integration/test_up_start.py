"""Starting `forgeline up` / `make run`: a taken port, the first request it prints, make's ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.pipeline import REPO, ForgelineUp, free_port

pytestmark = pytest.mark.integration


def test_a_taken_port_is_one_clear_error_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "services.cli.main", "up", "--data-dir", str(tmp_path / "data")]
        ports = ["--port", str(port), "--admin-port", str(free_port()), "--console-port", str(free_port())]
        out = subprocess.run([*argv, *ports], cwd=REPO, capture_output=True, timeout=60, check=False)
    assert out.returncode == 2, out.stderr.decode()
    lines = out.stderr.decode().strip().splitlines()
    assert lines == [
        f"forgeline: port {port} on 127.0.0.1 for the gateway is already in use: stop what listens there, "
        "or choose another port (--port / FORGELINE_PORT / make run PORT=…)"
    ]
    assert not (tmp_path / "data" / "bootstrap-tokens.json").exists(), "nothing started"


def test_the_printed_curl_line_works_as_pasted(forgeline_up: ForgelineUp) -> None:
    log = forgeline_up.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    assert any(line.startswith("tokens: ") for line in log)
    (line,) = {line.strip() for line in log if line.strip().startswith("curl ")}
    out = subprocess.run(["bash", "-c", line], capture_output=True, timeout=30, check=True)
    reply = json.loads(out.stdout)
    assert "error" not in reply and reply.get("id"), reply


def test_make_run_takes_its_ports() -> None:
    # Under `make test` the parent make's MAKEFLAGS/MAKELEVEL would add "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", "run", "PORT=9180", "ADMIN_PORT=9181"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.decode().splitlines()[-1].split() == [
        ".venv/bin/forgeline",
        "up",
        "--port",
        "9180",
        "--admin-port",
        "9181",
    ]


def _cli_with_a_taken_port(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[bytes], int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "services.cli.main", *[a.replace("{port}", str(port)) for a in args]]
        argv += ["--data-dir", str(tmp_path / "data")]
        out = subprocess.run(argv, cwd=REPO, capture_output=True, timeout=90, check=False)
    return out, port


def test_a_processors_process_whose_admin_port_is_taken_exits_3(tmp_path: Path) -> None:
    # 3 tells `forgeline up` that a restart would fail the same way (no restart loop).
    out, _ = _cli_with_a_taken_port(tmp_path, "process", "normalizer", "--admin-port", "{port}")
    assert out.returncode == 3, out.stderr.decode()[-2000:]


def test_a_gateway_whose_port_is_taken_exits_3(tmp_path: Path) -> None:
    out, _ = _cli_with_a_taken_port(tmp_path, "gateway", "--port", "{port}")
    assert out.returncode == 3, out.stderr.decode()[-2000:]
