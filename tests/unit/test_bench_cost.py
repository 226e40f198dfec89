"""The `cost` bench scenario's pieces: CPU read from /proc (with descendants), distinct bodies."""

from __future__ import annotations

import gzip
import subprocess
import sys
import time

import orjson
import pytest

from forgeline.ids import new_uuid4
from services.bench.cost import cpu_seconds, forge_route, logister_route

pytestmark = pytest.mark.unit

BUSY = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"


def test_cpu_seconds_counts_a_descendants_work_while_it_runs() -> None:
    # A parent that starts a busy child and waits: the parent itself burns nothing.
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY!r}])"],
        stdin=subprocess.DEVNULL,
    )
    try:
        seen = 0.0
        while parent.poll() is None:
            seen = max(seen, cpu_seconds(parent.pid))
            time.sleep(0.02)
        assert seen >= 0.2, seen
    finally:
        parent.kill()
        parent.wait()


def test_cpu_seconds_of_a_gone_process_is_zero() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert cpu_seconds(gone.pid) == 0.0


def test_logister_bodies_hold_distinct_events_of_one_marker() -> None:
    route = logister_route("lgst_x", 250)
    assert route.events == 200 and len(route.bodies) == 2  # whole batches of 100 only
    events = [orjson.loads(line)["event"] for body in route.bodies for line in gzip.decompress(body).splitlines()]
    assert len({e["uuid"] for e in events}) == 200
    assert {e["release"] for e in events} == {route.count_sql.split("'")[1]}


def test_forge_bodies_differ_so_their_derived_ids_do_not_collapse() -> None:
    route = forge_route("frg_x", str(new_uuid4()), 600)
    assert route.events == 600 and len(set(route.bodies)) == 3
    sessions = {item["sessionId"] for body in route.bodies for item in orjson.loads(body)}
    assert len(sessions) == 1 and sessions.pop() in route.count_sql
