"""`forgeline up` stops, instead of restarting in a loop, a child that exits for a setup problem."""

from __future__ import annotations

import sys

import pytest

from services.exitcodes import EXIT_BAD_SETTINGS, EXIT_CANNOT_SERVE
from services.supervisor.up import Child, _fatal_exit

pytestmark = pytest.mark.unit


def _exited(code: int) -> Child:
    child = Child("gateway", [sys.executable, "-c", f"raise SystemExit({code})"])
    child.start({})
    assert child.process is not None
    child.process.wait(timeout=30)
    return child


def test_a_port_it_cannot_bind_is_fatal() -> None:
    reason = _fatal_exit(_exited(EXIT_CANNOT_SERVE))
    assert reason is not None and "could not listen on its port" in reason


def test_refused_settings_are_fatal() -> None:
    reason = _fatal_exit(_exited(EXIT_BAD_SETTINGS))
    assert reason is not None and "refused its settings" in reason


@pytest.mark.parametrize("code", [0, 1])
def test_a_crash_is_restarted_not_fatal(code: int) -> None:
    assert _fatal_exit(_exited(code)) is None


def test_a_killed_child_is_restarted_not_fatal() -> None:
    child = Child("processors", [sys.executable, "-c", "import time; time.sleep(30)"])
    child.start({})
    assert child.process is not None
    child.process.kill()
    child.process.wait(timeout=30)
    assert _fatal_exit(child) is None


def test_a_running_or_unstarted_child_is_not_fatal() -> None:
    assert _fatal_exit(Child("console", ["true"])) is None
    running = Child("console", [sys.executable, "-c", "import time; time.sleep(30)"])
    running.start({})
    try:
        assert _fatal_exit(running) is None
    finally:
        assert running.process is not None
        running.process.kill()
        running.process.wait()
