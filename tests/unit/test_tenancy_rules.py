"""Tenancy rules in the library (CLI and management API share them) and token refusal codes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from forgeline.bus.factory import create_bus
from forgeline.tenancy import model
from forgeline.tenancy.model import (
    REFUSAL_CODES,
    Principal,
    Project,
    Refusal,
    TenancyTable,
    Token,
    generate_token,
    hash_token,
    kind_of_token,
)
from forgeline.tenancy.store import TenancyAdmin, TenancyFollower

pytestmark = pytest.mark.unit


def _table(*, archived: bool = False, revoked: bool = False) -> tuple[TenancyTable, dict[str, str]]:
    table = TenancyTable()
    table.apply(model.Organisation("o", "org"))
    table.apply(Project("p", "o", "default", archived=archived))
    secrets = {kind: generate_token(kind) for kind in ("forge", "logister")}
    for kind, secret in secrets.items():
        table.apply(
            Token(f"t-{kind}", kind, hash_token(secret), secret[:12], "p", "production", None, "now", revoked=revoked)  # type: ignore[arg-type]
        )
    return table, secrets


@pytest.mark.parametrize(
    ("presented", "code"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        ("nope", "malformed_token"),
        ("eyJhbGciOiJIUzI1NiJ9.e30.sig", "malformed_token"),
        ("lgst_", "malformed_token"),
        ("lgst_has spaces", "malformed_token"),
        ("lgst_" + "a" * 300, "malformed_token"),
        ("lgst_unknownButWellFormed", "invalid_token"),
        ("flg_someForgeToken", "wrong_token_kind"),
        ("mpk_pub_x", "wrong_token_kind"),
        ("mpk_sec_x", "wrong_token_kind"),
    ],
)
def test_each_refusal_has_its_code(presented: str | None, code: str) -> None:
    table, _ = _table()
    assert table.check(presented, ("logister",)) == Refusal(code)  # type: ignore[arg-type]
    assert code in REFUSAL_CODES


def test_a_revoked_token_is_invalid_like_an_unknown_one() -> None:
    table, secrets = _table(revoked=True)
    assert table.check(secrets["logister"], ("logister",)) == Refusal("invalid_token")
    assert table.check("lgst_" + "x" * 43, ("logister",)) == Refusal("invalid_token")


def test_an_archived_projects_token_says_so_and_a_right_token_passes() -> None:
    table, secrets = _table(archived=True)
    assert table.check(secrets["logister"], ("logister",)) == Refusal("project_archived")
    table.apply(Project("p", "o", "default", archived=False))
    assert isinstance(table.check(secrets["logister"], ("logister",)), Principal)
    assert table.authenticate(secrets["logister"], ("forge",)) is None


def test_every_case_costs_one_hash_and_one_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    table, secrets = _table()
    calls: list[str] = []
    real = model.hash_token
    monkeypatch.setattr(model, "hash_token", lambda token: calls.append(token) or real(token))
    for presented in (None, "nope", "flg_x", "lgst_unknown", secrets["logister"]):
        table.check(presented, ("logister",))
    assert len(calls) == 5


def test_prefixes_decide_the_kind() -> None:
    assert kind_of_token(generate_token("msgpack_public")) == "msgpack_public"
    assert kind_of_token(generate_token("msgpack_secret")) == "msgpack_secret"
    assert kind_of_token(generate_token("forge")) == "forge"
    assert kind_of_token("mpk_x") is None


def _admin_run(tmp_path: Path, steps: object) -> None:
    async def main() -> None:
        bus = create_bus(f"embedded://{tmp_path / 'bus'}")
        async with TenancyAdmin(bus) as admin:
            org = await admin.create_organisation("studio")
            await steps(admin, org.id)  # type: ignore[operator]

    asyncio.run(main())


def test_project_names_are_unique_in_an_organisation_archived_ones_included(tmp_path: Path) -> None:
    async def steps(admin: TenancyAdmin, org_id: str) -> None:
        first = await admin.create_project(org_id, "default")
        with pytest.raises(ValueError, match="already"):
            await admin.create_project(org_id, "default")
        await admin.archive_project("default")
        with pytest.raises(ValueError, match="archived"):
            await admin.create_project(org_id, "default")
        other = await admin.create_organisation("another studio")
        assert (await admin.create_project(other.id, "default")).id != first.id
        with pytest.raises(ValueError):
            await admin.create_project(org_id, "  ")

    _admin_run(tmp_path, steps)


def test_no_tokens_for_an_archived_project_until_it_is_unarchived(tmp_path: Path) -> None:
    async def steps(admin: TenancyAdmin, org_id: str) -> None:
        project = await admin.create_project(org_id, "game")
        await admin.archive_project("game")
        with pytest.raises(ValueError, match="archived"):
            await admin.create_token("logister", project.id, "production")
        restored = await admin.unarchive_project("game")
        assert not restored.archived
        _, secret = await admin.create_token("logister", project.id, "production")
        assert isinstance(admin.table.check(secret, ("logister",)), Principal)
        with pytest.raises(LookupError):
            await admin.create_token("logister", "no-such-project", "production")

    _admin_run(tmp_path, steps)


def test_refresh_reads_a_token_written_after_the_last_catch_up(tmp_path: Path) -> None:
    async def main() -> None:
        bus = create_bus(f"embedded://{tmp_path / 'bus'}")
        follower = TenancyFollower(bus)
        await follower.start()
        async with TenancyAdmin(bus) as admin:
            org = await admin.create_organisation("studio")
            project = await admin.create_project(org.id, "game")
            _, secret = await admin.create_token("logister", project.id, "production")
        assert follower.table.check(secret, ("logister",)) == Refusal("invalid_token")
        await asyncio.gather(follower.refresh(), follower.refresh(), follower.refresh())
        assert isinstance(follower.table.check(secret, ("logister",)), Principal)
        await follower.stop()

    asyncio.run(main())


def test_a_flood_of_refreshes_reads_the_bus_a_few_times(tmp_path: Path) -> None:
    async def main() -> int:
        bus = create_bus(f"embedded://{tmp_path / 'bus'}")
        follower = TenancyFollower(bus)
        await follower.start()
        reads = 0
        real = follower._reader.end_offsets

        async def counted() -> Any:
            nonlocal reads
            reads += 1
            return await real()

        follower._reader.end_offsets = counted  # type: ignore[method-assign]
        await asyncio.gather(*(follower.refresh() for _ in range(200)))
        await follower.stop()
        return reads

    assert asyncio.run(main()) <= 2
