"""The console in a real headless Chromium (Debian's, driven by Playwright), against `forgeline up`."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from logister import LogisterClient

from tests.fixtures.pipeline import REPO, ForgelineUp

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("console_browser")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The README's screenshot is refreshed only when asked (FORGELINE_UPDATE_SCREENSHOT=1), so that a
# test run leaves the checkout as it found it; otherwise the page is still rendered to a file.
SCREENSHOT = REPO / "docs" / "console.png"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgelineUp]:
    # Traces are summarized after half a second without a new span (5 s by default).
    env = {"FORGELINE_SPAN_QUIET_SECONDS": "0.5"}
    pipeline = ForgelineUp(tmp_path_factory.mktemp("console") / "data", env=env).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{pipeline.console_url}/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    try:
        yield pipeline
    finally:
        pipeline.stop()


def first_user_password(up: ForgelineUp) -> str:
    match = re.search(r"console sign-in \(shown once\): user admin  password (\S+)", up.log_path.read_text())
    assert match, up.tail_log()
    return match.group(1)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def sign_in(browser: object, up: ForgelineUp, username: str, password: str) -> object:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{up.console_url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    return page


def wait_for_text(page: object, url: str, text: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        page.goto(url)  # type: ignore[attr-defined]
        if text in page.content():  # type: ignore[attr-defined]
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not on {url} within {timeout_s} s")
        time.sleep(0.25)


def send_error(up: ForgelineUp, message: str, marker: str) -> None:
    """An exception reported by the real logister-python SDK."""
    with LogisterClient(api_key=up.tokens["logister_token"], base_url=up.base_url, environment="production") as client:
        try:
            raise RuntimeError(message)
        except RuntimeError as err:
            answer = client.capture_exception(err, fingerprint=f"console-{marker}")
    assert answer["status"] == "accepted"


def test_inbox_escaping_resolve_and_regression(up: ForgelineUp, browser: object, tmp_path: Path) -> None:
    page = sign_in(browser, up, "admin", first_user_password(up))
    project_id = up.tokens["project_id"]
    assert page.url.endswith(f"/p/{project_id}/errors")  # type: ignore[attr-defined]

    marker = uuid.uuid4().hex[:8]
    message = f"<script>window.pwned=1</script> shop crashed {marker}"
    send_error(up, message, marker)
    inbox = f"{up.console_url}/p/{project_id}/errors?status=all"
    wait_for_text(page, inbox, marker)
    # The event text is text: no script ran, and the title shows the tag literally.
    assert page.evaluate("window.pwned === undefined")  # type: ignore[attr-defined]
    assert "<script>window.pwned" in page.locator(f"a.title:has-text('{marker}')").inner_text()  # type: ignore[attr-defined]
    shot = SCREENSHOT if os.environ.get("FORGELINE_UPDATE_SCREENSHOT") == "1" else tmp_path / "console.png"
    page.screenshot(path=str(shot))  # type: ignore[attr-defined]
    assert shot.stat().st_size > 10_000, "the inbox rendered to an (almost) empty picture"

    page.click(f"a.title:has-text('{marker}')")  # type: ignore[attr-defined]
    group_url = page.url.split("?")[0]  # type: ignore[attr-defined]
    page.click("button[value=resolve]")  # type: ignore[attr-defined]
    wait_for_text(page, group_url, 'id="group-status">resolved<')
    time.sleep(0.01)  # the next event occurs after the resolution
    send_error(up, message, marker)
    wait_for_text(page, group_url, 'id="group-status">regressed<', timeout_s=10)


def test_user_of_one_project_cannot_see_another(up: ForgelineUp, browser: object) -> None:
    name = f"other-{uuid.uuid4().hex[:6]}"
    created = subprocess.run(
        up.cli("projects", "create", name, "--data-dir", str(up.data_dir)),
        env=up.env(),
        capture_output=True,
        check=True,
    )
    other_id = created.stdout.decode().strip().splitlines()[-1]
    user = f"player-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(
        up.cli("users", "create", user, "--project", name, "--data-dir", str(up.data_dir)),
        env=up.env(),
        capture_output=True,
        check=True,
    )
    password = made.stdout.decode().strip()
    page = sign_in(browser, up, user, password)
    assert page.url.endswith(f"/p/{other_id}/errors")  # type: ignore[attr-defined]
    default_id = up.tokens["project_id"]
    for path in ("errors", "traces", "settings", "errors/00000000-0000-0000-0000-000000000000"):
        response = page.goto(f"{up.console_url}/p/{default_id}/{path}")  # type: ignore[attr-defined]
        assert response.status in (403, 404), path
    # A form post into the other project is refused the same way (before any CSRF check).
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}  # type: ignore[attr-defined]
    answer = httpx.post(f"{up.console_url}/p/{default_id}/settings/tokens", cookies=cookies, data={"kind": "forge"})
    assert answer.status_code in (403, 404)


def test_create_and_revoke_a_token_in_settings(up: ForgelineUp, browser: object) -> None:
    page = sign_in(browser, up, "admin", first_user_password(up))
    project_id = up.tokens["project_id"]
    page.goto(f"{up.console_url}/p/{project_id}/settings")  # type: ignore[attr-defined]
    # Retention comes from the processors' admin port (with its key), not a stand-in.
    assert "days (default)" in page.locator("table.retention").inner_text()  # type: ignore[attr-defined]
    label = f"ci-{uuid.uuid4().hex[:6]}"
    page.select_option("select[name=kind]", "logister")  # type: ignore[attr-defined]
    page.fill("input[name=name]", label)  # type: ignore[attr-defined]
    page.click("text=Create token")  # type: ignore[attr-defined]
    token = page.locator("#new-token").inner_text().strip()  # type: ignore[attr-defined]
    assert token.startswith("lgst_")

    def accepted() -> bool:
        answer = httpx.post(
            f"{up.base_url}/api/v1/ingest_events",
            json={"event": {"event_type": "log", "level": "info", "message": "hello"}},
            headers={"Authorization": f"Bearer {token}"},
        )
        return answer.status_code in (200, 201, 202)

    assert accepted()
    row = page.locator(f"table.tokens tr:has-text('{label}')")  # type: ignore[attr-defined]
    row.locator("button:has-text('Revoke')").click()
    deadline = time.monotonic() + 5
    while accepted():
        assert time.monotonic() < deadline, "the gateway still accepts a revoked token after 5 s"
        time.sleep(0.2)
    page.goto(f"{up.console_url}/p/{project_id}/settings")  # type: ignore[attr-defined]
    assert "revoked" in page.locator(f"table.tokens tr:has-text('{label}')").inner_text()  # type: ignore[attr-defined]


def test_find_a_trace_and_open_its_waterfall(up: ForgelineUp, browser: object) -> None:
    trace_id = f"trace-{uuid.uuid4().hex[:12]}"
    spans = [
        {"name": "GET /checkout", "spanId": "root", "durationMs": 240.0, "kind": "server"},
        {"name": "SELECT basket", "spanId": "db", "parentSpanId": "root", "durationMs": 35.5, "kind": "db"},
    ]
    for span in spans:
        answer = httpx.post(
            f"{up.base_url}/api/v1/ingest_events",
            json={"event": {"eventType": "span", "traceId": trace_id, **span}},
            headers=up.auth,
        )
        assert answer.status_code in (200, 201, 202), answer.text
    page = sign_in(browser, up, "admin", first_user_password(up))
    project_id = up.tokens["project_id"]
    wait_for_text(page, f"{up.console_url}/p/{project_id}/traces?trace={trace_id}", "GET /checkout", timeout_s=20)
    page.click("a:has-text('GET /checkout')")  # type: ignore[attr-defined]
    rows = page.locator(".waterfall .span")  # type: ignore[attr-defined]
    assert rows.count() == 2
    assert "GET /checkout" in rows.nth(0).inner_text() and "SELECT basket" in rows.nth(1).inner_text()


def _png(width: int = 4, height: int = 3) -> bytes:
    """A real PNG (red pixels) that a browser decodes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_a_bug_report_shows_its_screenshot(up: ForgelineUp, browser: object) -> None:
    forge = {"Authorization": f"Bearer {up.tokens['forge_token']}"}
    session = {"build": {"version": "1.2.3", "platform": "linux", "channel": "qa"}, "player": {"deviceId": "d-9"}}
    r = httpx.post(f"{up.base_url}/v1/ingest/sessions", json=session, headers=forge, timeout=10)
    assert r.status_code == 201, r.text
    session_id = r.json()["sessionId"]
    png = _png()
    files = [{"filename": "shot.png", "contentType": "image/png", "size": len(png), "type": "screenshot"}]
    r = httpx.post(
        f"{up.base_url}/v1/ingest/uploads", json={"sessionId": session_id, "files": files}, headers=forge, timeout=10
    )
    assert r.status_code == 201, r.text
    target = r.json()["uploads"][0]
    assert httpx.put(target["url"], content=png, headers=target["headers"], timeout=10).status_code in (200, 201)
    title = f"Stuck in wall {uuid.uuid4().hex[:6]}"
    report = {"sessionId": session_id, "title": title, "description": "<b>not bold</b>", "severity": "low",
              "reporterType": "player", "eventIds": [], "clientRequestId": str(uuid.uuid4()),
              "uploadIds": [target["uploadId"]]}  # fmt: skip
    assert httpx.post(f"{up.base_url}/v1/ingest/reports", json=report, headers=forge, timeout=10).status_code == 201

    page = sign_in(browser, up, "admin", first_user_password(up))
    project_id = up.tokens["project_id"]
    wait_for_text(page, f"{up.console_url}/p/{project_id}/reports", title, timeout_s=15)
    page.click(f"a:has-text('{title}')")  # type: ignore[attr-defined]
    deadline = time.monotonic() + 15
    while page.locator("img.screenshot").count() == 0:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the upload never showed on the report"
        time.sleep(0.3)
        page.reload()  # type: ignore[attr-defined]
    # Loaded and decoded by the browser (under load the page can be there before the image is).
    loaded = "(() => { const i = document.querySelector('img.screenshot'); return i.complete && i.naturalWidth > 0 })()"
    # Polled from Python: wait_for_function re-evaluates a string predicate with eval() inside
    # the page, which the console's Content-Security-Policy (script-src 'self') refuses.
    deadline = time.monotonic() + 15
    while not page.evaluate(loaded):  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the screenshot never loaded in the browser"
        time.sleep(0.2)
    assert page.evaluate("document.querySelector('img.screenshot').naturalWidth") == 4  # type: ignore[attr-defined]
    assert "<b>not bold</b>" in page.locator("pre.message").inner_text()  # type: ignore[attr-defined]


