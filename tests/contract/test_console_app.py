"""The console's pages through the real app (TestClient), a real embedded bus, and a
recording stand-in for the warehouse reader: sign-in, throttling, CSRF, project access,
escaping, and what each page asks the warehouse."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from forgeline.blobstore.local import LocalBlobStore
from forgeline.blobstore.port import DownloadGrant, UploadGrant
from forgeline.bus.factory import create_bus
from forgeline.bus.port import OutgoingRecord
from forgeline.config import Secret, Settings
from forgeline.manage.ops import Management
from forgeline.manage.store import ConsoleStore
from forgeline.tenancy.store import TenancyAdmin
from services.console import queries
from services.console.app import ConsoleDeps, console_app
from services.console.main import console_key
from services.console.sessions import Signer
from services.gateway.routes.downloads import download_routes
from tests.fixtures.console_world import two_projects

pytestmark = pytest.mark.contract

PASSWORD = "correct horse battery"
GROUP = "0b5f7c0e-1111-4222-8333-944455556666"
UPLOAD = "1c6f7c0e-1111-4222-8333-944455556666"


class FakeReader:
    """Answers the console's fixed queries with canned rows and records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        # Rows a test sets for a query (analytics: levels, paths, a level's model).
        self.extra: dict[str, list[dict[str, Any]]] = {}

    async def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls.append((sql, params))
        if sql in self.extra:
            return self.extra[sql]
        group = {
            "group_id": GROUP,
            "fingerprint": "fp-1",
            "title": "<img src=x onerror=alert(1)>",
            "exception_class": "RuntimeError",
            "status": "unresolved",
            "regressed": 1,
            "event_count": 3,
            "last_level": "error",
            "first": "2026-01-01 00:00:00.000",
            "last": "2026-01-01 00:00:01.000",
            "releases": [],
            "environments": ["production"],
        }
        if sql in (queries.ERROR_GROUPS, queries.ERROR_GROUP):
            return [group]
        # What the uploads table says: a save file (not an image) and where it is stored.
        upload = {"id": UPLOAD, "filename": 'save"1.sav', "content_type": "text/html"}
        upload |= {"storage_key": f"{params['project']}/s/save", "attachment_type": "save", "size_bytes": 25}
        if sql in (queries.UPLOAD, queries.UPLOADS):
            return [upload]
        if sql == queries.REPORT:
            return [
                {
                    "title": "stuck",
                    "severity": "major",
                    "reporter_type": "player",
                    "received": "2026-01-01 00:00:00.000",
                    "session": GROUP,
                    "export_providers": [],
                    "description": "",
                    "metadata": "",
                    "upload_ids": [UPLOAD],
                }
            ]
        return []

    async def close(self) -> None:
        return None


class Console:
    def __init__(
        self,
        client: TestClient,
        reader: FakeReader,
        projects: dict[str, str],
        sent: list[OutgoingRecord],
        blobs: LocalBlobStore,
    ):
        self.client, self.reader, self.projects, self.sent, self.blobs = client, reader, projects, sent, blobs

    def sign_in(self, username: str, password: str = PASSWORD) -> Any:
        page = self.client.get("/login")
        nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert nonce
        return self.client.post(
            "/login", data={"username": username, "password": password, "csrf": nonce.group(1)}, follow_redirects=False
        )

    def csrf(self, path: str) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).text)
        assert found, path
        return found.group(1)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    bus = create_bus(f"embedded://{tmp_path / 'bus'}", 1)
    projects = asyncio.run(two_projects(bus, PASSWORD))
    tenancy, store = TenancyAdmin(bus), ConsoleStore(bus)
    reader = FakeReader()
    sent: list[OutgoingRecord] = []

    async def send(record: OutgoingRecord) -> None:
        sent.append(record)

    blobs = LocalBlobStore(tmp_path / "blobs", b"k" * 32, "http://gateway.test")
    for project_id in projects.values():
        blobs.put(f"{project_id}/s/save", b"<script>alert(1)</script>")
    deps = ConsoleDeps(Management(tenancy, store), reader, send, Signer(b"s" * 32), blobs=blobs)  # type: ignore[arg-type]
    app = console_app(deps)

    @contextlib.asynccontextmanager
    async def lifespan(_app: object) -> AsyncIterator[None]:
        async with tenancy, store:
            yield

    app.router.lifespan_context = lifespan
    with TestClient(app, base_url="http://console.test") as client:
        yield Console(client, reader, projects, sent, blobs)


