"""`forgeline errors list|resolve|ignore|unresolve`.

Reads go through the running processors' admin port (the CLI never opens chDB while `up`
owns it); status changes are control records on ``control.error_groups``, keyed like the
group's errors, so the grouper applies them in order with the group's events. A change is
visible in ``error_groups`` once the grouper has consumed it (normally well under a second).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import httpx
import orjson

from forgeline.bus.factory import create_bus
from forgeline.bus.port import ADMIN_SEND_TIMEOUT_S, OutgoingRecord
from forgeline.config import Settings
from services.errors.steps import control_record

LIST_SQL = (
    "SELECT group_id, status, regressed, event_count, last_seen, last_level, project_id, title "
    "FROM forgeline.error_groups FINAL {where} ORDER BY last_seen DESC LIMIT {limit}"
)


def add_errors_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    errors = sub.add_parser("errors", help="list error groups; resolve, ignore or unresolve one")
    esub = errors.add_subparsers(dest="action", required=True)
    listing = esub.add_parser("list", parents=[common], help="error groups, most recently seen first")
    listing.add_argument("--status", choices=("unresolved", "resolved", "ignored"))
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--admin-url", help="processors admin URL (default: from the running `up`)")
    for action in ("resolve", "ignore", "unresolve"):
        change = esub.add_parser(action, parents=[common], help=f"{action} a group by id (or unique id prefix)")
        change.add_argument("group_id")
        change.add_argument("--admin-url", help="processors admin URL (default: from the running `up`)")


def _admin_url(settings: Settings, explicit: str | None) -> str:
    from services.runfile import admin_url

    return admin_url(settings, explicit)


def _query(settings: Settings, admin_url: str, sql: str, fmt: str) -> str:
    from services.runfile import post_query

    response = post_query(settings, admin_url, sql, fmt)
    if response.status_code != 200:
        raise LookupError(response.text)
    return response.text


def errors_command(settings: Settings, args: argparse.Namespace) -> int:
    admin_url = _admin_url(settings, args.admin_url)
    try:
        if args.action == "list":
            where = f"WHERE status = '{args.status}'" if args.status else ""
            sql = LIST_SQL.format(where=where, limit=int(args.limit))
            sys.stdout.write(_query(settings, admin_url, sql, "PrettyCompact"))
            return 0
        prefix = str(args.group_id)
        if not prefix or not all(c in "0123456789abcdef-" for c in prefix.lower()):
            raise LookupError(f"bad group id {prefix!r}")
        sql = (
            "SELECT group_id, project_id, fingerprint FROM forgeline.error_groups FINAL "
            f"WHERE startsWith(group_id, '{prefix.lower()}') LIMIT 2"
        )
        found = [orjson.loads(line) for line in _query(settings, admin_url, sql, "JSONEachRow").splitlines() if line]
        if len(found) != 1:
            raise LookupError(f"{len(found)} groups match {prefix!r}; give more of the id")
        group = found[0]
        record = control_record(group["project_id"], group["fingerprint"], args.action, int(time.time() * 1000))
        asyncio.run(_send(settings, record))
        print(f"{args.action}: {group['group_id']} (applied by the grouper shortly)")
        return 0
    except (LookupError, httpx.TransportError) as err:
        print(f"forgeline: {err}", file=sys.stderr)
        return 1


async def _send(settings: Settings, record: OutgoingRecord) -> None:
    producer = create_bus(settings.resolved_bus_url, settings.partitions).producer(send_timeout_s=ADMIN_SEND_TIMEOUT_S)
    await producer.start()
    try:
        await producer.send(record)
    finally:
        await producer.stop()
