"""`forgeline up` before it starts anything: taken ports, and the first request it prints."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from forgeline.config import Settings
from services.supervisor.ports import first_request, port_problem

pytestmark = pytest.mark.unit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _settings(**ports: int) -> Settings:
    defaults = {"port": _free_port(), "admin_port": _free_port(), "console_port": _free_port()}
    return Settings().with_overrides(**{**defaults, **ports})


def test_free_ports_pass() -> None:
    assert port_problem(_settings()) is None


@pytest.mark.parametrize(("field", "name"), [("port", "gateway"), ("admin_port", "admin"), ("console_port", "console")])
def test_a_taken_port_is_named_with_the_way_to_change_it(listener: int, field: str, name: str) -> None:
    problem = port_problem(_settings(**{field: listener}))
    assert problem is not None
    assert f"port {listener} on 127.0.0.1 for the {name} is already in use" in problem
    assert "--" in problem and "\n" not in problem


def test_two_services_on_one_port_is_refused() -> None:
    port = _free_port()
    problem = port_problem(_settings(port=port, admin_port=port))
    assert problem is not None and "both set to port" in problem


def test_the_first_request_reads_the_token_from_the_file_never_prints_it(tmp_path: Path) -> None:
    tokens = tmp_path / "dir with space" / "bootstrap-tokens.json"
    line = first_request(Settings().with_overrides(port=9080, host="0.0.0.0"), tokens)
    assert line.startswith("curl ") and "http://127.0.0.1:9080/api/v1/ingest_events" in line
    assert f"'{tokens}'" in line, "the path is quoted for the shell"
    assert "lgst_" not in line
