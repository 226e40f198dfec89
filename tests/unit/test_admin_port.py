"""The admin port's address and key: settings, the start-up refusal, the CLI's side."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from forgeline.config import Secret, Settings
from services import runfile
from services.admin import admin_app, admin_exposure_problem, admin_server, connect_host, is_loopback
from services.cli.main import main
from services.runfile import RUN_FILE
from services.supervisor.up import _child_env

pytestmark = pytest.mark.unit

KEY = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)
    assert admin_exposure_problem(host, "") is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "192.168.1.2", "example.com", "::ffff:10.0.0.1"])
def test_anything_else_needs_a_key(host: str) -> None:
    assert not is_loopback(host)
    problem = admin_exposure_problem(host, "")
    assert problem is not None and "FORGELINE_ADMIN_KEY" in problem
    assert admin_exposure_problem(host, KEY) is None


@pytest.mark.parametrize("key", ["short", "x" * 15, "has a space in it!!", "tab\tinside-the-key-x", "ключ" * 5])
def test_a_weak_or_unsendable_key_is_refused_everywhere(key: str) -> None:
    for host in ("127.0.0.1", "0.0.0.0"):
        problem = admin_exposure_problem(host, key)
        assert problem is not None and "at least 16" in problem


def test_the_admin_host_does_not_follow_the_gateway_host() -> None:
    settings = Settings.from_env({"FORGELINE_HOST": "0.0.0.0"})
    assert (settings.host, settings.admin_host, settings.admin_key) == ("0.0.0.0", "127.0.0.1", Secret(""))
    settings = Settings.from_env({"FORGELINE_ADMIN_HOST": "10.1.2.3", "FORGELINE_ADMIN_KEY": KEY})
    assert (settings.admin_host, settings.admin_key.reveal()) == ("10.1.2.3", KEY)
    assert KEY not in f"{settings.admin_key} {settings.admin_key!r}"
    assert KEY not in repr(settings)


def test_up_hands_its_children_the_admin_host_not_the_gateway_host() -> None:
    env = _child_env(Settings(host="0.0.0.0"))
    assert (env["FORGELINE_HOST"], env["FORGELINE_ADMIN_HOST"]) == ("0.0.0.0", "127.0.0.1")
    env = _child_env(Settings(host="0.0.0.0", admin_host="10.1.2.3"))
    assert env["FORGELINE_ADMIN_HOST"] == "10.1.2.3"


@pytest.mark.parametrize("command", [["up"], ["processors"], ["process", "writer"]])
def test_serving_commands_refuse_a_public_admin_port_without_a_key(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FORGELINE_ADMIN_KEY", raising=False)
    monkeypatch.delenv("FORGELINE_ADMIN_HOST", raising=False)
    assert main([*command, "--admin-host", "0.0.0.0", "--data-dir", str(tmp_path / "d")]) == 2
    assert "FORGELINE_ADMIN_KEY" in capsys.readouterr().err
    assert not (tmp_path / "d").exists(), "nothing may start before the check"
    monkeypatch.setenv("FORGELINE_ADMIN_HOST", "::")
    assert main([*command, "--data-dir", str(tmp_path / "d")]) == 2
    monkeypatch.setenv("FORGELINE_ADMIN_KEY", "short")
    assert main([*command, "--admin-host", "127.0.0.1", "--data-dir", str(tmp_path / "d")]) == 2
    assert "at least 16" in capsys.readouterr().err


def test_the_admin_server_believes_no_forwarded_headers() -> None:
    server = admin_server(admin_app(lambda: {}, None), "127.0.0.1", 0)
    assert server.config.proxy_headers is False
    assert server.config.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("host", "url_host"), [("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("::1", "[::1]"), ("10.0.0.5", "10.0.0.5")]
)
def test_the_cli_reaches_the_admin_port_where_it_listens(host: str, url_host: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, admin_host=host, admin_port=9999)
    assert connect_host(host) == url_host
    assert runfile.admin_url(settings) == f"http://{url_host}:9999"
    assert runfile.admin_url(settings, "http://elsewhere:1/") == "http://elsewhere:1"
    (tmp_path / RUN_FILE).write_bytes(orjson.dumps({"admin_url": "http://127.0.0.1:7777"}))
    assert runfile.admin_url(settings) == "http://127.0.0.1:7777"


def test_the_cli_sends_the_key_only_when_it_has_one() -> None:
    assert runfile.admin_headers(Settings()) == {}
    assert runfile.admin_headers(Settings(admin_key=Secret(KEY))) == {"Authorization": f"Bearer {KEY}"}
