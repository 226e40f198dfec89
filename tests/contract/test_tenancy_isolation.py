"""Tenants distrust each other: project B can neither cite project A's ids nor write A's rows.

Two projects on one gateway, A (the bootstrap one) and B (created here), each with its own
Forge token, application and MessagePack keys. Every cross-project citation is a 403 in the
Forge error format and leaves the raw log as it was; a MessagePack token can only be bound
to an application of its own project, and the same request from two projects is two rows.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import msgpack
import pytest

from forgeline.schemas import msgpack as schema
from forgeline.tenancy.model import TokenKind
from forgeline.tenancy.store import TenancyAdmin
from tests.conftest import GatewayHarness
from tests.contract.forge_support import new_session
from tests.contract.logister_support import run, wait_for_status
from tests.contract.test_msgpack_routes import gameplay

pytestmark = pytest.mark.contract

FORBIDDEN = "Token does not have access to this project/environment"


@dataclass(frozen=True)
class Tenant:
    project_id: str
    forge: str
    public: str
    secret: str
    app_id: str
    app_name: str


def _tenant_a(gw: GatewayHarness) -> Tenant:
    t = gw.tokens
    return Tenant(
        t["project_id"], t["forge_token"], t["msgpack_public_token"], t["msgpack_secret_key"], t["msgpack_app_id"], ""
    )


def _create_tenant_b(gw: GatewayHarness) -> Tenant:
    async def go() -> Tenant:
        async with TenancyAdmin(gw.bus) as admin:
            org = next(iter(admin.table.organisations.values()))
            project = await admin.create_project(org.id, "project-b")
            await admin.create_environment(project.id, "production")
            # The same name as A's application: names are scoped to their project.
            app = await admin.create_application(project.id, "default-game")
            _, forge = await admin.create_token("forge", project.id, "production")
            _, public = await admin.create_token("msgpack_public", project.id, "production", app.id)
            _, secret = await admin.create_token("msgpack_secret", project.id, "production", app.id)
            return Tenant(project.id, forge, public, secret, app.id, app.name)

    tenant: Tenant = run(go())
    session = {"build": {"version": "1", "platform": "linux"}}
    headers = {"Authorization": f"Bearer {tenant.forge}"}
    # B's tokens reach the gateway through the control topic (refresh 0.2 s).
    wait_for_status(gw, lambda: gw.client.post("/v1/ingest/sessions", json=session, headers=headers), 201)
    return tenant


@pytest.fixture
def tenants(gateway: GatewayHarness) -> tuple[GatewayHarness, Tenant, Tenant]:
    return gateway, _tenant_a(gateway), _create_tenant_b(gateway)


def _forge(gw: GatewayHarness, tenant: Tenant, path: str, body: Any) -> Any:
    return gw.client.post(path, json=body, headers={"Authorization": f"Bearer {tenant.forge}"})


def _report(session_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "sessionId": session_id,
        "title": "Stuck in wall",
        "description": "level 2",
        "severity": "high",
        "reporterType": "qa",
        "export": ["github"],
        **extra,
    }


def _a_upload(gw: GatewayHarness, a: Tenant) -> str:
    spec = {"filename": "shot.png", "contentType": "image/png", "size": 10, "type": "screenshot"}
    response = _forge(gw, a, "/v1/ingest/uploads", {"sessionId": new_session(gw, a.forge), "files": [spec]})
    assert response.status_code == 201, response.text
    return str(response.json()["uploads"][0]["uploadId"])


def _a_event(gw: GatewayHarness, a: Tenant) -> str:
    response = _forge(gw, a, "/v1/ingest/events", {"sessionId": new_session(gw, a.forge), "type": "jump"})
    assert response.status_code == 201, response.text
    return str(response.json()["eventIds"][0])


def _assert_refused(gw: GatewayHarness, send: Any, fields: list[tuple[str, int | None]]) -> None:
    before = len(gw.raw("raw.forge"))
    response = send()
    assert response.status_code == 403, response.text
    body = response.json()
    assert (body["error"], body["code"]) == (FORBIDDEN, "forbidden")
    assert [(d["field"], d.get("index")) for d in body["details"]] == fields
    assert all("of this project" in d["message"] for d in body["details"])
    assert len(gw.raw("raw.forge")) == before, "a refused citation must store nothing"


@pytest.mark.parametrize("cited", ["sessionId", "eventIds", "uploadIds"])
def test_b_report_citing_a_session_event_or_upload_is_403(
    tenants: tuple[GatewayHarness, Tenant, Tenant], cited: str
) -> None:
    gw, a, b = tenants
    b_session = new_session(gw, b.forge)
    report = {
        "sessionId": _report(new_session(gw, a.forge)),
        "eventIds": _report(b_session, eventIds=[_a_event(gw, a)]),
        "uploadIds": _report(b_session, uploadIds=[_a_upload(gw, a)]),
    }[cited]
    field = cited if cited == "sessionId" else f"{cited}[0]"
    _assert_refused(gw, lambda: _forge(gw, b, "/v1/ingest/reports", report), [(field, None)])


def test_every_foreign_citation_of_a_report_is_named(tenants: tuple[GatewayHarness, Tenant, Tenant]) -> None:
    gw, a, b = tenants
    own_upload = _forge(
        gw,
        b,
        "/v1/ingest/uploads",
        {"filename": "b.png", "contentType": "image/png", "size": 1, "type": "screenshot"},
    ).json()["uploads"][0]["uploadId"]
    report = _report(
        new_session(gw, a.forge),
        eventIds=[_a_event(gw, a)],
        uploadIds=[own_upload, _a_upload(gw, a), str(uuid.uuid4())],  # B's own, A's, made up
    )
    _assert_refused(
        gw,
        lambda: _forge(gw, b, "/v1/ingest/reports", report),
        [("sessionId", None), ("eventIds[0]", None), ("uploadIds[1]", None), ("uploadIds[2]", None)],
    )


def test_b_event_on_a_session_is_403_naming_the_batch_index(tenants: tuple[GatewayHarness, Tenant, Tenant]) -> None:
    gw, a, b = tenants
    single = {"sessionId": new_session(gw, a.forge), "type": "jump"}
    _assert_refused(gw, lambda: _forge(gw, b, "/v1/ingest/events", single), [("sessionId", None)])
    batch = [{"sessionId": new_session(gw, b.forge), "type": "ok"}, single]
    _assert_refused(gw, lambda: _forge(gw, b, "/v1/ingest/events", batch), [("sessionId", 1)])


def test_b_upload_for_a_session_is_403(tenants: tuple[GatewayHarness, Tenant, Tenant]) -> None:
    gw, a, b = tenants
    spec = {"filename": "shot.png", "contentType": "image/png", "size": 10, "type": "screenshot"}
    body = {"sessionId": new_session(gw, a.forge), "files": [spec]}
    _assert_refused(gw, lambda: _forge(gw, b, "/v1/ingest/uploads", body), [("sessionId", None)])


def test_each_project_cites_its_own_ids(tenants: tuple[GatewayHarness, Tenant, Tenant]) -> None:
    gw, a, b = tenants
    for tenant in (a, b):
        session = new_session(gw, tenant.forge)
        events = _forge(gw, tenant, "/v1/ingest/events", [{"sessionId": session, "type": "t"}] * 2)
        assert events.status_code == 201, events.text
        spec = {"filename": "s.png", "contentType": "image/png", "size": 10, "type": "screenshot"}
        upload = _forge(gw, tenant, "/v1/ingest/uploads", {"sessionId": session, "files": [spec]})
        assert upload.status_code == 201, upload.text
        report = _report(
            session, eventIds=events.json()["eventIds"], uploadIds=[upload.json()["uploads"][0]["uploadId"]]
        )
        response = _forge(gw, tenant, "/v1/ingest/reports", report)
        assert response.status_code == 201, response.text


# --- MessagePack: applications belong to one project ----------------------------------------


def _msgpack(gw: GatewayHarness, token: str, body: Any, packed: bool = False) -> Any:
    gw.clock.advance(1)  # a fresh per-IP window: these tests are not about the limit
    headers = {"x-public-token": token, "Content-Type": "application/msgpack"}
    content = body if packed else msgpack.packb(body, use_bin_type=True)
    return gw.client.post("/api/events", content=content, headers=headers)


def test_a_token_cannot_be_created_for_another_projects_application(
    tenants: tuple[GatewayHarness, Tenant, Tenant],
) -> None:
    gw, a, b = tenants

    async def go() -> None:
        async with TenancyAdmin(gw.bus) as admin:
            with pytest.raises(ValueError, match="belongs to another project"):
                await admin.create_token("msgpack_public", b.project_id, "production", a.app_id)

    run(go())


def test_a_token_bound_to_another_projects_application_is_refused(
    tenants: tuple[GatewayHarness, Tenant, Tenant],
) -> None:
    """A token from before bindings were checked: B's key on A's application is a 401."""
    gw, a, b = tenants

    async def forge_legacy_tokens() -> tuple[str, str, str]:
        async with TenancyAdmin(gw.bus) as admin:
            # Create valid tokens of B, then rebind their records to A's application,
            # as the old `tokens create --project B --application <A's>` stored them.
            tokens = []
            kinds: tuple[TokenKind, ...] = ("msgpack_public", "msgpack_secret")
            for kind in kinds:
                token, secret = await admin.create_token(kind, b.project_id, "production", b.app_id)
                await admin.put(replace(token, application_id=a.app_id))
                tokens.append(secret)
            # Written last on the one control partition: once it works, the gateway has the others.
            _, marker = await admin.create_token("msgpack_public", b.project_id, "production", b.app_id)
            return tokens[0], tokens[1], marker

    public, secret, marker = run(forge_legacy_tokens())
    before = len(gw.raw("raw.msgpack"))
    wait_for_status(gw, lambda: _msgpack(gw, marker, gameplay(b.app_id)), 200)
    # A's own request goes through; B's copy of it with the rebound token never does.
    assert _msgpack(gw, a.public, gameplay(a.app_id)).status_code == 200
    assert _msgpack(gw, public, gameplay(a.app_id)).status_code == 401
    model = gw.client.post(
        "/api/models",
        headers={"x-api-key": secret},
        data={"app_name": "default-game", "level_name": "l1"},
        files={"model_file": ("m.bin", b"x", "application/octet-stream")},
    )
    assert model.status_code == 401
    raw = gw.raw("raw.msgpack")
    assert len(raw) == before + 2
    assert {(r["project_id"], r["app_id"]) for r in raw} == {(a.project_id, a.app_id), (b.project_id, b.app_id)}


def test_the_same_msgpack_request_from_two_projects_is_two_rows(
    tenants: tuple[GatewayHarness, Tenant, Tenant],
) -> None:
    gw, a, b = tenants
    before = len(gw.raw("raw.msgpack"))
    # B re-sending A's very bytes is refused: they name A's application.
    response = _msgpack(gw, b.public, [gameplay(a.app_id), gameplay(a.app_id)])
    assert response.status_code == 403, response.text
    assert len(gw.raw("raw.msgpack")) == before
    expected: dict[str, list[str]] = {}
    for tenant in (a, b, a):  # A's replay maps onto A's row again
        body = msgpack.packb([gameplay(tenant.app_id), gameplay(tenant.app_id)], use_bin_type=True)
        assert _msgpack(gw, tenant.public, body, packed=True).status_code == 200
        digest = hashlib.sha256(body).hexdigest()
        # The row ids derive from the project too, not only from the application and bytes.
        expected[tenant.project_id] = [
            str(schema.event_id(tenant.project_id, tenant.app_id, digest, n)) for n in (0, 1)
        ]
    raw = gw.raw("raw.msgpack")
    assert {r["id"] for r in raw if r["project_id"] == b.project_id} == set(expected[b.project_id])
    assert {r["id"] for r in raw if r["project_id"] == a.project_id} == set(expected[a.project_id])
    assert before == 0 and len(raw) == 6
    a_ids = Counter(r["id"] for r in raw if r["project_id"] == a.project_id)
    b_ids = Counter(r["id"] for r in raw if r["project_id"] == b.project_id)
    assert sorted(a_ids.values()) == [2, 2], "a replay in the same project keeps its ids"
    assert sorted(b_ids.values()) == [1, 1]
    assert not set(a_ids) & set(b_ids), "two projects never share a row id"
    assert {r["app_id"] for r in raw if r["project_id"] == b.project_id} == {b.app_id}


def test_models_app_name_is_the_keys_own_application(tenants: tuple[GatewayHarness, Tenant, Tenant]) -> None:
    gw, a, b = tenants
    data = b"level-geometry"
    ids = []
    for tenant in (a, b):  # both applications are named default-game, in their own projects
        response = gw.client.post(
            "/api/models",
            headers={"x-api-key": tenant.secret},
            data={"app_name": "default-game", "level_name": "l1"},
            files={"model_file": ("m.bin", data, "application/octet-stream")},
        )
        assert response.status_code == 200, response.text
        assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()
        ids.append(response.json()["model_id"])
    assert ids[0] != ids[1]
