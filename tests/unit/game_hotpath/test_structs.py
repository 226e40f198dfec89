"""The compiled schema's enums are the validators' enums."""

from __future__ import annotations

import typing

import pytest

from forgeline.schemas import forge, game_structs

pytestmark = pytest.mark.unit


def test_the_severities_are_forges() -> None:
    assert typing.get_args(game_structs.Severity) == forge.SEVERITIES
