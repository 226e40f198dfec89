"""`forgeline notify add` refuses targets on loopback, private, link-local… addresses unless the
operator opts in (`--allow-private`, FORGELINE_NOTIFY_ALLOWED_NETWORKS); nothing is stored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.cli.main import main

pytestmark = pytest.mark.unit
DISCORD = "/api/webhooks/123/tok"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("FORGELINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FORGELINE_BUS_URL", f"embedded://{tmp_path / 'data' / 'bus'}")
    assert main(["bootstrap", "--data-dir", str(tmp_path / "data")]) == 0
    return tmp_path / "data"


def _add(data_dir: Path, *args: str) -> int:
    return main(["notify", "add", *args, "--secret", "s3cret-token", "--data-dir", str(data_dir)])


def _listing(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["notify", "list", "--data-dir", str(data_dir)]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "category"),
    [
        (["webhook", "--url", "http://169.254.169.254/latest/meta-data/"], "link-local"),
        (["webhook", "--url", "http://localhost:8081/api/sql"], "loopback"),  # the admin port
        (["webhook", "--url", "http://127.0.0.1:8081/"], "loopback"),
        (["webhook", "--url", "http://[::1]:8080/"], "loopback"),
        (["webhook", "--url", "http://[::ffff:127.0.0.1]/"], "loopback"),
        (["webhook", "--url", "http://2130706433/"], "loopback"),
        (["webhook", "--url", "http://0x7f.1/"], "loopback"),
        (["webhook", "--url", "https://10.1.2.3/hook"], "private"),
        (["webhook", "--url", "http://0.0.0.0:8080/"], "unspecified"),
        (["github", "--repo", "a/b", "--base-url", "http://192.168.0.10/api/v3"], "private"),
        (["gitlab", "--gitlab-project", "x/y", "--base-url", "http://100.64.0.1"], "shared"),
        (["jira", "--jira-project", "G", "--base-url", "http://[fd00::1]"], "private"),
    ],
)
def test_add_refuses_non_public_destinations(
    data_dir: Path, args: list[str], category: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _add(data_dir, *args) == 1
    err = capsys.readouterr().err
    assert f"is a {category} address; refused" in err, err
    assert "--allow-private" in err or "FORGELINE_NOTIFY_ALLOWED_NETWORKS" in err
    assert _listing(data_dir, capsys).strip().count("\n") == 0  # the header only: nothing stored


def test_discord_webhook_url_is_checked_too(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["notify", "add", "discord", "--secret", f"http://127.0.0.1{DISCORD}", "--data-dir", str(data_dir)])
    assert code == 1 and "the Discord webhook URL: 127.0.0.1 is a loopback address" in capsys.readouterr().err


def test_opt_ins(data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # --allow-private opens loopback and private networks for that target, and says so in listings.
    assert _add(data_dir, "webhook", "--url", "http://127.0.0.1:9999/hook", "--allow-private", "--name", "lo") == 0
    assert _add(data_dir, "gitlab", "--gitlab-project", "x/y", "--base-url", "http://10.0.0.8", "--allow-private") == 0
    listing = _listing(data_dir, capsys)
    assert "http://127.0.0.1:9999/hook (private networks allowed)" in listing
    # …but not the metadata service, which only the operator's network list opens.
    assert _add(data_dir, "webhook", "--url", "http://169.254.169.254/", "--allow-private") == 1
    assert "link-local address; refused (list its network in FORGELINE_NOTIFY_ALLOWED_NETWORKS" in (
        capsys.readouterr().err
    )
    monkeypatch.setenv("FORGELINE_NOTIFY_ALLOWED_NETWORKS", "169.254.169.254/32, 10.20.0.0/16")
    assert _add(data_dir, "webhook", "--url", "http://169.254.169.254/", "--name", "meta") == 0
    assert _add(data_dir, "webhook", "--url", "http://10.20.1.1/", "--name", "in-list") == 0
    assert _add(data_dir, "webhook", "--url", "http://10.21.1.1/") == 1
    # A public destination needs nothing.
    assert _add(data_dir, "webhook", "--url", "https://93.184.216.34/hook", "--name", "public") == 0
    listing = _listing(data_dir, capsys)
    assert all(name in listing for name in ("lo", "meta", "in-list", "public"))
    monkeypatch.setenv("FORGELINE_NOTIFY_ALLOWED_NETWORKS", "10.0.0.0/33")
    assert main(["notify", "list", "--data-dir", str(data_dir)]) != 0  # a typo fails at start
    assert "FORGELINE_NOTIFY_ALLOWED_NETWORKS='10.0.0.0/33'" in capsys.readouterr().err
