"""Tokens for a bench data dir, created the same way `forgeline up` does on first start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from forgeline.bus.factory import create_bus
from services.supervisor.bootstrap import BOOTSTRAP_FILE, bootstrap_tenancy


def bootstrap_tokens(data_dir: Path, bus_url: str | None = None) -> dict[str, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(bootstrap_tenancy(create_bus(bus_url or f"embedded://{data_dir / 'bus'}"), data_dir))
    doc: dict[str, str] = orjson.loads((data_dir / BOOTSTRAP_FILE).read_bytes())
    return doc
