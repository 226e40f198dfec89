"""`forgeline applications create|list`, and tokens bound only to their own project's application."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from services.cli.main import main

pytestmark = pytest.mark.unit


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """A bootstrapped data dir (project `default`, application `default-game`) and a project `b`."""
    for name in list(os.environ):
        if name.startswith("FORGELINE_"):
            monkeypatch.delenv(name)
    path = str(tmp_path / "data")
    assert main(["bootstrap", "--data-dir", path]) == 0
    assert main(["projects", "create", "b", "--data-dir", path]) == 0
    capsys.readouterr()
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_applications_create_and_list_show_app_id_and_app_name(
    data_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "applications", "create", "space-race", "--project", "b", "--data-dir", data_dir)
    assert code == 0, err
    app_id = out.strip()
    assert "app_name space-race" in err and f"app_id {app_id}" in err

    code, out, _ = _run(capsys, "applications", "list", "--data-dir", data_dir)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["app_id", "project", "app_name"]
    bootstrap_app = json.loads((Path(data_dir) / "bootstrap-tokens.json").read_text())["msgpack_app_id"]
    assert sorted(row.split() for row in rows) == sorted(
        [[bootstrap_app, "default", "default-game"], [app_id, "b", "space-race"]]
    )

    code, out, _ = _run(capsys, "applications", "list", "--project", "b", "--data-dir", data_dir)
    assert code == 0 and [row.split() for row in out.splitlines()[1:]] == [[app_id, "b", "space-race"]]


def test_application_names_are_unique_per_project_only(data_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    # `default-game` exists in project default; project b may have its own.
    assert _run(capsys, "applications", "create", "default-game", "--project", "b", "--data-dir", data_dir)[0] == 0
    code, _, err = _run(capsys, "applications", "create", "default-game", "--project", "b", "--data-dir", data_dir)
    assert code == 1 and "has an application named 'default-game' already" in err
    code, _, err = _run(capsys, "applications", "create", "x", "--project", "nope", "--data-dir", data_dir)
    assert code == 1 and "no project 'nope'" in err


def test_a_msgpack_token_for_another_projects_application_is_refused(
    data_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap_app = json.loads((Path(data_dir) / "bootstrap-tokens.json").read_text())["msgpack_app_id"]
    for ref in ("default-game", bootstrap_app):  # by name or by id
        code, out, err = _run(
            capsys,
            "tokens", "create", "--kind", "msgpack_public", "--project", "b", "--application", ref,
            "--data-dir", data_dir,
        )  # fmt: skip
        assert (code, out) == (1, "")
        assert f"application {ref!r} belongs to another project, not b" in err
    code, _, _ = _run(capsys, "tokens", "list", "--data-dir", data_dir)
    assert code == 0

    # With b's own application (even under the same name) it works.
    _run(capsys, "applications", "create", "default-game", "--project", "b", "--data-dir", data_dir)
    code, out, err = _run(
        capsys,
        "tokens", "create", "--kind", "msgpack_secret", "--project", "b", "--application", "default-game",
        "--data-dir", data_dir,
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("mpk_sec_")


def test_msgpack_tokens_need_an_application_and_others_take_none(
    data_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(
        capsys, "tokens", "create", "--kind", "msgpack_public", "--project", "b", "--data-dir", data_dir
    )
    assert code == 1 and "needs --application" in err and "none yet" in err
    code, _, err = _run(
        capsys,
        "tokens", "create", "--kind", "forge", "--project", "default", "--application", "default-game",
        "--data-dir", data_dir,
    )  # fmt: skip
    assert code == 1 and "--application is for MessagePack tokens only" in err
    code, _, err = _run(
        capsys,
        "tokens", "create", "--kind", "msgpack_public", "--project", "b", "--application", "ghost",
        "--data-dir", data_dir,
    )  # fmt: skip
    assert code == 1 and "no application 'ghost' in project b" in err