def test_sign_in_then_throttled_after_five_failures(console: Console) -> None:
    assert console.sign_in("alice").status_code == 303
    for _ in range(5):
        assert console.sign_in("alice", "wrong password!").status_code == 401
    refused = console.sign_in("alice")  # even the right password, until the window passes
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert console.sign_in("nobody", "whatever").status_code == 429  # same address


def test_a_sign_in_without_its_nonce_is_refused(console: Console) -> None:
    answer = console.client.post("/login", data={"username": "alice", "password": PASSWORD}, follow_redirects=False)
    assert answer.status_code == 403


def test_pages_escape_event_text_and_keep_to_the_users_projects(console: Console) -> None:
    assert console.sign_in("alice").status_code == 303
    a, b = console.projects["A"], console.projects["B"]
    inbox = console.client.get(f"/p/{a}/errors")
    assert inbox.status_code == 200
    assert "&lt;img src=x onerror=alert(1)&gt;" in inbox.text and "<img src=x" not in inbox.text
    assert "regressed" in inbox.text
    assert "script-src 'self'" in inbox.headers["content-security-policy"]
    # Every query is bound to the checked project, bounded in time and rows.
    sql, params = console.reader.calls[0]
    assert params["project"] == a and params["days"] == 14 and params["limit"] == queries.PAGE_SIZE + 1
    assert "%(project)s" in sql and "LIMIT %(limit)s" in sql
    calls = len(console.reader.calls)
    for path in ("errors", "traces", "settings", f"errors/{GROUP}"):
        assert console.client.get(f"/p/{b}/{path}").status_code == 404, path
    assert console.client.post(f"/p/{b}/settings/tokens", data={"kind": "forge"}).status_code == 404
    assert len(console.reader.calls) == calls, "nothing of project B was queried"
    assert console.client.get(f"/p/{a}/errors?days=9999").status_code == 400
    assert console.client.get(f"/p/{a}/errors?status=bogus").status_code == 400


def test_forms_need_the_sessions_csrf_token_and_resolve_sends_a_control_record(console: Console) -> None:
    assert console.sign_in("root").status_code == 303
    a = console.projects["A"]
    path = f"/p/{a}/errors/{GROUP}/status"
    assert console.client.post(path, data={"action": "resolve"}).status_code == 403
    assert console.client.post(path, data={"action": "resolve", "csrf": "forged"}).status_code == 403
    assert console.sent == []
    token = console.csrf(f"/p/{a}/errors/{GROUP}")
    done = console.client.post(path, data={"action": "resolve", "csrf": token}, follow_redirects=False)
    assert done.status_code == 303
    (record,) = console.sent
    assert record.topic == "control.error_groups" and b'"action":"resolve"' in record.value
    assert console.client.post(path, data={"action": "explode", "csrf": token}).status_code == 400


def test_a_token_created_in_settings_is_shown_once(console: Console) -> None:
    assert console.sign_in("root").status_code == 303
    a = console.projects["A"]
    token = console.csrf(f"/p/{a}/settings")
    created = console.client.post(
        f"/p/{a}/settings/tokens", data={"kind": "logister", "name": "ci", "environment": "production", "csrf": token}
    )
    assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
    secret = re.search(r'<pre id="new-token">(lgst_[^<]+)</pre>', created.text)
    assert secret
    settings = console.client.get(f"/p/{a}/settings").text
    assert secret.group(1) not in settings
    # The change is in the project's recent changes, by who made it, without the token.
    assert re.search(r"<td>user:root</td><td>token\.create</td>", settings)
    bad = console.client.post(f"/p/{a}/settings/tokens", data={"kind": "nope", "csrf": token})
    assert bad.status_code == 400 and "kind must be one of" in bad.text


def test_the_console_key_is_generated_once_and_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    key = console_key(settings)
    assert len(key) >= 32 and console_key(settings) == key
    assert stat.S_IMODE((tmp_path / "data" / "console.key").stat().st_mode) == 0o600
    assert console_key(Settings(data_dir=tmp_path / "data", console_secret=Secret("x" * 32))) == b"x" * 32
    assert os.path.exists(tmp_path / "data" / "console.key")