def test_analytics_shows_a_funnel_and_a_heatmap(up: ForgelineUp, browser: object) -> None:
    from datetime import UTC, datetime

    import msgpack

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    level = f"Level_{uuid.uuid4().hex[:6]}"
    common = {"app_id": up.tokens["msgpack_app_id"], "build_id": "Win64_1.0", "player_id": "p-heat"}
    batch = [
        {**common, "funnel_step_name": "Tutorial_Start", "session_id": "s-heat", "timestamp": now},
        {
            **common,
            "session_id": "s-heat",
            "level_id": level,
            "fps": {"mean": 60, "low_5": 55, "low_1": 30},
            "positions": [0.0, 0.0, 0.0, 5.0, 0.0, 5.0, 10.0, 0.0, 10.0],
            "timestamp_start": now,
            "timestamp_end": now,
        },
    ]
    answer = httpx.post(
        f"{up.base_url}/api/events",
        content=msgpack.packb(batch),
        headers={"x-public-token": up.tokens["msgpack_public_token"], "Content-Type": "application/msgpack"},
    )
    assert answer.status_code == 200, answer.text
    page = sign_in(browser, up, "admin", first_user_password(up))
    url = f"{up.console_url}/p/{up.tokens['project_id']}/analytics?level={level}"
    wait_for_text(page, url, "positions of level", timeout_s=15)
    assert page.locator("svg.heatmap rect").count() == 3  # type: ignore[attr-defined]
    assert "Tutorial_Start" in page.locator("table.funnel").inner_text()  # type: ignore[attr-defined]


