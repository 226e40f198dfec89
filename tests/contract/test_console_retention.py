"""Retention through the management API and the console's Settings page: forwarded to the
processors' admin port (its real app, with its key) and audited; scope and input checked."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from starlette.testclient import TestClient

from forgeline.bus.factory import create_bus
from forgeline.bus.port import OutgoingRecord
from forgeline.lifecycle.retention import DEFAULT_DAYS, KINDS
from forgeline.lifecycle.service import Lifecycle
from forgeline.manage.ops import Actor, Management, Unavailable
from forgeline.manage.store import ConsoleStore
from forgeline.tenancy.store import TenancyAdmin
from services.admin import admin_app
from services.console.app import ConsoleDeps, console_app
from services.console.reader import AdminReader
from services.console.sessions import Signer

pytestmark = pytest.mark.contract

ADMIN_KEY = "k" * 40
PASSWORD = "correct horse battery"
BASE = "/api/manage/v1"


class FakeLifecycle:
    """The warehouse side of ``POST /retention``: policies per project, defaults elsewhere."""

    def __init__(self) -> None:
        self.own: dict[str, dict[str, int]] = {}
        self.calls: list[tuple[str, dict[str, int]]] = []

    def retention(self, project_id: str, days: Mapping[str, int]) -> dict[str, Any]:
        self.calls.append((project_id, dict(days)))
        own = self.own.setdefault(project_id, {})
        own.update(days)
        return {
            "project_id": project_id,
            "days": {kind: own.get(kind, DEFAULT_DAYS) for kind in KINDS},
            "own": dict(sorted(own.items())),
            "rewritten": sorted(days),
        }


class Setup:
    def __init__(self, client: TestClient, lifecycle: FakeLifecycle, manage: Management, ids: dict[str, str]):
        self.client, self.lifecycle, self.manage, self.ids = client, lifecycle, manage, ids


def _reader(lifecycle: FakeLifecycle, key: str) -> AdminReader:
    admin = admin_app(lambda: {}, None, ADMIN_KEY, cast(Lifecycle, lifecycle))
    return AdminReader("http://admin.test", key, transport=httpx.ASGITransport(app=admin))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    bus = create_bus(f"embedded://{tmp_path / 'bus'}", 1)

    async def prepare() -> dict[str, str]:
        async with TenancyAdmin(bus) as tenancy, ConsoleStore(bus) as store:
            await tenancy.create_organisation("org")
            manage = Management(tenancy, store)
            a = await manage.create_project(Actor("t"), "A")
            b = await manage.create_project(Actor("t"), "B")
            _key, secret = await manage.create_admin_key(Actor("t"), "A")
            await manage.create_user(Actor("t"), "alice", ("A",), PASSWORD)
            return {"A": a.id, "B": b.id, "key": secret}

    ids = asyncio.run(prepare())
    tenancy, store = TenancyAdmin(bus), ConsoleStore(bus)
    lifecycle = FakeLifecycle()
    reader = _reader(lifecycle, ADMIN_KEY)
    manage = Management(tenancy, store, retention=reader.retention)

    async def no_control(record: OutgoingRecord) -> None:
        raise AssertionError("no control records here")

    app = console_app(ConsoleDeps(manage, reader, no_control, Signer(b"s" * 32)))

    @contextlib.asynccontextmanager
    async def lifespan(_app: object) -> AsyncIterator[None]:
        async with tenancy, store:
            yield

    app.router.lifespan_context = lifespan
    with TestClient(app, base_url="http://console.test") as client:
        yield Setup(client, lifecycle, manage, ids)


def test_retention_through_the_management_api_is_forwarded_and_audited(setup: Setup) -> None:
    client, ids = setup.client, setup.ids
    auth = {"Authorization": f"Bearer {ids['key']}"}
    url = f"{BASE}/projects/A/retention"
    assert client.get(url).status_code == 401
    shown = client.get(url, headers=auth)
    assert shown.status_code == 200, shown.text
    assert shown.json()["own"] == {} and shown.json()["days"]["errors"] == DEFAULT_DAYS
    assert "dead_letters" not in shown.json()["days"]  # global, not a project's
    assert setup.lifecycle.calls == [(ids["A"], {})]

    changed = client.put(url, json={"days": {"errors": 30, "spans": "2w"}}, headers=auth)
    assert changed.status_code == 200, changed.text
    assert changed.json()["own"] == {"errors": 30, "spans": 14}
    assert setup.lifecycle.calls[-1] == (ids["A"], {"errors": 30, "spans": 14})
    entry = next(e for e in reversed(setup.manage.console.table.audit) if e.action == "project.retention")
    assert (entry.project_id, entry.details) == (ids["A"], {"errors": "30d", "spans": "14d"})

    calls = len(setup.lifecycle.calls)
    for bad in ({"errors": 0}, {"errors": "soon"}, {"nope": 3}, {"dead_letters": 3}, {}, {"errors": True}):
        assert client.put(url, json={"days": bad}, headers=auth).status_code == 400, bad
    assert client.put(url, json=["errors"], headers=auth).status_code == 400
    assert client.put(url, json={"errors": 3}, headers=auth).status_code == 400
    # Another project's retention: not the key's to read or change.
    assert client.get(f"{BASE}/projects/{ids['B']}/retention", headers=auth).status_code == 404
    assert client.put(f"{BASE}/projects/B/retention", json={"days": {"errors": 3}}, headers=auth).status_code == 404
    assert len(setup.lifecycle.calls) == calls  # nothing refused reached the processors


def test_settings_page_shows_and_edits_retention(setup: Setup) -> None:
    client, ids = setup.client, setup.ids
    page = client.get("/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert nonce
    signed = client.post(
        "/login", data={"username": "alice", "password": PASSWORD, "csrf": nonce.group(1)}, follow_redirects=False
    )
    assert signed.status_code == 303
    settings = client.get(f"/p/{ids['A']}/settings")
    assert settings.status_code == 200 and "<h2>Retention</h2>" in settings.text
    assert 'name="errors"' in settings.text and f"{DEFAULT_DAYS} days (default)" in settings.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', settings.text)
    assert csrf
    target = f"/p/{ids['A']}/settings/retention"
    assert client.post(target, data={"errors": "7d"}, follow_redirects=False).status_code == 403  # no CSRF token
    done = client.post(target, data={"csrf": csrf.group(1), "errors": "7d", "spans": ""}, follow_redirects=False)
    assert done.status_code == 303
    assert setup.lifecycle.calls[-1] == (ids["A"], {"errors": 7})
    shown = client.get(f"/p/{ids['A']}/settings").text
    assert 'value="7d"' in shown and "7 days" in shown
    refused = client.post(target, data={"csrf": csrf.group(1), "errors": "forever"})
    assert refused.status_code == 400 and "forever" in refused.text
    # Another project's Settings stay out of reach.
    other = client.post(f"/p/{ids['B']}/settings/retention", data={"csrf": csrf.group(1), "errors": "7d"})
    assert other.status_code == 404


def test_a_processors_port_that_refuses_the_key_is_a_503_not_a_500(tmp_path: Path) -> None:
    lifecycle = FakeLifecycle()

    async def ask() -> None:
        reader = _reader(lifecycle, "wrong-key")
        with pytest.raises(Unavailable, match="401"):
            await reader.retention("p", {})
        await reader.close()

    asyncio.run(ask())
    assert lifecycle.calls == []