def test_game_pages_keep_to_the_users_projects_and_attachments_download_safely(console: Console) -> None:
    assert console.sign_in("alice").status_code == 303
    a, b = console.projects["A"], console.projects["B"]
    for path in ("monitors", "sessions", "reports", "deployments", "analytics", f"reports/{UPLOAD}"):
        assert console.client.get(f"/p/{a}/{path}").status_code == 200, path
        assert console.client.get(f"/p/{b}/{path}").status_code == 404, path
    assert console.client.get(f"/p/{a}/sessions/not-a-uuid").status_code == 404
    assert console.client.get(f"/p/{a}/sessions/{UPLOAD}").status_code == 404  # no such session
    assert console.client.get(f"/p/{a}/monitor?environment=x&slug=y").status_code == 404
    assert console.client.get("/dashboard/analytics", follow_redirects=False).headers["location"] == f"/p/{a}/analytics"


def test_attachments_that_are_not_screenshots_are_signed_downloads_from_the_gateway(console: Console) -> None:
    assert console.sign_in("alice").status_code == 303
    a, b = console.projects["A"], console.projects["B"]
    gateway = TestClient(Starlette(routes=download_routes(console.blobs)), base_url="http://gateway.test")
    # The report's link is a signed URL of the gateway, not the console serving the file.
    page = console.client.get(f"/p/{a}/reports/{UPLOAD}")
    found = re.search(r'<a href="(http://gateway\.test/v1/blob-downloads\?token=[^"]+)" download', page.text)
    assert found, page.text
    link = html.unescape(found.group(1))
    # The console's own attachment URL, after its project check, sends to a fresh signed URL.
    moved = console.client.get(f"/p/{a}/attachments/{UPLOAD}", follow_redirects=False)
    assert moved.status_code == 303 and moved.headers["location"].startswith("http://gateway.test/v1/blob-downloads?")
    assert console.client.get(f"/p/{b}/attachments/{UPLOAD}", follow_redirects=False).status_code == 404
    assert console.client.get(f"/p/{b}/reports/{UPLOAD}").status_code == 404
    for url in (link, moved.headers["location"]):
        download = gateway.get(url)
        assert download.status_code == 200 and download.content == b"<script>alert(1)</script>"
        # Never rendered by the browser as the type the client claimed (text/html).
        assert download.headers["content-type"] == "application/octet-stream"
        assert download.headers["content-disposition"] == 'attachment; filename="save_1.sav"'
        assert download.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in download.headers["content-security-policy"]
    token = link.split("token=", 1)[1]
    payload, signature = token.split(".")
    doc = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    # Tampered: another project's object under the same signature; a broken signature; none.
    forged = base64.urlsafe_b64encode(orjson.dumps(doc | {"k": f"{b}/s/save", "p": b})).rstrip(b"=").decode()
    for bad in (f"{forged}.{signature}", f"{payload}.{'A' * 43}", "", "x"):
        assert gateway.get("/v1/blob-downloads", params={"token": bad}).status_code == 403, bad
    # Expired: the same grant, signed, but past its time.
    expired = DownloadGrant(doc["k"], doc["p"], doc["f"], int(time.time()) - 1)
    assert gateway.get(console.blobs.download_url(expired)).status_code == 403
    # A grant whose key is outside its project reaches nothing, even correctly signed.
    stray = DownloadGrant(f"{b}/s/save", a, "x", int(time.time()) + 60)
    assert gateway.get(console.blobs.download_url(stray)).status_code == 403
    # An upload URL's token is not a download token.
    upload = console.blobs.upload_target(UploadGrant("u", f"{a}/u/f", "text/plain", 10, int(time.time()) + 60))
    upload_token = upload.url.split("token=", 1)[1]
    assert gateway.get("/v1/blob-downloads", params={"token": upload_token}).status_code == 403
    gone = DownloadGrant(f"{a}/s/missing", a, "x", int(time.time()) + 60)
    assert gateway.get(console.blobs.download_url(gone)).status_code == 404


