"""Shared fixtures: an in-process gateway on a real embedded bus, and `forgeline up` subprocesses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.factory import create_bus
from forgeline.bus.port import Bus, Record
from forgeline.clock import FakeClock
from forgeline.config import Settings
from forgeline.schemas.game_raw import v1_views
from services.gateway.app import create_app
from services.supervisor.bootstrap import BOOTSTRAP_FILE, bootstrap_tenancy

pytest_plugins = ["tests.fixtures.pipeline", "tests.fixtures.kafka", "tests.fixtures.s3", "tests.fixtures.providers"]


def read_all(bus: Bus, topic: str) -> list[Record]:
    """Every record of ``topic`` so far (up to its end when called), read with a group-less reader."""

    async def _read() -> list[Record]:
        reader = bus.reader([topic])
        await reader.start()
        out: list[Record] = []
        try:
            ends = await reader.end_offsets()
            done = dict.fromkeys(ends, 0)
            deadline = time.monotonic() + 30
            # Kafka fetches in the background: poll until every partition reached its end.
            while any(done[tp] < end for tp, end in ends.items()) and time.monotonic() < deadline:
                for record in await reader.poll(10_000, timeout_s=0.2):
                    out.append(record)
                    done[record.tp] = max(done.get(record.tp, 0), record.offset + 1)
        finally:
            await reader.stop()
        return out

    return asyncio.run(_read())


@dataclass
class GatewayHarness:
    client: TestClient
    tokens: dict[str, str]
    bus: EmbeddedBus
    clock: FakeClock
    settings: Settings

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['logister_token']}"}

    def raw(self, topic: str = "raw.logister") -> list[dict[str, Any]]:
        if topic in ("raw.forge", "raw.msgpack"):
            # One record per accepted request (envelope v2): seen item by item, as v1 records.
            return [view for r in read_all(self.bus, topic) for view in v1_views(topic, r.value)]
        return [orjson.loads(r.value) for r in read_all(self.bus, topic)]


def bootstrap(data_dir: Path) -> tuple[EmbeddedBus, dict[str, str]]:
    bus = create_bus(f"embedded://{data_dir / 'bus'}")
    assert isinstance(bus, EmbeddedBus)
    asyncio.run(bootstrap_tenancy(bus, data_dir))
    return bus, orjson.loads((data_dir / BOOTSTRAP_FILE).read_bytes())


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayHarness]]:
    """Build a gateway app on a fresh data dir; keyword arguments override settings."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> GatewayHarness:
        data_dir = tmp_path / f"gw{len(clients)}"
        bus, tokens = bootstrap(data_dir)
        settings = Settings(data_dir=data_dir, token_refresh_seconds=0.2).with_overrides(**overrides)
        clock = FakeClock(time.time())
        client = TestClient(create_app(settings, bus, clock), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return GatewayHarness(client, tokens, bus, clock, settings)

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def gateway(make_gateway: Callable[..., GatewayHarness]) -> GatewayHarness:
    return make_gateway()
