"""Management operations on a real embedded bus: scope checks, audit entries, admin keys."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from forgeline.bus.factory import create_bus
from forgeline.bus.port import OutgoingRecord
from forgeline.manage.ops import Actor, Management
from forgeline.manage.store import ConsoleStore
from forgeline.tenancy.store import TenancyAdmin
from services.console.app import ConsoleDeps, console_app
from services.console.reader import AdminReader
from services.console.sessions import Signer

pytestmark = pytest.mark.unit


async def _scenario(root: Path) -> None:
    bus = create_bus(f"embedded://{root}", 1)
    async with TenancyAdmin(bus) as tenancy, ConsoleStore(bus) as store:
        await tenancy.create_organisation("org")
        manage = Management(tenancy, store)
        root_actor = Actor("cli:test")
        a = await manage.create_project(root_actor, "A")
        b = await manage.create_project(root_actor, "B")
        key, secret = await manage.create_admin_key(root_actor, "A", "ci")
        scoped = manage.actor_for_key(secret)
        assert scoped is not None and scoped.scope == a.id
        # A key of project A sees A only; B does not exist for it.
        assert [p.name for p in manage.projects(scoped)] == ["A"]
        with pytest.raises(LookupError):
            await manage.create_token(scoped, "logister", b.id)
        with pytest.raises(PermissionError):
            await manage.create_project(scoped, "C")
        token, token_secret = await manage.create_token(scoped, "logister", "A", name="game")
        # The audit log names who and what, never a secret.
        log = orjson.dumps([e.details for e in store.table.audit]).decode()
        assert token_secret not in log and secret not in log
        assert [e.action for e in store.table.audit][-2:] == ["admin_key.create", "token.create"]
        assert store.table.audit[-1].actor == f"admin-key:{key.display_prefix}"
        # Archiving asks for the name; an archived project gets no tokens.
        with pytest.raises(ValueError):
            await manage.set_archived(scoped, "A", True, confirm="wrong")
        await manage.set_archived(scoped, "A", True, confirm="A")
        with pytest.raises(ValueError):
            await manage.create_token(scoped, "logister", "A")
        await manage.revoke_admin_key(root_actor, key.id)
        assert manage.actor_for_key(secret) is None
        assert token.project_id == a.id


def test_scope_audit_and_admin_keys(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path / "bus"))


def test_management_api_needs_a_key_and_keeps_to_its_scope(tmp_path: Path) -> None:
    bus = create_bus(f"embedded://{tmp_path / 'bus'}", 1)

    async def setup() -> tuple[str, str]:
        async with TenancyAdmin(bus) as tenancy, ConsoleStore(bus) as store:
            await tenancy.create_organisation("org")
            manage = Management(tenancy, store)
            await manage.create_project(Actor("t"), "A")
            other = await manage.create_project(Actor("t"), "B")
            _key, secret = await manage.create_admin_key(Actor("t"), "A")
            return secret, other.id

    secret, other_id = asyncio.run(setup())
    tenancy, store = TenancyAdmin(bus), ConsoleStore(bus)

    async def no_control(record: OutgoingRecord) -> None:
        raise AssertionError("no control records here")

    deps = ConsoleDeps(Management(tenancy, store), AdminReader("http://127.0.0.1:9"), no_control, Signer(b"s" * 32))
    app = console_app(deps)

    @contextlib.asynccontextmanager
    async def lifespan(_app: object) -> AsyncIterator[None]:
        async with tenancy, store:  # opened on the test client's own event loop
            yield

    app.router.lifespan_context = lifespan
    with TestClient(app) as client:
        base = "/api/manage/v1"
        assert client.get(f"{base}/projects").status_code == 401
        assert client.get(f"{base}/projects", headers={"Authorization": "Bearer fla_nope"}).status_code == 401
        auth = {"Authorization": f"Bearer {secret}"}
        assert [p["name"] for p in client.get(f"{base}/projects", headers=auth).json()["projects"]] == ["A"]
        assert client.get(f"{base}/projects/{other_id}/tokens", headers=auth).status_code == 404
        created = client.post(f"{base}/projects/A/tokens", json={"kind": "forge"}, headers=auth)
        assert created.status_code == 201 and created.json()["token"].startswith("flg_")
        assert "hash" not in created.json()
        assert client.post(f"{base}/projects/A/tokens", json={"kind": "nope"}, headers=auth).status_code == 400
        assert client.post(f"{base}/projects/A/tokens", content=b"[", headers=auth).status_code == 400
        assert client.post(f"{base}/projects", json={"name": "C"}, headers=auth).status_code == 403
        assert client.get(f"{base}/openapi.json").json()["openapi"].startswith("3.")
        # Pages need a session: a sign-in form without its nonce is refused.
        assert client.get("/p/x/errors", follow_redirects=False).status_code == 303
        assert client.post("/login", data={"username": "a", "password": "b", "csrf": "x"}).status_code == 403


def test_notify_targets_through_the_api(tmp_path: Path) -> None:
    from forgeline.notify.crypto import SecretBox, load_key
    from forgeline.notify.store import TargetAdmin

    bus = create_bus(f"embedded://{tmp_path / 'bus'}", 1)

    async def setup() -> tuple[str, str]:
        async with TenancyAdmin(bus) as tenancy, ConsoleStore(bus) as store:
            await tenancy.create_organisation("org")
            manage = Management(tenancy, store)
            await manage.create_project(Actor("t"), "A")
            _key, scoped = await manage.create_admin_key(Actor("t"), "A")
            _key, everywhere = await manage.create_admin_key(Actor("t"), None)
            return scoped, everywhere

    scoped, everywhere = asyncio.run(setup())
    tenancy, store = TenancyAdmin(bus), ConsoleStore(bus)
    targets = TargetAdmin(bus, SecretBox(load_key(tmp_path / "data")))

    async def no_control(record: OutgoingRecord) -> None:
        raise AssertionError("no control records here")

    manage = Management(tenancy, store, targets)
    app = console_app(ConsoleDeps(manage, AdminReader("http://127.0.0.1:9"), no_control, Signer(b"s" * 32)))

    @contextlib.asynccontextmanager
    async def lifespan(_app: object) -> AsyncIterator[None]:
        async with tenancy, store, targets:
            yield

    app.router.lifespan_context = lifespan
    base = "/api/manage/v1/projects/A/notify-targets"
    auth = {"Authorization": f"Bearer {scoped}"}
    with TestClient(app) as client:
        hook = {"provider": "webhook", "name": "ops", "settings": {"url": "https://93.184.216.34/hooks/fl"}}
        created = client.post(base, json=hook, headers=auth)
        assert created.status_code == 201, created.text
        signing = created.json()["signing_secret"]
        assert signing.startswith("whsec_")
        listed = client.get(base, headers=auth).json()["notify_targets"]
        assert [t["name"] for t in listed] == ["ops"] and signing not in repr(listed)
        # The egress rules apply here as at `forgeline notify add`.
        private = {**hook, "settings": {"url": "http://10.0.0.5/hook"}}
        assert client.post(base, json=private, headers=auth).status_code == 400
        # Opening private networks is for an all-projects key only.
        assert client.post(base, json={**private, "allow_private": True}, headers=auth).status_code == 403
        assert client.post(base, json={**hook, "provider": "pager"}, headers=auth).status_code == 400
        assert client.post(base, json={**hook, "settings": "x"}, headers=auth).status_code == 400
        wide = {"Authorization": f"Bearer {everywhere}"}
        assert client.post(base, json={**private, "allow_private": True}, headers=wide).status_code == 201
        removed = client.post(f"/api/manage/v1/notify-targets/{listed[0]['id']}/remove", headers=auth)
        assert removed.status_code == 200
        left = client.get(base, headers=auth).json()["notify_targets"]
        assert [t["destination"] for t in left] == ["http://10.0.0.5/hook (private networks allowed)"]
        actions = [e["action"] for e in client.get("/api/manage/v1/audit", headers=wide).json()["entries"]]
        assert actions[:3] == ["notify.remove", "notify.add", "notify.add"]
        assert signing not in repr(client.get("/api/manage/v1/audit", headers=wide).json())


def test_unknown_admin_keys_are_limited_per_address(tmp_path: Path) -> None:
    from services.console.api import AUTH_FAILURES_PER_WINDOW

    bus = create_bus(f"embedded://{tmp_path / 'bus'}", 1)

    async def no_control(record: OutgoingRecord) -> None:
        raise AssertionError("no control records here")

    tenancy, store = TenancyAdmin(bus), ConsoleStore(bus)
    app = console_app(
        ConsoleDeps(Management(tenancy, store), AdminReader("http://127.0.0.1:9"), no_control, Signer(b"s" * 32))
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: object) -> AsyncIterator[None]:
        async with tenancy, store:
            yield

    app.router.lifespan_context = lifespan
    with TestClient(app) as client:
        for _ in range(AUTH_FAILURES_PER_WINDOW):
            assert client.get("/api/manage/v1/projects", headers={"Authorization": "Bearer fla_x"}).status_code == 401
        limited = client.get("/api/manage/v1/projects", headers={"Authorization": "Bearer fla_x"})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0


def test_a_console_without_the_notifiers_key_refuses_to_add_targets() -> None:
    from forgeline.config import Secret, Settings
    from services.console.main import _cannot_add_targets

    distributed = Settings(bus_url="kafka://kafka:9092")
    assert "FORGELINE_NOTIFY_KEY" in _cannot_add_targets(distributed)
    assert _cannot_add_targets(distributed.with_overrides(notify_key=Secret("k" * 44))) == ""
    assert _cannot_add_targets(Settings()) == ""  # embedded: the data dir's key is the notifier's

    manage = Management(None, None, object(), cannot_add_targets="no key here")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no key here"):
        asyncio.run(manage.add_notify_target(Actor("t"), "A", "webhook", "x", {"url": "https://93.184.216.34/"}))