def test_the_heatmap_draws_over_the_levels_uploaded_model_when_there_is_one(console: Console) -> None:
    assert console.sign_in("alice").status_code == 303
    a = console.projects["A"]
    console.reader.extra[queries.LEVELS] = [{"level_id": "cave", "runs": 1, "points": 2}]
    console.reader.extra[queries.TRAJECTORIES] = [{"xs": [0.0, 10.0], "ys": [1.0, 1.0], "zs": [0.0, 10.0]}]
    page = console.client.get(f"/p/{a}/analytics")
    assert page.status_code == 200 and "<rect" in page.text
    assert "level-model" not in page.text and "Level model" not in page.text  # no model for this level
    assert ("0.0…10.0 × 0.0…10.0") in page.text
    asked = [params for sql, params in console.reader.calls if sql == queries.LEVEL_MODEL]
    assert asked == [{"project": a, "level": "cave"}]

    # A mesh: its faces, on the x–z floor, under the grid, which grows to cover the model.
    obj = b"# floor\nv -10 0 -10\nv 20 0 -10\nv 20 0 20\nv -10 0 20\nvt 0 0\nf 1/1 2/1 3/1 4/1\nf -4 -3 -2\nf 1 2 99\n"
    console.blobs.put(f"{a}/models/app/m1", obj)
    model = {"filename": "cave.obj", "content_type": "application/octet-stream", "size_bytes": len(obj)}
    console.reader.extra[queries.LEVEL_MODEL] = [model | {"storage_key": f"{a}/models/app/m1", "uploaded": "x"}]
    page = console.client.get(f"/p/{a}/analytics?level=cave")
    drawn = re.findall(r'<polygon points="([^"]+)">', page.text)
    assert len(drawn) == 2  # the face naming a vertex that does not exist is skipped
    assert drawn[0] == "0.000,40.000 40.000,40.000 40.000,0.000 0.000,0.000"  # the whole grid
    assert page.text.index('class="level-model"') < page.text.index("<rect")  # under the heat
    assert "-10.0…20.0 × -10.0…20.0" in page.text and "cave.obj" in page.text

    # A top-down image: stretched under the grid.
    png = b"\x89PNG\r\n\x1a\nfake"
    console.blobs.put(f"{a}/models/app/m2", png)
    model = {"filename": "cave.png", "content_type": "image/png", "size_bytes": len(png)}
    console.reader.extra[queries.LEVEL_MODEL] = [model | {"storage_key": f"{a}/models/app/m2", "uploaded": "x"}]
    page = console.client.get(f"/p/{a}/analytics?level=cave")
    encoded = base64.b64encode(png).decode()
    assert f'<image class="level-model" href="data:image/png;base64,{encoded}"' in page.text

    # A format the page cannot draw: named, not drawn.
    model = {"filename": "cave.glb", "content_type": "model/gltf-binary", "size_bytes": 9}
    console.reader.extra[queries.LEVEL_MODEL] = [model | {"storage_key": f"{a}/models/app/m3", "uploaded": "x"}]
    page = console.client.get(f"/p/{a}/analytics?level=cave")
    assert "cave.glb" in page.text and "not drawable" in page.text and 'class="level-model"' not in page.text


def test_sign_in_only_redirects_within_the_console(console: Console) -> None:
    for target, expected in (("/p/x/errors", "/p/x/errors"), ("//evil.example/", "/"), ("https://evil.example", "/"),
                             ("/\\evil.example", "/")):  # fmt: skip
        page = console.client.get("/login", params={"next": target})
        nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert nonce
        form = {"username": "root", "password": PASSWORD, "csrf": nonce.group(1), "next": target}
        answer = console.client.post("/login", data=form, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == expected, target


def test_a_disabled_user_is_signed_out_and_cannot_sign_in(
    console: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("FORGELINE_")]:
        monkeypatch.delenv(name)
    assert console.sign_in("alice").status_code == 303
    a = console.projects["A"]
    assert console.client.get(f"/p/{a}/errors").status_code == 200
    from services.cli.main import main

    assert main(["users", "disable", "alice", "--data-dir", str(tmp_path)]) == 0
    # Every page reads control.console first: the very next request is refused.
    deadline = time.monotonic() + 5
    while console.client.get(f"/p/{a}/errors", follow_redirects=False).status_code != 303:
        assert time.monotonic() < deadline, "the disabled user's session still works"
        time.sleep(0.1)
    assert console.sign_in("alice").status_code == 401
