"""Every query block of docs/queries.md, run as written against a live pipeline."""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fixtures.pipeline import REPO, ForgelineUp

pytestmark = pytest.mark.integration


def doc_queries() -> dict[str, str]:
    text = (REPO / "docs" / "queries.md").read_text()
    found = re.findall(r"^## (.+?)\n.*?```sql\n(.*?)```", text, flags=re.S | re.M)
    return {title.strip(): sql.strip() for title, sql in found}


def test_the_doc_has_the_queries_the_issues_ask_for() -> None:
    assert {"errors first seen per release", "p95 transaction time per release"} <= set(doc_queries())


def _sha(release: str) -> str:
    """A commit id for a release (hex, as Logister requires)."""
    return hashlib.sha1(release.encode()).hexdigest()[:12]


def _send(up: ForgelineUp, path: str, body: dict[str, object]) -> None:
    response = httpx.post(f"{up.base_url}{path}", json=body, headers=up.auth)
    assert response.status_code == 201, response.text


def test_release_queries_answer_from_live_data(forgeline_up: ForgelineUp, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    old, new = f"{tag}-1.0", f"{tag}-1.1"
    for release, at in ((old, "2026-01-01T00:00:00Z"), (new, "2026-02-01T00:00:00Z")):
        _send(
            forgeline_up,
            "/api/v1/deployments",
            {"deployment": {"release": release, "commit_sha": _sha(release), "deployed_at": at}},
        )
    # One fingerprint appears in 1.0 and again in 1.1; another is new in 1.1.
    for release, fingerprint in ((old, f"{tag}-a"), (new, f"{tag}-a"), (new, f"{tag}-b")):
        _send(
            forgeline_up,
            "/api/v1/ingest_events",
            {"event": {"event_type": "error", "message": "boom", "fingerprint": fingerprint, "release": release}},
        )
    for i, release in enumerate([old] * 20 + [new] * 20):
        duration = (i % 20) + (100 if release == new else 0)
        _send(
            forgeline_up,
            "/api/v1/ingest_events",
            {
                "event": {
                    "event_type": "transaction",
                    "message": f"{tag} GET /",
                    "duration_ms": duration,
                    "release": release,
                }
            },
        )
    assert forgeline_up.wait_for(f"SELECT count() FROM forgeline.transactions WHERE release LIKE '{tag}%'", 40) == 40
    assert forgeline_up.wait_for(f"SELECT count() FROM forgeline.errors WHERE release LIKE '{tag}%'", 3) == 3
    assert forgeline_up.wait_for(f"SELECT count() FROM forgeline.deployments WHERE release LIKE '{tag}%'", 2) == 2

    queries = doc_queries()
    first_seen = {
        row[0]: row
        for row in (
            line.split("\t") for line in forgeline_up.sql(queries["errors first seen per release"]).splitlines()
        )
        if row[0].startswith(tag)
    }
    assert first_seen[old][1] == "1" and first_seen[new][1] == "1"
    assert f"{tag}-a" in first_seen[old][2] and f"{tag}-b" in first_seen[new][2]

    p95 = {
        row[0]: row
        for row in (
            line.split("\t") for line in forgeline_up.sql(queries["p95 transaction time per release"]).splitlines()
        )
        if row[0].startswith(tag)
    }
    assert p95[old][2] == "20" and p95[new][2] == "20"
    assert float(p95[new][3]) - float(p95[old][3]) == pytest.approx(100, abs=1)
    assert p95[new][4] == _sha(new)

    for title, sql in queries.items():
        forgeline_up.sql(sql)  # every documented query runs as written
        assert title