def test_monitors_deployments_sessions_and_game_crashes(up: ForgelineUp, browser: object) -> None:
    """Every other page runs its real queries against the warehouse and shows what was sent."""
    slug = f"nightly-{uuid.uuid4().hex[:6]}"
    release = f"r-{uuid.uuid4().hex[:6]}"
    player = f"player-{uuid.uuid4().hex[:6]}"
    for path, body in (
        ("/api/v1/check_ins", {"check_in": {"slug": slug, "status": "ok", "expected_interval_seconds": 900}}),
        ("/api/v1/deployments", {"deployment": {"release": release, "environment": "production",
                                                "commit_sha": "abc1234def", "branch": "main"}}),
    ):  # fmt: skip
        answer = httpx.post(f"{up.base_url}{path}", json=body, headers=up.auth)
        assert answer.status_code in (200, 201, 202), answer.text
    forge = {"Authorization": f"Bearer {up.tokens['forge_token']}"}
    session = {"build": {"version": "2.0.0", "platform": "switch", "channel": "qa"},
               "player": {"deviceId": "d-1", "externalId": player}}  # fmt: skip
    r = httpx.post(f"{up.base_url}/v1/ingest/sessions", json=session, headers=forge)
    assert r.status_code == 201, r.text
    session_id = r.json()["sessionId"]
    events = [{"sessionId": session_id, "type": f"step-{n}"} for n in range(3)]
    assert httpx.post(f"{up.base_url}/v1/ingest/events", json=events, headers=forge).status_code == 201
    crash = f"NullReference in Inventory {uuid.uuid4().hex[:6]}"
    crashed = [{"sessionId": session_id, "type": "crash", "properties": {"message": crash}}]
    assert httpx.post(f"{up.base_url}/v1/ingest/events", json=crashed, headers=forge).status_code == 201

    page = sign_in(browser, up, "admin", first_user_password(up))
    base = f"{up.console_url}/p/{up.tokens['project_id']}"
    wait_for_text(page, f"{base}/monitors", slug, timeout_s=15)
    page.click(f"a:has-text('{slug}')")  # type: ignore[attr-defined]
    assert page.locator("h1").inner_text().startswith(slug)  # type: ignore[attr-defined]
    wait_for_text(page, f"{base}/deployments", release, timeout_s=15)
    page.click(f"a:has-text('{release}')")  # type: ignore[attr-defined]
    assert "abc1234def" in page.content()  # type: ignore[attr-defined]
    wait_for_text(page, f"{base}/sessions?player={player}", "switch", timeout_s=15)
    page.click("table a")  # type: ignore[attr-defined]
    wait_for_text(page, page.url, "step-2", timeout_s=10)  # type: ignore[attr-defined]
    assert page.locator("tbody tr").count() == 4  # type: ignore[attr-defined]
    # A game crash is an error too: it is in the inbox with the servers' errors.
    wait_for_text(page, f"{base}/errors?status=all", crash, timeout_s=10)


