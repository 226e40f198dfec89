"""The README's snippets, extracted from README.md and run against a real `forgeline up`.

Every fenced block of "Try it" and "Quickstarts" whose runtime exists here runs as written
(shell, Python, Node.js), from a directory laid out like the repository root (``.forgeline``
and ``.venv``), with only the gateway's address swapped for the test pipeline's. Then what
each promised to deliver is looked up in the warehouse. The Unity and Godot snippets, whose
engines are not here, are checked for the routes and header they must use.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.pipeline import REPO, ForgelineUp

pytestmark = pytest.mark.integration

README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
README_URL = "http://127.0.0.1:8080"


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def snippets(*titles: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block in these sections, in order."""
    return [(m.group(1), m.group(2)) for title in titles for m in FENCE.finditer(section(title))]


def _command(language: str, code: str) -> list[str] | None:
    if language == "sh":
        return ["bash", "-euo", "pipefail", "-c", code]
    if language == "python":
        return [sys.executable, "-c", code]
    if language == "js" and shutil.which("node"):
        return ["node", "--input-type=module", "-e", code]
    return None


@pytest.fixture
def workdir(tmp_path: Path, forgeline_up: ForgelineUp) -> Path:
    """A stand-in for the repository root: the running pipeline's data and the virtualenv."""
    (tmp_path / ".forgeline").symlink_to(forgeline_up.data_dir)
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    return tmp_path


def test_the_readme_has_a_quickstart_per_dialect() -> None:
    languages = [language for language, _ in snippets("Quickstarts")]
    assert {"sh", "js", "csharp", "gdscript", "python"} <= set(languages)
    text = section("Quickstarts")
    for heading in ("### Forge Logger", "### MessagePack", "### Logister"):
        assert heading in text
    assert "capture_exception" in text


@pytest.mark.parametrize("language", ["csharp", "gdscript"])
def test_engine_snippets_use_the_documented_routes(language: str) -> None:
    (code,) = [code for lang, code in snippets("Quickstarts") if lang == language]
    for needed in ("/v1/ingest/sessions", "/v1/ingest/events", "Authorization", "Bearer ", "sessionId"):
        assert needed in code, f"{language} snippet lacks {needed!r}"


def test_every_runnable_snippet_works_against_forgeline_up(forgeline_up: ForgelineUp, workdir: Path) -> None:
    up = forgeline_up
    checks = {
        "forge crash": "SELECT count() FROM forgeline.error_events WHERE exception_class = 'NullReferenceException' "
        "AND build = '1.14.2' AND platform = 'windows'",
        "node exception": "SELECT count() FROM forgeline.error_events WHERE exception_class = 'SyntaxError' "
        "AND source = 'game' AND build = '1.14.2'",
        "msgpack event": "SELECT count() FROM forgeline.gameplay_events FINAL WHERE player_id = 'player-42'",
        "level model": "SELECT count() FROM forgeline.level_models FINAL WHERE level_name = 'Level_1'",
        "logister exception": "SELECT count() FROM forgeline.errors FINAL WHERE exception_class = 'TimeoutError' "
        "AND message = 'payment provider timed out after 30 s'",
        "try-it error": "SELECT count() FROM forgeline.errors FINAL WHERE fingerprint = 'checkout-nomethoderror'",
    }
    before = {name: up.scalar(query) for name, query in checks.items()}
    ran = []
    for language, code in snippets("Try it", "Quickstarts"):
        command = _command(language, code.replace(README_URL, up.base_url))
        if command is None:
            continue
        out = subprocess.run(command, cwd=workdir, capture_output=True, timeout=120, check=False, env=up.env())
        assert out.returncode == 0, f"{language} snippet failed:\n{code}\n{out.stdout.decode()}{out.stderr.decode()}"
        ran.append(language)
    assert ran.count("sh") >= 4 and ran.count("python") == 2
    assert "js" in ran or not shutil.which("node")
    for name, query in checks.items():
        if name == "node exception" and "js" not in ran:
            continue
        assert up.wait_for(query, before[name] + 1) > before[name], f"{name} did not arrive"
