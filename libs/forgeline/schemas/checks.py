"""Validation helpers shared by the game families: collect every problem, report them once.

A ``Problem`` names the batch index (None for a single object), the dotted field path
and what is wrong; ``Invalid`` carries all problems of a request to the gateway's 400.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from forgeline.schemas.common import parse_timestamp

_SHORT = 256


@dataclass(frozen=True, slots=True)
class Problem:
    field: str
    message: str
    index: int | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "message": self.message}
        if self.index is not None:
            out["index"] = self.index
        return out


class Invalid(Exception):
    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = list(problems)


class Check:
    """Collects problems for one item; ``index`` is its position in a batch (None if single)."""

    def __init__(self, doc: Any, index: int | None = None, prefix: str = "") -> None:
        self.doc: dict[str, Any] = doc if isinstance(doc, dict) else {}
        self.index = index
        self.prefix = prefix
        self.problems: list[Problem] = []
        self.is_object = isinstance(doc, dict)
        if not self.is_object:
            self.fail("", "must be a JSON object")

    def fail(self, key: str, message: str) -> None:
        if key and not self.is_object:
            return  # "must be a JSON object" says it all; no cascade of "is required"
        path = f"{self.prefix}{key}" if key else (self.prefix.rstrip(".") or "body")
        self.problems.append(Problem(path, message, self.index))

    def string(self, key: str, *, required: bool = False, max_len: int = _SHORT, empty_ok: bool = False) -> str:
        value = self.doc.get(key)
        if value is None:
            if required:
                self.fail(key, "is required")
            return ""
        if not isinstance(value, str):
            self.fail(key, "must be a string")
            return ""
        if not value.strip() and not empty_ok:
            self.fail(key, "must not be empty")
        elif len(value) > max_len:
            self.fail(key, f"must be at most {max_len} characters")
        return value

    def choice(self, key: str, options: tuple[str, ...], *, required: bool = False) -> str:
        value = self.string(key, required=required)
        if value and value not in options:
            self.fail(key, f"must be one of {', '.join(options)}")
            return ""
        return value

    def uuid(self, key: str, *, required: bool = False) -> uuid.UUID | None:
        value = self.doc.get(key)
        if value is None:
            if required:
                self.fail(key, "is required")
            return None
        parsed = _as_uuid(value)
        if parsed is None:
            self.fail(key, "must be a UUID")
        return parsed

    def obj(self, key: str, *, required: bool = False) -> dict[str, Any] | None:
        value = self.doc.get(key)
        if value is None:
            if required:
                self.fail(key, "is required")
            return None
        if not isinstance(value, dict):
            self.fail(key, "must be an object")
            return None
        return value

    def timestamp(self, key: str, default: datetime) -> datetime:
        value = self.doc.get(key)
        if value is None:
            return default
        parsed = parse_timestamp(value)
        if parsed is None:
            self.fail(key, "must be an ISO 8601 timestamp")
            return default
        return parsed

    def uuid_list(self, key: str, max_items: int) -> list[str]:
        value = self.doc.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, "must be an array of UUIDs")
            return []
        if len(value) > max_items:
            self.fail(key, f"must hold at most {max_items} items")
            return []
        out: list[str] = []
        for n, item in enumerate(value):
            parsed = _as_uuid(item)
            if parsed is None:
                self.fail(f"{key}[{n}]", "must be a UUID")
            else:
                out.append(str(parsed))
        return out

    def choice_list(self, key: str, options: tuple[str, ...]) -> list[str]:
        value = self.doc.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, f"must be an array of: {', '.join(options)}")
            return []
        out: list[str] = []
        for n, item in enumerate(value):
            if item not in options:
                self.fail(f"{key}[{n}]", f"must be one of {', '.join(options)}")
            elif item not in out:
                out.append(item)
        return out

    def nested(self, key: str, *, required: bool = False) -> Check | None:
        value = self.obj(key, required=required)
        if value is None:
            return None
        return Check(value, self.index, f"{self.prefix}{key}.")

    def absorb(self, child: Check | None) -> None:
        if child is not None:
            self.problems.extend(child.problems)

    def raise_if_invalid(self) -> None:
        if self.problems:
            raise Invalid(self.problems)


def _as_uuid(value: object) -> uuid.UUID | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
