"""The notifier service refuses, at send time, a target whose name now resolves to loopback
(DNS rebinding after `notify add`): the delivery is dead-lettered with a clear reason and
nothing reaches the address. With the target's opt-in the same delivery arrives."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import orjson
import pytest

from forgeline.bus.topics import EVENTS_ERROR_GROUPS
from forgeline.notify import egress
from forgeline.notify.egress import IPAddress
from services.notifier.main import NotifyPolicy
from tests.conftest import read_all
from tests.fixtures.providers import WEBHOOK_SECRET, Receivers
from tests.integration.test_notifier import Harness, error_doc

pytestmark = pytest.mark.integration
HOST = "hooks.example.test"  # exists only in the patched resolver


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path, NotifyPolicy(max_attempts=4, backoff_s=0.05, backoff_max_s=2.0, timeout_s=30.0))


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """HOST resolves to 127.0.0.1 (as a public name re-pointed after the check would); the look-ups."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        if host != HOST:
            raise OSError(f"unknown host {host}")
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(egress, "resolve", resolve)
    return calls


def _hook_url(receivers: Receivers, name: str) -> str:
    port = receivers.base_url.rsplit(":", 1)[1]
    return f"http://{HOST}:{port}/webhook/{name}"


def test_a_name_resolving_to_loopback_is_dead_lettered_not_sent(
    harness: Harness, receivers: Receivers, rebinding: list[str]
) -> None:
    strict = harness.add("webhook", {"url": _hook_url(receivers, "strict")}, WEBHOOK_SECRET, allow_private=False)
    harness.publish(EVENTS_ERROR_GROUPS, [error_doc(1)])

    def dead() -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in read_all(harness.bus, "dlq.notifier")]

    harness.run_until(lambda: len(dead()) >= 1)
    [letter] = dead()
    assert letter["target_id"] == strict.id and letter["reason"] == "blocked_address"
    assert letter["attempts"] == 1  # permanent: not retried
    [record] = read_all(harness.bus, "dlq.notifier")
    assert record.header("reason") == b"notify_blocked_address"
    detail = (record.header("detail") or b"").decode()
    assert f"{HOST} (127.0.0.1) is a loopback address" in detail, record.headers
    assert receivers.arrivals["webhook"] == 0 and rebinding == [HOST]


def test_the_opt_in_reaches_the_loopback_receiver(harness: Harness, receivers: Receivers, rebinding: list[str]) -> None:
    harness.add("webhook", {"url": _hook_url(receivers, "opted")}, WEBHOOK_SECRET, allow_private=True)
    harness.publish(EVENTS_ERROR_GROUPS, [error_doc(2)])
    harness.run_until(lambda: receivers.count("webhook") >= 1)
    [item] = receivers.items("webhook")
    assert item["_name"] == "opted" and item["title"] == "New error: boom 2"
    assert read_all(harness.bus, "dlq.notifier") == [] and HOST in rebinding
