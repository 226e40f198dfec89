"""The notifier in-process on a real embedded bus, against real HTTP receivers on 127.0.0.1.

Each provider receives each notification exactly once, through scripted 5xx and 429 answers;
a redelivery of the same records (and a fresh service instance) sends nothing again; a
delivery that keeps failing is dead-lettered after the attempt limit, a refused one at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from forgeline.bus.embedded import EmbeddedBus
from forgeline.bus.port import OutgoingRecord
from forgeline.bus.topics import EVENTS_ERROR_GROUPS, EVENTS_MONITORS, FIXED_PARTITIONS, TYPED_REPORTS
from forgeline.notify.crypto import SecretBox, load_key
from forgeline.notify.model import Target
from forgeline.notify.store import TargetAdmin
from services.notifier.main import NotifierService, NotifyPolicy
from tests.conftest import read_all
from tests.fixtures.providers import DISCORD_PATH, JIRA_EMAIL, TOKEN, WEBHOOK_SECRET, Receivers

pytestmark = pytest.mark.integration
PROJECT = "proj-1"


def error_doc(i: int, kind: str = "new") -> dict[str, Any]:
    return {
        "notification_id": f"00000000-0000-5000-8000-{i:012d}",
        "kind": kind,
        "project_id": PROJECT,
        "organisation_id": "org",
        "group_id": f"g{i}",
        "fingerprint": f"fp{i}",
        "title": f"boom {i}",
        "exception_class": "ValueError",
        "level": "error",
        "event_id": f"e{i}",
        "occurred_at": 1_700_000_000_000 + i,
        "event_count": 1,
    }


def monitor_doc(change: str, state: str) -> dict[str, Any]:
    return {
        "change_id": change,
        "project_id": PROJECT,
        "environment": "production",
        "slug": "nightly-build",
        "previous_state": "ok",
        "state": state,
        "changed_at": 1_700_000_000_000,
        "reason": "deadline",
        "event_id": "",
    }


def report_doc(export: list[str]) -> dict[str, Any]:
    return {
        "report_id": "11111111-2222-5333-8444-555555555555",
        "session_id": "s",
        "organisation_id": "org",
        "project_id": PROJECT,
        "environment": "production",
        "title": "Player stuck in wall",
        "description": "Level 3, near the bridge",
        "severity": "high",
        "reporter_type": "player",
        "export_providers": export,
        "upload_ids": [],
        "received_at": 1_700_000_000_000,
    }


class Harness:
    def __init__(self, tmp_path: Path, policy: NotifyPolicy) -> None:
        self.bus = EmbeddedBus(tmp_path / "bus", default_partitions=2, partitions=FIXED_PARTITIONS)
        self.box = SecretBox(load_key(tmp_path))
        self.policy = policy

    def add(
        self, provider: str, settings: dict[str, str], secret: str, rate: float = 1000.0, allow_private: bool = True
    ) -> Target:
        """A target; by default with the opt-in to private networks (the receivers are on 127.0.0.1)."""

        async def _add() -> Target:
            async with TargetAdmin(self.bus, self.box) as admin:
                return await admin.add(
                    PROJECT,
                    provider,  # type: ignore[arg-type]
                    provider,
                    settings,
                    secret,
                    rate=rate,
                    allow_private=allow_private,
                )

        return asyncio.run(_add())

    def publish(self, topic: str, docs: list[dict[str, Any]]) -> None:
        async def _send() -> None:
            producer = self.bus.producer()
            await producer.start()
            try:
                await producer.send_many([OutgoingRecord(topic, orjson.dumps(d), key=b"k") for d in docs])
            finally:
                await producer.stop()

        asyncio.run(_send())

    def run_until(self, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Run a fresh service instance until ``done()`` and its batch is committed, then stop it."""

        async def _run() -> None:
            service = NotifierService(self.bus, self.box, self.policy)
            task = asyncio.create_task(service.run())
            deadline = time.monotonic() + timeout_s
            while not service.ready or not await asyncio.to_thread(done):
                assert not task.done(), task.exception()
                assert time.monotonic() < deadline, "condition not reached in time"
                await asyncio.sleep(0.05)
            # Let the batch commit: the group's lag reaches zero.
            while await service.lag() > 0:
                assert time.monotonic() < deadline, "batch not committed in time"
                await asyncio.sleep(0.05)
            service.stop()
            await task

        asyncio.run(_run())


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path, NotifyPolicy(max_attempts=4, backoff_s=0.05, backoff_max_s=2.0, timeout_s=30.0))


