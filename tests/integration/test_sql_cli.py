"""`forgeline sql` against a running `forgeline up`: which kind of failure, and binary output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.fixtures.pipeline import REPO, ForgelineUp

pytestmark = pytest.mark.integration


def _sql(up: ForgelineUp, *args: str) -> subprocess.CompletedProcess[bytes]:
    argv = up.cli("sql", *args, "--data-dir", str(up.data_dir))
    return subprocess.run(argv, cwd=REPO, env=up.env(), capture_output=True, timeout=60, check=False)


def test_a_parse_error_and_a_refused_write_are_told_apart(forgeline_up: ForgelineUp) -> None:
    syntax = _sql(forgeline_up, "SELEC 1")
    assert syntax.returncode == 1
    assert syntax.stderr.decode().startswith("forgeline: syntax error: failed at position 7")
    write = _sql(forgeline_up, "INSERT INTO forgeline.errors (message) VALUES ('x')")
    assert write.returncode == 1
    assert write.stderr.decode().startswith("forgeline: refused: read-only")


def test_binary_formats_need_an_output_file(forgeline_up: ForgelineUp, tmp_path: Path) -> None:
    bare = _sql(forgeline_up, "SELECT 1 AS n", "--format", "Parquet")
    assert bare.returncode == 2 and bare.stdout == b""
    assert "--output FILE" in bare.stderr.decode()
    target = tmp_path / "n.parquet"
    written = _sql(forgeline_up, "SELECT 1 AS n", "--format", "Parquet", "--output", str(target))
    assert written.returncode == 0, written.stderr.decode()
    assert target.read_bytes().startswith(b"PAR1")
    text = tmp_path / "n.csv"
    assert _sql(forgeline_up, "SELECT 41 + 1", "--format", "CSV", "--output", str(text)).returncode == 0
    assert text.read_text() == "42\n"


def test_export_without_out_writes_under_the_data_dir(forgeline_up: ForgelineUp, tmp_path: Path) -> None:
    argv = forgeline_up.cli(
        "export", "--kind", "errors", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z"
    )
    done = subprocess.run(
        [*argv, "--data-dir", str(forgeline_up.data_dir)],
        cwd=tmp_path,  # stands for a checkout: nothing may appear here
        env={**forgeline_up.env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert list(tmp_path.iterdir()) == []
    assert str(forgeline_up.data_dir.resolve() / "backfill") in done.stdout.decode()
