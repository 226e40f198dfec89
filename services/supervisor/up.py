"""`forgeline up`: the embedded all-in-one mode.

Starts two child processes — the gateway and the processors host (normalizer + writer,
owner of the chDB warehouse) — restarts either when it dies, and stops both gracefully
on SIGTERM/SIGINT (children get SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from forgeline.bus.factory import create_bus
from forgeline.config import Settings
from forgeline.manage.firstuser import ensure_first_user
from forgeline.private_fs import open_private, private_dir
from services.admin import connect_host
from services.exitcodes import EXIT_BAD_SETTINGS, EXIT_CANNOT_SERVE
from services.runfile import configured_admin_url, remove_run_file, write_run_file
from services.supervisor.bootstrap import BOOTSTRAP_FILE, bootstrap_tenancy
from services.supervisor.ports import first_request, port_problem

GRACE_SECONDS = 30.0
log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(self.argv, env=env)
        self.started_at = time.monotonic()
        log.info("started", extra={"child": self.name, "pid": self.process.pid})


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "FORGELINE_DATA_DIR": str(settings.data_dir.resolve()),
            "FORGELINE_HOST": settings.host,
            "FORGELINE_PORT": str(settings.port),
            "FORGELINE_ADMIN_PORT": str(settings.admin_port),
            "FORGELINE_ADMIN_HOST": settings.admin_host,
            "FORGELINE_CONSOLE_PORT": str(settings.console_port),
        }
    )
    return env


def run_up(settings: Settings) -> int:
    data_dir = settings.data_dir.resolve()
    private_dir(data_dir)  # 0700, also a data dir an older version made 0755
    lock = os.fdopen(open_private(data_dir / "up.lock", os.O_WRONLY | os.O_CREAT), "w")  # held while up runs
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"forgeline up is already running on {data_dir}", file=sys.stderr)
        return 1

    problem = port_problem(settings)
    if problem:
        # One line and exit 2, before anything starts: a child that cannot bind would only
        # be restarted again and again, the reason buried in its tracebacks.
        print(f"forgeline: {problem}", file=sys.stderr)
        lock.close()
        return 2

    bus = create_bus(settings.resolved_bus_url, settings.partitions)
    written = asyncio.run(bootstrap_tenancy(bus, data_dir))
    tokens_file = data_dir / BOOTSTRAP_FILE
    gateway_url = f"http://{settings.host}:{settings.port}"
    # Where this machine's CLI reaches the admin port (never its key: that stays in the env).
    admin_url = configured_admin_url(settings)
    console_url = f"http://{connect_host(settings.console_host)}:{settings.console_port}"
    first_user = asyncio.run(ensure_first_user(bus))
    run_info: dict[str, object] = {
        "pid": os.getpid(),
        "gateway_url": gateway_url,
        "admin_url": admin_url,
        "console_url": console_url,
    }
    print(
        f"forgeline up: gateway {gateway_url}  admin {admin_url}  data {data_dir}\n"
        f"tokens: {tokens_file}" + (" (created now)" if written else ""),
        flush=True,
    )
    print(f"console: {console_url}", flush=True)
    if tokens_file.exists():
        print(f"send a first error:\n  {first_request(settings, tokens_file)}", flush=True)
    if first_user is not None:
        # Printed this once; only an argon2 hash is stored (`forgeline users create` makes more).
        print(f"console sign-in (shown once): user {first_user[0]}  password {first_user[1]}", flush=True)

    me = [sys.executable, "-m", "services.cli.main"]
    children = [
        Child("processors", [*me, "processors"]),
        Child("gateway", [*me, "gateway"]),
        Child("console", [*me, "console"]),
    ]
    env = _child_env(settings)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    for child in children:
        child.start(env)
    _write_run_file(data_dir, run_info, children)
    exit_code = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for child in children:
                fatal = _fatal_exit(child)
                if fatal:
                    # Restarting would fail the same way, in a loop: stop everything instead.
                    print(f"forgeline: {fatal}; stopping", file=sys.stderr, flush=True)
                    stopping, exit_code = True, EXIT_BAD_SETTINGS
                    break
                if _supervise(child, env):
                    _write_run_file(data_dir, run_info, children)
    finally:
        _stop_all(children)
        remove_run_file(data_dir)
        lock.close()
    return exit_code


def _fatal_exit(child: Child) -> str | None:
    """Why ``child`` exited for good (a port it cannot bind, refused settings), or None."""
    code = child.process.poll() if child.process is not None else None
    if code == EXIT_CANNOT_SERVE:
        return f"the {child.name} could not listen on its port (taken by another program?), see its error above"
    if code == EXIT_BAD_SETTINGS:
        return f"the {child.name} refused its settings, see its error above"
    return None


def _write_run_file(data_dir: Path, run_info: dict[str, object], children: list[Child]) -> None:
    """``run.json`` tells the CLI (and operators) where the running pipeline listens."""
    pids = {c.name: c.process.pid for c in children if c.process is not None}
    write_run_file(data_dir, {**run_info, "children": pids})


def _supervise(child: Child, env: dict[str, str]) -> bool:
    """Restart ``child`` if it died (after a backoff); True when it was started now."""
    now = time.monotonic()
    if child.process is None:
        if now >= child.next_start:
            child.start(env)
            return True
        return False
    code = child.process.poll()
    if code is None:
        return False
    # Back off on crash loops, but forget old crashes after a minute of health.
    if now - child.started_at > 60:
        child.restarts = 0
    delay = min(0.5 * 2**child.restarts, 30.0)
    child.restarts += 1
    log.warning("child exited; restarting", extra={"child": child.name, "code": code, "in_seconds": delay})
    child.process = None
    child.next_start = now + delay
    return False


def _stop_all(children: list[Child]) -> None:
    running = [c for c in children if c.process is not None and c.process.poll() is None]
    for child in running:
        assert child.process is not None
        child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for child in running:
        assert child.process is not None
        try:
            child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            log.error("child did not stop in time; killing", extra={"child": child.name})
            child.process.kill()
            child.process.wait()
