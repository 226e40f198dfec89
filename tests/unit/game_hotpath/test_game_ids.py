"""game_ids.forge_event_ids is forge.event_ids, as text: the ids a response promised never change."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgeline.schemas import forge, msgpack
from forgeline.schemas.game_ids import forge_event_ids, msgpack_event_ids

pytestmark = pytest.mark.unit


@settings(max_examples=200, deadline=None, database=None)
@given(
    project=st.text(max_size=40),
    environment=st.text(max_size=20),
    digest=st.text("0123456789abcdef", min_size=64, max_size=64),
    count=st.integers(0, 250),
)
def test_the_same_ids_as_forge_event_ids(project: str, environment: str, digest: str, count: int) -> None:
    project = project.encode("utf-8", "replace").decode()  # text a token's project id can be
    expected = [
        str(i) for i in forge.event_ids(project, environment.encode("utf-8", "replace").decode(), digest, count)
    ]
    assert forge_event_ids(project, environment.encode("utf-8", "replace").decode(), digest, count) == expected


@settings(max_examples=200, deadline=None, database=None)
@given(
    project=st.text(max_size=40),
    app=st.text(max_size=40),
    digest=st.text("0123456789abcdef", min_size=64, max_size=64),
    first=st.integers(0, 2000),
    count=st.integers(0, 60),
)
def test_the_same_ids_as_msgpack_event_id(project: str, app: str, digest: str, first: int, count: int) -> None:
    project, app = (text.encode("utf-8", "replace").decode() for text in (project, app))
    expected = [str(msgpack.event_id(project, app, digest, n)) for n in range(first, first + count)]
    assert msgpack_event_ids(project, app, digest, first, count) == expected
