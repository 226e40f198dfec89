"""Each provider's request shape, as its API documents it, and how to read its answers.

Pure functions build the request (so formatting is unit-tested without a network); the only
I/O here is ``already_delivered``, the marker look-up used after a crash left a delivery
"pending" (sent or not, we cannot know): GitHub and GitLab issues carry a hidden marker in
their body, Jira issues a label, and webhooks get an ``Idempotency-Key`` the receiver dedupes
on. Discord has no look-up for webhook messages, so a crash in that window can repeat one.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from forgeline.notify.model import DEFAULT_BASE_URLS, Target
from services.notifier.subjects import Notification

USER_AGENT = "forgeline-notifier"
SIGNATURE_HEADER = "X-Forgeline-Signature"
TIMESTAMP_HEADER = "X-Forgeline-Timestamp"
# Discord embed colours by severity.
_COLOURS = {"info": 0x3498DB, "warning": 0xF1C40F, "error": 0xE74C3C, "critical": 0x8E44AD}
RETRIABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def marker(delivery_id: str) -> str:
    return f"<!-- forgeline-delivery: {delivery_id} -->"


def jira_label(delivery_id: str) -> str:
    return f"forgeline-{delivery_id}"


def _labels(target: Target) -> list[str]:
    return [label.strip() for label in target.settings.get("labels", "").split(",") if label.strip()]


def markdown(n: Notification) -> str:
    lines = [n.text, ""]
    lines += [f"- **{name}**: {value}" for name, value in n.fields if value]
    return "\n".join(lines)


def plain(n: Notification) -> str:
    lines = [n.text, ""]
    lines += [f"{name}: {value}" for name, value in n.fields if value]
    return "\n".join(lines)


def github_request(target: Target, token: str, n: Notification, delivery_id: str) -> OutgoingRequest:
    base = target.settings.get("base_url", DEFAULT_BASE_URLS["github"])
    body: dict[str, Any] = {"title": n.title, "body": f"{markdown(n)}\n\n{marker(delivery_id)}"}
    if labels := _labels(target):
        body["labels"] = labels
    return OutgoingRequest(
        "POST",
        f"{base}/repos/{target.settings['repo']}/issues",
        {**_github_headers(token), "Content-Type": "application/json"},
        orjson.dumps(body),
    )


def _github_headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": USER_AGENT,
    }


def _gitlab_project(target: Target) -> str:
    return quote(target.settings["gitlab_project"], safe="")


def gitlab_request(target: Target, token: str, n: Notification, delivery_id: str) -> OutgoingRequest:
    base = target.settings.get("base_url", DEFAULT_BASE_URLS["gitlab"])
    body: dict[str, Any] = {"title": n.title, "description": f"{markdown(n)}\n\n{marker(delivery_id)}"}
    if labels := _labels(target):
        body["labels"] = ",".join(labels)  # GitLab takes a comma-separated string
    return OutgoingRequest(
        "POST",
        f"{base}/api/v4/projects/{_gitlab_project(target)}/issues",
        {"PRIVATE-TOKEN": token, "Content-Type": "application/json", "User-Agent": USER_AGENT},
        orjson.dumps(body),
    )


def _jira_auth(target: Target, token: str) -> str:
    email = target.settings.get("email")
    if email:  # Jira Cloud: basic auth with email + API token
        import base64

        return "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()
    return f"Bearer {token}"  # Jira Data Center: personal access token


def _adf(text: str) -> dict[str, Any]:
    """Jira REST v3 wants Atlassian Document Format; one paragraph per line."""
    paragraphs = [
        {"type": "paragraph", "content": [{"type": "text", "text": line}]} if line else {"type": "paragraph"}
        for line in text.split("\n")
    ]
    return {"type": "doc", "version": 1, "content": paragraphs}


def jira_request(target: Target, token: str, n: Notification, delivery_id: str) -> OutgoingRequest:
    s = target.settings
    version = s.get("api_version", "2")
    text = plain(n)
    fields: dict[str, Any] = {
        "project": {"key": s["jira_project"]},
        "summary": n.title[:254],  # Jira's summary limit is 255 characters
        "description": _adf(text) if version == "3" else text,
        "issuetype": {"name": s.get("issue_type", "Bug")},
        "labels": [*_labels(target), jira_label(delivery_id)],
    }
    return OutgoingRequest(
        "POST",
        f"{s['base_url']}/rest/api/{version}/issue",
        {
            "Authorization": _jira_auth(target, token),
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        },
        orjson.dumps({"fields": fields}),
    )


def discord_request(target: Target, webhook_url: str, n: Notification, delivery_id: str) -> OutgoingRequest:
    embed: dict[str, Any] = {
        "title": n.title[:256],
        "description": n.text[:4096],
        "color": _COLOURS.get(n.severity, _COLOURS["warning"]),
        "fields": [{"name": k[:256], "value": v[:1024], "inline": True} for k, v in n.fields if v][:25],
        "footer": {"text": f"forgeline {delivery_id}"},
    }
    body = {"content": n.title[:2000], "embeds": [embed], "allowed_mentions": {"parse": []}}
    # wait=true: Discord answers 200 with the message once it is stored (not 204 before).
    url = webhook_url + ("&" if "?" in webhook_url else "?") + "wait=true"
    return OutgoingRequest(
        "POST", url, {"Content-Type": "application/json", "User-Agent": USER_AGENT}, orjson.dumps(body)
    )


def webhook_payload(n: Notification, delivery_id: str) -> bytes:
    return orjson.dumps(
        {
            "delivery_id": delivery_id,
            "subject": n.subject,
            "subject_id": n.subject_id,
            "project_id": n.project_id,
            "title": n.title,
            "text": n.text,
            "severity": n.severity,
            "fields": dict(n.fields),
            "data": n.data,
        }
    )


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``<timestamp>.<body>`` with the target's secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, tolerance_s: float = 300.0) -> bool:
    """What a receiver does: check the signature, and refuse a stale timestamp (replay)."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def webhook_request(
    target: Target, secret: str, n: Notification, delivery_id: str, now_s: float | None = None
) -> OutgoingRequest:
    body = webhook_payload(n, delivery_id)
    timestamp = str(int(time.time() if now_s is None else now_s))  # fresh per attempt
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Idempotency-Key": delivery_id,
        "X-Forgeline-Delivery": delivery_id,
        "X-Forgeline-Subject": n.subject,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
    return OutgoingRequest("POST", target.settings["url"], headers, body)


