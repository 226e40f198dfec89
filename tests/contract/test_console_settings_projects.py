"""The console's Settings for projects and notify targets, its project switcher, and the
client address behind a trusted proxy: the real app (TestClient) over a real embedded bus,
with the same Management operations, scope checks and audit log as the management API."""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from forgeline.bus.factory import create_bus
from forgeline.bus.port import OutgoingRecord
from forgeline.clientip import ClientAddress
from forgeline.manage.ops import Actor, Management
from forgeline.manage.store import ConsoleStore
from forgeline.notify.crypto import SecretBox, load_key
from forgeline.notify.model import SUBJECTS
from forgeline.notify.store import TargetAdmin
from forgeline.tenancy.store import TenancyAdmin
from services.console.api import AUTH_FAILURES_PER_WINDOW
from services.console.app import ConsoleDeps, console_app
from services.console.reader import AdminReader
from services.console.sessions import LAST_PROJECT_COOKIE, Signer
from tests.fixtures.console_world import two_projects

pytestmark = pytest.mark.contract

PASSWORD = "correct horse battery"
PROXY = "10.0.0.5"  # inside the trusted 10.0.0.0/8
STRANGER = "192.0.2.1"  # not a proxy


class PeerFromHeader:
    """Lets a test choose the TCP peer address the app sees (``x-test-peer``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-test-peer":
                    scope = dict(scope, client=(value.decode(), 40000))
        await self.app(scope, receive, send)


class Console:
    def __init__(self, client: TestClient, manage: Management, ids: dict[str, str]) -> None:
        self.client, self.manage, self.ids = client, manage, ids

    def sign_in(self, username: str, password: str = PASSWORD, **headers: str) -> Any:
        self.client.cookies.clear()
        page = self.client.get("/login", headers=headers)
        nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert nonce
        form = {"username": username, "password": password, "csrf": nonce.group(1)}
        return self.client.post("/login", data=form, headers=headers, follow_redirects=False)

    def csrf(self, path: str) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).text)
        assert found, path
        return found.group(1)

    def post(self, path: str, **form: str | list[str]) -> Any:
        return self.client.post(path, data=form, follow_redirects=False)

    def project(self, name: str) -> Any:
        return self.manage.tenancy.table.project_by_name_or_id(name)

    def actions(self) -> list[tuple[str, str]]:
        return [(e.actor, e.action) for e in self.manage.console.table.audit]


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    bus = create_bus(f"embedded://{tmp_path / 'bus'}", 1)
    ids = asyncio.run(two_projects(bus, PASSWORD))
    tenancy, store = TenancyAdmin(bus), ConsoleStore(bus)
    targets = TargetAdmin(bus, SecretBox(load_key(tmp_path / "data")))
    manage = Management(tenancy, store, targets)

    async def no_control(record: OutgoingRecord) -> None:
        raise AssertionError("no control records here")

    deps = ConsoleDeps(
        manage,
        AdminReader("http://127.0.0.1:9"),
        no_control,
        Signer(b"s" * 32),
        client_address=ClientAddress(("10.0.0.0/8",)),
    )
    app = console_app(deps)

    @contextlib.asynccontextmanager
    async def lifespan(_app: object) -> AsyncIterator[None]:
        async with tenancy, store, targets:
            yield

    app.router.lifespan_context = lifespan
    with TestClient(PeerFromHeader(app), base_url="http://console.test") as client:
        yield Console(client, manage, ids)


def test_projects_are_created_renamed_archived_and_unarchived_in_settings(console: Console) -> None:
    assert console.sign_in("root").status_code == 303
    a = console.ids["A"]
    token = console.csrf(f"/p/{a}/settings")

    created = console.post(f"/p/{a}/settings/projects", name="Castle <b>", csrf=token)
    assert created.status_code == 303
    castle = console.project("Castle <b>")
    assert castle is not None and created.headers["location"] == f"/p/{castle.id}/settings"
    page = console.client.get(f"/p/{castle.id}/settings").text
    assert "Castle &lt;b&gt;" in page and "Castle <b>" not in page  # escaped, in the header too

    # Names are unique in the organisation: the error is on the page, as a 400.
    taken = console.post(f"/p/{a}/settings/projects", name="B", csrf=token)
    assert taken.status_code == 400 and "a project named" in html.unescape(taken.text)
    assert 'role="alert"' in taken.text and "Traceback" not in taken.text
    assert console.post(f"/p/{a}/settings/projects", name="  ", csrf=token).status_code == 400

    path = f"/p/{castle.id}/settings/project"
    assert console.post(f"{path}/name", name="Keep", csrf=token).status_code == 303
    assert console.project(castle.id).name == "Keep"
    clash = console.post(f"{path}/name", name="A", csrf=token)
    assert clash.status_code == 400 and console.project(castle.id).name == "Keep"

    # Archiving asks for the project's name typed again; anything else (or nothing) is refused.
    for confirm in ("keep", "Castle <b>", ""):
        refused = console.post(f"{path}/archive", confirm=confirm, csrf=token)
        assert refused.status_code == 400 and "confirm with the project" in html.unescape(refused.text), confirm
    assert console.post(f"{path}/archive", csrf=token).status_code == 400
    assert not console.project(castle.id).archived
    assert console.post(f"{path}/archive", confirm="Keep", csrf=token).status_code == 303
    assert console.project(castle.id).archived
    assert "Unarchive" in console.client.get(f"/p/{castle.id}/settings").text
    assert console.post(f"{path}/unarchive", csrf=token).status_code == 303
    assert not console.project(castle.id).archived

    # Every form needs the session's CSRF token.
    for route, form in (("projects", {"name": "X"}), ("project/name", {"name": "X"}),
                        ("project/archive", {"confirm": "A"}), ("project/unarchive", {})):  # fmt: skip
        for bad in ({}, {"csrf": "forged"}):
            assert console.post(f"/p/{a}/settings/{route}", **form, **bad).status_code == 403, route
    assert console.project("X") is None and not console.project(a).archived
    # Audited like the API's, by who did it.
    assert [x for x in console.actions() if x[0] == "user:root"] == [
        ("user:root", "project.create"),
        ("user:root", "project.rename"),
        ("user:root", "project.archive"),
        ("user:root", "project.unarchive"),
    ]


def test_a_user_of_one_project_cannot_create_or_change_another(console: Console) -> None:
    assert console.sign_in("alice").status_code == 303
    a, b = console.ids["A"], console.ids["B"]
    page = console.client.get(f"/p/{a}/settings").text
    assert "Create project" not in page and "allow_private" not in page
    token = console.csrf(f"/p/{a}/settings")
    denied = console.post(f"/p/{a}/settings/projects", name="Mine", csrf=token)
    assert denied.status_code == 403 and "all projects" in denied.text
    assert console.project("Mine") is None
    for route, form in (("project/archive", {"confirm": "B"}), ("project/name", {"name": "Z"}),
                        ("project/unarchive", {}), ("projects", {"name": "Z"})):  # fmt: skip
        assert console.post(f"/p/{b}/settings/{route}", **form, csrf=token).status_code == 404, route
    assert console.project(b).name == "B" and not console.project(b).archived
    # The switcher and the project list show her project only; another's id is a 404.
    options = re.findall(r'<option value="([^"]+)"', console.client.get(f"/p/{a}/errors").text)
    assert a in options and b not in options
    assert b not in console.client.get("/projects").text
    assert console.client.get(f"/switch?project={b}", follow_redirects=False).status_code == 404
    # Her own project she may rename, as a key scoped to it may through the API.
    assert console.post(f"/p/{a}/settings/project/name", name="A2", csrf=token).status_code == 303
    assert ("user:alice", "project.create") not in console.actions()


def test_notify_targets_are_added_in_settings_with_the_egress_check(console: Console) -> None:
    assert console.sign_in("root").status_code == 303
    a = console.ids["A"]
    add = f"/p/{a}/settings/notify"
    token = console.csrf(f"/p/{a}/settings")
    hook = {"provider": "webhook", "name": "ops <hook>", "csrf": token}
    for url in ("http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.0.0.5/hook"):
        refused = console.post(add, **hook, url=url, secret="s3cret-value", subjects="error_new")
        assert refused.status_code == 400 and "refused" in refused.text, url
        assert "s3cret-value" not in refused.text  # never shown back
        assert 'value="ops &lt;hook&gt;"' in refused.text  # the rest of the form is kept
    for bad, message in (({"provider": "fax"}, "provider must be one of"), ({}, "webhook needs"),
                         ({"url": "http://93.184.215.14/h", "rate": "fast"}, "rate is a number"),
                         ({"url": "http://93.184.215.14/h", "rate": "nan"}, "rate is a number"),
                         ({"url": "http://93.184.215.14/h", "subjects": "everything"}, "subjects are")):  # fmt: skip
        answer = console.post(add, **(hook | bad))
        assert answer.status_code == 400 and message in answer.text, bad
    assert console.post(add, provider="webhook", url="http://93.184.215.14/h").status_code == 403  # no CSRF
    assert console.manage.notify_targets(Actor("t"), a) == []

    # Allowed by a user of all projects: a generated signing secret, shown once.
    allowed = console.post(add, **hook, url="http://10.0.0.5/hook", allow_private="on", subjects="report")
    assert allowed.status_code == 200 and allowed.headers["cache-control"] == "no-store"
    secret = re.search(r'<pre id="signing-secret">(whsec_[^<]+)</pre>', allowed.text)
    assert secret and secret.group(1) not in console.client.get(f"/p/{a}/settings").text
    every = list(SUBJECTS)  # checkboxes: one field per subject ticked
    public = console.post(add, **hook, url="http://93.184.215.14/hook", secret="given-secret-1234567", subjects=every)
    assert public.status_code == 303
    targets = console.manage.notify_targets(Actor("t"), a)
    assert [(t.describe(), t.subjects) for t in targets] == [
        ("http://10.0.0.5/hook (private networks allowed)", ("report",)),
        ("http://93.184.215.14/hook", SUBJECTS),
    ]
    assert console.actions()[-2:] == [("user:root", "notify.add"), ("user:root", "notify.add")]

    # A user of one project may add targets to it, but not open private networks.
    assert console.sign_in("alice").status_code == 303
    token = console.csrf(f"/p/{a}/settings")
    private = console.post(add, provider="webhook", url="http://10.0.0.6/h", allow_private="on", csrf=token)
    assert private.status_code == 403 and "all projects" in private.text
    assert len(console.manage.notify_targets(Actor("t"), a)) == 2


def test_the_switcher_and_home_open_the_last_project(console: Console) -> None:
    assert console.sign_in("root").status_code == 303
    a, b = console.ids["A"], console.ids["B"]
    # Several projects and none opened yet: the list.
    assert console.client.get("/", follow_redirects=False).headers["location"] == "/projects"
    listing = console.client.get("/projects").text
    assert f'href="/p/{a}/errors"' in listing and f'href="/p/{b}/errors"' in listing
    page = console.client.get(f"/p/{b}/settings")  # (no warehouse here: pages reading it are 503)
    assert page.cookies.get(LAST_PROJECT_COOKIE) == b
    switcher = re.search(r'<form method="get" action="/switch".*?</form>', page.text, re.S)
    assert switcher and "<script" not in page.text
    assert re.findall(r'<option value="([^"]+)"', switcher.group(0)) == [a, b]
    assert f'<option value="{b}" selected>' in switcher.group(0) and 'name="to" value="settings"' in switcher.group(0)
    assert console.client.get("/", follow_redirects=False).headers["location"] == f"/p/{b}/errors"
    go = console.client.get(f"/switch?project={a}&to=traces", follow_redirects=False)
    assert go.status_code == 303 and go.headers["location"] == f"/p/{a}/traces"
    for odd in ("//evil.example", "x", ""):
        moved = console.client.get("/switch", params={"project": a, "to": odd}, follow_redirects=False)
        assert moved.headers["location"] == f"/p/{a}/errors", odd
    assert console.client.get("/switch?project=nope", follow_redirects=False).status_code == 404
    # One project: straight there, whatever a cookie says.
    assert console.sign_in("alice").status_code == 303
    console.client.cookies.set(LAST_PROJECT_COOKIE, b)
    assert console.client.get("/", follow_redirects=False).headers["location"] == f"/p/{a}/errors"
    console.client.cookies.clear()
    assert console.client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_sign_in_throttle_counts_the_client_behind_a_trusted_proxy_only(console: Console) -> None:
    def attempt(name: str, peer: str, forwarded: str, password: str = "wrong password!") -> int:
        headers = {"x-test-peer": peer, "x-forwarded-for": forwarded}
        return int(console.sign_in(name, password, **headers).status_code)

    # Through the proxy: five failures from one client (under five names) hold that client only.
    for n in range(5):
        assert attempt(f"guess{n}", PROXY, "198.51.100.7") == 401
    assert attempt("guess9", PROXY, "198.51.100.7") == 429
    assert attempt("guess9", PROXY, "203.0.113.9, 198.51.100.7") == 429  # the hop the proxy saw
    assert attempt("root", PROXY, "198.51.100.8", PASSWORD) == 303  # another client behind it
    # From a peer that is not a proxy the header is ignored: the peer is the client.
    for n in range(5):
        assert attempt(f"spray{n}", STRANGER, f"198.51.100.{20 + n}") == 401
    assert attempt("spray9", STRANGER, "198.51.100.99") == 429

    # The management API's unknown-key limiter follows the same rule.
    def api(peer: str, forwarded: str) -> int:
        headers = {"x-test-peer": peer, "x-forwarded-for": forwarded, "authorization": "Bearer fla_nope"}
        return int(console.client.get("/api/manage/v1/projects", headers=headers).status_code)

    for _ in range(AUTH_FAILURES_PER_WINDOW):
        assert api(PROXY, "198.51.100.50") == 401
    assert api(PROXY, "198.51.100.50") == 429
    assert api(PROXY, "198.51.100.51") == 401
