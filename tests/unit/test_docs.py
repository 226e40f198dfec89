"""The docs stay true to the code: the settings reference, the index, and words for users."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from forgeline.config import Settings, SettingsError
from forgeline.config.reference import render, variable

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
USER_FACING = [REPO / "README.md", REPO / "deploy" / "README.md", *sorted(DOCS.glob("*.md"))]
# Words that assume the project's history rather than speak to a studio ("helper" or
# "session" in that sense cannot be told from their ordinary meaning by a pattern).
HISTORY_WORDS = re.compile(r"\bseeds?\b|\bseed's\b|\bSPEC\b|\bthe issue\b", re.IGNORECASE)


def test_the_settings_reference_is_generated_from_the_settings() -> None:
    expected = render()
    actual = (DOCS / "settings.md").read_text(encoding="utf-8")
    assert actual == expected, (
        "docs/settings.md is out of date: .venv/bin/python -m forgeline.config.reference > docs/settings.md"
    )


@pytest.mark.parametrize("name", [f.name for f in fields(Settings)])
def test_every_setting_is_read_from_the_variable_the_reference_names(name: str) -> None:
    # The variable either changes the setting or is refused with its own name: it is read.
    env = {variable(name): "not-a-default-value"}
    try:
        settings = Settings.from_env(env)
    except SettingsError as err:
        assert str(err).startswith(f"{variable(name)}=")
    else:
        assert getattr(settings, name) != getattr(Settings(), name)


def test_the_index_lists_every_page_and_every_link_resolves() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)#]+\.md)\)", index))
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert pages <= linked, f"not in docs/README.md: {sorted(pages - linked)}"
    assert all((DOCS / link).exists() for link in linked)


@pytest.mark.parametrize("path", USER_FACING, ids=lambda p: str(p.relative_to(REPO)))
def test_no_words_that_assume_the_projects_history(path: Path) -> None:
    found = [
        f"{n}: {line.strip()}"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if HISTORY_WORDS.search(line)
    ]
    assert not found, "\n".join(found)