def build_request(target: Target, secret: str, n: Notification, delivery_id: str) -> OutgoingRequest:
    if target.provider == "github":
        return github_request(target, secret, n, delivery_id)
    if target.provider == "gitlab":
        return gitlab_request(target, secret, n, delivery_id)
    if target.provider == "jira":
        return jira_request(target, secret, n, delivery_id)
    if target.provider == "discord":
        return discord_request(target, secret, n, delivery_id)
    return webhook_request(target, secret, n, delivery_id)


def retry_after_s(response: httpx.Response) -> float | None:
    """How long the provider asks us to wait: Discord's JSON ``retry_after``, else ``Retry-After``."""
    if response.status_code == 429 and response.headers.get("content-type", "").startswith("application/json"):
        try:
            doc = orjson.loads(response.content)
            if isinstance(doc, dict) and isinstance(doc.get("retry_after"), int | float):
                return max(float(doc["retry_after"]), 0.0)
        except orjson.JSONDecodeError:
            pass
    raw = response.headers.get("retry-after")
    if raw is None:
        reset = response.headers.get("x-ratelimit-reset")  # GitHub: epoch seconds
        if response.status_code in (403, 429) and reset and response.headers.get("x-ratelimit-remaining") == "0":
            try:
                return max(float(reset) - time.time(), 0.0)
            except ValueError:
                return None
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        try:
            return max((parsedate_to_datetime(raw) - datetime.now(UTC)).total_seconds(), 0.0)
        except (TypeError, ValueError):
            return None


def is_retriable(response: httpx.Response) -> bool:
    if response.status_code in RETRIABLE_STATUS:
        return True
    # GitHub signals its rate limits with 403 + x-ratelimit-remaining: 0 (or a Retry-After).
    return response.status_code == 403 and (
        response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers
    )


async def already_delivered(
    client: httpx.AsyncClient, target: Target, secret: str, delivery_id: str, since_ms: int
) -> bool:
    """After a crash mid-delivery: did the provider get it? (False where it cannot be known.)

    Raises httpx.HTTPError when the look-up itself fails; the caller retries it like a send.
    """
    # A minute of slack for clock skew between us and the provider.
    since = datetime.fromtimestamp(max(since_ms / 1000 - 60, 0), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    mark = marker(delivery_id)
    s = target.settings
    if target.provider == "github":
        base = s.get("base_url", DEFAULT_BASE_URLS["github"])
        response = await client.get(
            f"{base}/repos/{s['repo']}/issues",
            params={"state": "all", "since": since, "per_page": "100", "sort": "created", "direction": "desc"},
            headers=_github_headers(secret),
        )
        response.raise_for_status()
        return any(mark in (issue.get("body") or "") for issue in response.json())
    if target.provider == "gitlab":
        base = s.get("base_url", DEFAULT_BASE_URLS["gitlab"])
        response = await client.get(
            f"{base}/api/v4/projects/{_gitlab_project(target)}/issues",
            params={"created_after": since, "per_page": "100", "scope": "all"},
            headers={"PRIVATE-TOKEN": secret, "User-Agent": USER_AGENT},
        )
        response.raise_for_status()
        return any(mark in (issue.get("description") or "") for issue in response.json())
    if target.provider == "jira":
        response = await client.get(
            f"{s['base_url']}/rest/api/{s.get('api_version', '2')}/search",
            params={"jql": f'labels = "{jira_label(delivery_id)}"', "maxResults": "1", "fields": "key"},
            headers={"Authorization": _jira_auth(target, secret), "Accept": "application/json"},
        )
        response.raise_for_status()
        return int(response.json().get("total", 0)) > 0
    return False
