"""Message formatting per provider, signatures, rate-limit answers, subjects and settings."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import orjson
import pytest

from forgeline.bus.port import Record
from forgeline.bus.topics import EVENTS_ERROR_GROUPS, EVENTS_MONITORS, TYPED_REPORTS
from forgeline.notify.model import SUBJECTS, Target, parse_subjects, validate_secret, validate_settings
from forgeline.processing.deadletter import InvalidMessage
from services.notifier import providers
from services.notifier.main import wants
from services.notifier.subjects import Notification, delivery_id, parse

pytestmark = pytest.mark.unit

DID = "0f7c2f6e-1111-5222-8333-444455556666"


def _target(provider: str, **settings: str) -> Target:
    return Target("t1", "p1", provider, provider, settings, "enc")  # type: ignore[arg-type]


def _n(**changes: object) -> Notification:
    base = dict(
        subject_id="s1",
        subject="error_new",
        project_id="p1",
        title="New error: ValueError: boom",
        text="ValueError: boom",
        severity="error",
        fields=(("level", "error"), ("events", "3"), ("empty", "")),
    )
    base.update(changes)
    return Notification(**base)  # type: ignore[arg-type]


def test_github_issue_shape() -> None:
    req = providers.github_request(_target("github", repo="acme/game", labels="bug, crash"), "tok", _n(), DID)
    assert (req.method, req.url) == ("POST", "https://api.github.com/repos/acme/game/issues")
    assert req.headers["Authorization"] == "Bearer tok"
    assert req.headers["Accept"] == "application/vnd.github+json"
    body = orjson.loads(req.body)
    assert body["title"] == "New error: ValueError: boom"
    assert providers.marker(DID) in body["body"] and "- **events**: 3" in body["body"]
    assert "empty" not in body["body"]
    assert body["labels"] == ["bug", "crash"]


def test_gitlab_issue_shape_encodes_path_and_joins_labels() -> None:
    target = _target("gitlab", gitlab_project="studio/game", base_url="https://git.example", labels="bug,crash")
    req = providers.gitlab_request(target, "tok", _n(), DID)
    assert req.url == "https://git.example/api/v4/projects/studio%2Fgame/issues"
    assert req.headers["PRIVATE-TOKEN"] == "tok"
    body = orjson.loads(req.body)
    assert body["labels"] == "bug,crash" and providers.marker(DID) in body["description"]


def test_jira_v2_plain_text_and_v3_document_format() -> None:
    v2 = providers.jira_request(_target("jira", base_url="https://j.example", jira_project="GAME"), "tok", _n(), DID)
    assert v2.url == "https://j.example/rest/api/2/issue" and v2.headers["Authorization"] == "Bearer tok"
    fields = orjson.loads(v2.body)["fields"]
    assert fields["project"] == {"key": "GAME"} and fields["issuetype"] == {"name": "Bug"}
    assert isinstance(fields["description"], str) and providers.jira_label(DID) in fields["labels"]
    target = _target("jira", base_url="https://j.example", jira_project="GAME", api_version="3", email="a@b.c")
    v3 = providers.jira_request(target, "tok", _n(title="x" * 400), DID)
    assert v3.url.endswith("/rest/api/3/issue") and v3.headers["Authorization"].startswith("Basic ")
    fields = orjson.loads(v3.body)["fields"]
    assert fields["description"]["type"] == "doc" and len(fields["summary"]) <= 255


def test_discord_message_limits() -> None:
    many = tuple((f"f{i}", "v" * 2000) for i in range(40))
    req = providers.discord_request(
        _target("discord"), "https://d.example/api/webhooks/1/t", _n(title="t" * 3000, fields=many), DID
    )
    assert req.url == "https://d.example/api/webhooks/1/t?wait=true"
    body = orjson.loads(req.body)
    assert len(body["content"]) <= 2000 and body["allowed_mentions"] == {"parse": []}
    embed = body["embeds"][0]
    assert len(embed["title"]) <= 256 and len(embed["fields"]) == 25
    assert all(len(f["value"]) <= 1024 for f in embed["fields"])


def test_webhook_signature_verifies_and_rejects_tampering_and_replay() -> None:
    req = providers.webhook_request(_target("webhook", url="https://h.example/in"), "sekrit", _n(), DID)
    ts, sig = req.headers[providers.TIMESTAMP_HEADER], req.headers[providers.SIGNATURE_HEADER]
    assert req.headers["Idempotency-Key"] == DID
    assert providers.verify("sekrit", ts, req.body, sig)
    assert not providers.verify("other", ts, req.body, sig)
    assert not providers.verify("sekrit", ts, req.body + b" ", sig)
    old = providers.webhook_request(
        _target("webhook", url="https://h.example/in"), "sekrit", _n(), DID, now_s=time.time() - 3600
    )
    assert not providers.verify(
        "sekrit", old.headers[providers.TIMESTAMP_HEADER], old.body, old.headers[providers.SIGNATURE_HEADER]
    )
    assert orjson.loads(req.body)["delivery_id"] == DID


def _response(status: int, headers: dict[str, str] | None = None, json: object | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, json=json)


def test_retry_after_sources() -> None:
    discord = _response(429, {"Retry-After": "2"}, {"retry_after": 0.75, "global": False})
    assert providers.retry_after_s(discord) == 0.75
    assert providers.retry_after_s(_response(503, {"Retry-After": "7"})) == 7.0
    date = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 20 < (providers.retry_after_s(_response(429, {"Retry-After": date})) or 0) <= 30
    assert providers.retry_after_s(_response(500)) is None
    github = _response(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 10)})
    assert providers.is_retriable(github) and 5 < (providers.retry_after_s(github) or 0) <= 10


@pytest.mark.parametrize(
    ("status", "retriable"),
    [
        (500, True),
        (502, True),
        (429, True),
        (408, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (422, False),
    ],
)
def test_retriable_statuses(status: int, retriable: bool) -> None:
    assert providers.is_retriable(_response(status)) is retriable


def _record(topic: str, doc: object) -> Record:
    return Record(topic, 0, 0, None, orjson.dumps(doc), 0)


def test_subjects_from_each_topic() -> None:
    report = {
        "report_id": "r1",
        "project_id": "p1",
        "title": "Stuck in wall",
        "description": "at level 3",
        "severity": "high",
        "reporter_type": "player",
        "export_providers": ["github", "webhook"],
        "received_at": 0,
    }
    n = parse(_record(TYPED_REPORTS, report))
    assert n is not None and n.subject == "report" and n.requested == ("github", "webhook") and n.severity == "error"
    assert wants(_target("github", repo="a/b"), n) and not wants(_target("jira"), n)
    assert parse(_record(TYPED_REPORTS, {**report, "export_providers": []})) is None
    err = {
        "notification_id": "n1",
        "kind": "regressed",
        "project_id": "p1",
        "title": "boom",
        "exception_class": "ValueError",
    }
    n = parse(_record(EVENTS_ERROR_GROUPS, err))
    assert (
        n is not None
        and n.subject == "error_regressed"
        and n.title == "Regressed error: boom"
        and n.text == "ValueError: boom"
    )
    mon = {"change_id": "c1", "project_id": "p1", "environment": "prod", "slug": "nightly", "state": "missed"}
    n = parse(_record(EVENTS_MONITORS, mon))
    assert n is not None and n.subject == "monitor_missed" and "nightly" in n.title
    assert parse(_record(EVENTS_MONITORS, {**mon, "state": "ok"})) is None
    with pytest.raises(InvalidMessage):
        parse(Record(EVENTS_MONITORS, 0, 0, None, b"{not json", 0))
    with pytest.raises(InvalidMessage):
        parse(_record(EVENTS_ERROR_GROUPS, {"kind": "new"}))


def test_delivery_ids_are_stable_and_distinct() -> None:
    assert delivery_id("p", "s", "t") == delivery_id("p", "s", "t")
    assert len({delivery_id("p", "s", "t"), delivery_id("p", "s", "t2"), delivery_id("p", "s2", "t")}) == 3


def test_settings_validation_names_the_option() -> None:
    assert validate_settings("github", {"repo": "a/b"}) == {"repo": "a/b"}
    with pytest.raises(ValueError, match="--repo"):
        validate_settings("github", {})
    with pytest.raises(ValueError, match="OWNER/NAME"):
        validate_settings("github", {"repo": "nope"})
    with pytest.raises(ValueError, match="--url"):
        validate_settings("webhook", {"url": "ftp://x"})
    with pytest.raises(ValueError, match="takes no --repo"):
        validate_settings("webhook", {"url": "http://x", "repo": "a/b"})
    with pytest.raises(ValueError, match="unknown provider"):
        validate_settings("slack", {})
    with pytest.raises(ValueError, match="webhooks"):
        validate_secret("discord", "https://example.com/other")
    with pytest.raises(ValueError, match="token"):
        validate_secret("github", "")
    assert parse_subjects("report, monitor_missed") == ("report", "monitor_missed")
    with pytest.raises(ValueError):
        parse_subjects("everything")
    assert set(SUBJECTS) >= set(parse_subjects(",".join(SUBJECTS)))
