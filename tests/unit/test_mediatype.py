"""forgeline.mediatype: the RFC 9110 media-type grammar an upload's content type must follow."""

from __future__ import annotations

import re

import pytest

from forgeline.mediatype import PATTERN, essence, media_type_problem

pytestmark = pytest.mark.unit

VALID = [
    "image/png",
    "IMAGE/PNG",
    "application/vnd.forge.save+json",
    "text/plain; charset=utf-8",
    "text/plain;charset=utf-8",
    "text/plain ;charset=utf-8 ; format=flowed",
    'text/plain; name="a b; c=d"',
    'text/plain; name="quoted \\" quote"',
    'text/plain; name=""',
    "video/mp4;",
    "application/x-www-form-urlencoded",
    "x-custom/!#$%&'*+-.^_`|~09az",
]
INVALID = [
    "",
    "image",
    "image/",
    "/png",
    "image//png",
    "image/png/x",
    " image/png",
    "image/png ",
    "image /png",
    "image/png; charset",
    "image/png; =utf-8",
    "image/png; charset=",
    "image/png; charset=a b",
    'image/png; name="unterminated',
    'image/png; name="bad \\é"',
    "image/png, text/html",
    "image/pngé",
    "image/(png)",
    "image/png; a=b; c",
]
CONTROL = ["image/png\r\nX-Injected: 1", "image/png\n", "image/png\x00", "image/png;\tq=1", "image\x7f/png"]


@pytest.mark.parametrize("value", VALID)
def test_media_types_are_accepted(value: str) -> None:
    assert media_type_problem(value) is None
    assert re.search(PATTERN, value), "the OpenAPI pattern agrees"


@pytest.mark.parametrize("value", INVALID)
def test_non_media_types_are_refused(value: str) -> None:
    assert "must be a media type" in (media_type_problem(value) or "")
    assert not re.search(PATTERN, value), "the OpenAPI pattern agrees"


@pytest.mark.parametrize("value", CONTROL)
def test_control_characters_are_named(value: str) -> None:
    assert "control characters" in (media_type_problem(value) or "")


def test_length_is_bounded() -> None:
    assert "at most" in (media_type_problem("a/" + "b" * 300) or "")


def test_essence_drops_parameters_and_case() -> None:
    assert essence("Text/Plain ; charset=UTF-8") == essence("text/plain") == "text/plain"