def test_every_provider_once_through_500_and_429_and_no_resend_on_redelivery(
    harness: Harness, receivers: Receivers
) -> None:
    base = receivers.base_url
    harness.add("github", {"repo": "acme/game", "base_url": f"{base}/github"}, TOKEN)
    harness.add("gitlab", {"gitlab_project": "studio/game", "base_url": f"{base}/gitlab"}, TOKEN)
    harness.add("jira", {"base_url": f"{base}/jira", "jira_project": "GAME", "email": JIRA_EMAIL}, TOKEN)
    harness.add("discord", {}, base + DISCORD_PATH)
    harness.add("webhook", {"url": f"{base}/webhook/main"}, WEBHOOK_SECRET)
    receivers.script("/github", [500, 429])
    receivers.script("/gitlab", [502])
    receivers.script("/jira", [503])
    receivers.script("/discord", [429, 429])
    receivers.script("/webhook", [500, 429, 500])

    errors = [error_doc(i) for i in range(5)]
    monitors = [monitor_doc("c-fail", "failing"), monitor_doc("c-ok", "ok")]
    harness.publish(EVENTS_ERROR_GROUPS, errors)
    harness.publish(EVENTS_MONITORS, monitors)
    harness.publish(TYPED_REPORTS, [report_doc(["webhook", "discord"])])
    # Errors and the failing monitor go everywhere; the report only where it asked; "ok" nowhere.
    expected = {"github": 6, "gitlab": 6, "jira": 6, "discord": 7, "webhook": 7}
    harness.run_until(lambda: all(receivers.count(p) >= n for p, n in expected.items()))
    assert {p: receivers.count(p) for p in expected} == expected
    # The scripted failures were retried (arrivals include them), and signatures all verified.
    assert receivers.arrivals["github"] == 6 + 2 and receivers.arrivals["webhook"] == 7 + 3
    assert receivers.arrivals["discord"] == 7 + 2 and receivers.bad_signatures == 0
    # A retried delivery keeps its Idempotency-Key; every created item has its own.
    assert len({i["_key"] for i in receivers.items("webhook")}) == 7 and sum(receivers.webhook_keys.values()) == 10
    reports = [i for i in receivers.items("webhook") if i["subject"] == "report"]
    assert len(reports) == 1 and reports[0]["title"] == "Bug report: Player stuck in wall"
    titles = sorted(i["title"] for i in receivers.items("github"))
    assert titles == ["Monitor failing: nightly-build (production)", *(f"New error: boom {i}" for i in range(5))]
    jira = receivers.items("jira")[0]
    assert jira["project"] == {"key": "GAME"} and any(label.startswith("forgeline-") for label in jira["labels"])

    # Redelivery: the same records again, read by a new service instance (a restart).
    arrivals = dict(receivers.arrivals)
    harness.publish(EVENTS_ERROR_GROUPS, errors)
    harness.publish(EVENTS_MONITORS, monitors)
    harness.publish(TYPED_REPORTS, [report_doc(["webhook", "discord"])])
    harness.publish(EVENTS_ERROR_GROUPS, [error_doc(99, "regressed")])  # the sentinel
    harness.run_until(lambda: receivers.count("jira") >= 7)
    after = {p: n + 1 if p != "report" else n for p, n in expected.items()}
    for provider in ("github", "gitlab", "jira", "discord", "webhook"):
        receivers.wait_for(provider, after[provider], timeout_s=10)
    assert {p: receivers.count(p) for p in expected} == after
    assert {p: receivers.arrivals[p] - arrivals.get(p, 0) for p in expected} == dict.fromkeys(expected, 1)


def test_dead_letter_after_the_attempt_limit_and_at_once_when_refused(harness: Harness, receivers: Receivers) -> None:
    base = receivers.base_url
    broken = harness.add("webhook", {"url": f"{base}/webhook/broken"}, WEBHOOK_SECRET)
    refused = harness.add("github", {"repo": "acme/game", "base_url": f"{base}/github"}, "ghp_wrong_token")
    receivers.always("/webhook/broken", 500)
    harness.publish(EVENTS_ERROR_GROUPS, [error_doc(1)])

    def dead() -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in read_all(harness.bus, "dlq.notifier")]

    harness.run_until(lambda: len(dead()) >= 2)
    letters = {d["target_id"]: d for d in dead()}
    assert set(letters) == {broken.id, refused.id}
    assert letters[broken.id]["attempts"] == 4 and letters[broken.id]["reason"] == "http_500"
    assert letters[refused.id]["attempts"] == 1 and letters[refused.id]["reason"] == "http_401"
    assert receivers.arrivals["webhook"] == 4 and receivers.count("webhook") == 0
    records = read_all(harness.bus, "dlq.notifier")
    assert {r.header("reason") for r in records} == {b"notify_http_500", b"notify_http_401"}
    assert all(r.header("source_topic") == EVENTS_ERROR_GROUPS.encode() for r in records)
    # No secret in a dead letter.
    assert not any(WEBHOOK_SECRET.encode() in r.value or b"ghp_wrong_token" in r.value for r in records)

    # A redelivery does not try a dead-lettered delivery again.
    harness.publish(EVENTS_ERROR_GROUPS, [error_doc(1)])
    harness.run_until(lambda: True)
    assert receivers.arrivals["webhook"] == 4 and len(dead()) == 2
