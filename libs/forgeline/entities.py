"""How a control topic stores its entities (tenancy, console): one record per entity version,
keyed ``<type>:<id>`` (so compaction keeps each entity's last version), valued
``{"type": …, "data": <the dataclass's fields>}``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import orjson

# Turns a decoded ``data`` object into constructor arguments (JSON has no tuples, say).
Revive = Callable[[type[Any], dict[str, Any]], dict[str, Any]]


class EntityCodec:
    def __init__(self, label: str, types: Mapping[str, type[Any]], revive: Revive | None = None) -> None:
        self._label = label  # names the topic in errors: "bad tenancy record: …"
        self._types = dict(types)
        self._names = {cls: name for name, cls in self._types.items()}
        self._revive = revive

    def key(self, entity: Any) -> bytes:
        return f"{self._names[type(entity)]}:{entity.id}".encode()

    def encode(self, entity: Any) -> bytes:
        return orjson.dumps({"type": self._names[type(entity)], "data": asdict(entity)})

    def decode(self, value: bytes) -> Any:
        """Raises ValueError on a record we do not understand."""
        try:
            doc = orjson.loads(value)
            cls = self._types[doc["type"]]
            data = dict(doc["data"])
            if self._revive is not None:
                data = self._revive(cls, data)
            return cls(**data)
        except (KeyError, TypeError, ValueError) as err:  # orjson.JSONDecodeError is a ValueError
            raise ValueError(f"bad {self._label} record: {err}") from err
