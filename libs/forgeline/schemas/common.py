"""Helpers shared by the wire-format validators of every API family."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, TypeGuard

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])([A-Z])")

# DateTime64 in ClickHouse covers 1900..2299; we accept a narrower, sane window.
_MIN_YEAR, _MAX_YEAR = 1970, 2200


def snake_case(key: str) -> str:
    """``traceId`` → ``trace_id``, ``durationMs`` → ``duration_ms``, ``EVENT_TYPE`` →
    ``event_type`` (Logister accepts upper-case keys); snake keys are unchanged."""
    if key.isupper():
        return key.lower()
    if "_" in key or key.islower():
        return key
    return _CAMEL_BOUNDARY.sub(r"_\1", key).lower()


def snake_keys(doc: dict[str, Any]) -> dict[str, Any]:
    """Top-level keys in snake_case. When both spellings are sent, the snake_case one wins."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        snake = snake_case(key)
        if snake != key and snake in doc:
            continue
        out[snake] = value
    return out


def parse_timestamp(value: object) -> datetime | None:
    """An ISO 8601 string → aware UTC datetime; None when not a usable timestamp."""
    if not isinstance(value, str) or not 10 <= len(value) <= 64:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # an offset that pushes year 1 or 9999 out of datetime's range
        return None
    if not _MIN_YEAR <= parsed.year <= _MAX_YEAR:
        return None
    return parsed


def to_millis(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def json_depth_exceeds(doc: object, limit: int) -> bool:
    """Whether ``doc`` nests containers deeper than ``limit`` (iterative: no recursion limit).

    Only containers are stacked: scalars, most of a document, cost one isinstance each.
    """
    if not isinstance(doc, dict | list):
        return False
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # not NaN


def humanize(field: str) -> str:
    """Rails-style attribute name for messages: ``event_type`` → ``Event type``."""
    text = field.replace("_", " ")
    return text[:1].upper() + text[1:]