def test_create_a_project_in_settings_and_switch_between_projects(up: ForgelineUp, browser: object) -> None:
    page = sign_in(browser, up, "admin", first_user_password(up))
    default_id = up.tokens["project_id"]
    page.goto(f"{up.console_url}/p/{default_id}/settings")  # type: ignore[attr-defined]
    name = f"studio-{uuid.uuid4().hex[:6]}"
    page.fill("form[action$='/settings/projects'] input[name=name]", name)  # type: ignore[attr-defined]
    page.click("text=Create project")  # type: ignore[attr-defined]
    assert re.search(r"/p/[0-9a-f-]{36}/settings$", page.url), page.url  # type: ignore[attr-defined]
    new_id = page.url.split("/p/", 1)[1].split("/")[0]  # type: ignore[attr-defined]
    assert new_id != default_id and name in page.locator("h1").inner_text()  # type: ignore[attr-defined]
    # The header's switcher (a plain GET form) opens the same page of the project chosen.
    page.select_option("header select[name=project]", default_id)  # type: ignore[attr-defined]
    page.click("header button:has-text('Open')")  # type: ignore[attr-defined]
    assert page.url.endswith(f"/p/{default_id}/settings"), page.url  # type: ignore[attr-defined]
    page.select_option("header select[name=project]", new_id)  # type: ignore[attr-defined]
    page.click("header button:has-text('Open')")  # type: ignore[attr-defined]
    assert page.url.endswith(f"/p/{new_id}/settings"), page.url  # type: ignore[attr-defined]
    # The console's home opens the project last opened in this browser.
    page.goto(f"{up.console_url}/")  # type: ignore[attr-defined]
    assert page.url.endswith(f"/p/{new_id}/errors"), page.url  # type: ignore[attr-defined]
