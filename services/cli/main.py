"""`forgeline …`: one CLI for every service, the embedded mode, tokens and SQL.

Every option is also an environment variable (FORGELINE_*); a flag wins over the variable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from forgeline.config import Settings, SettingsError
from forgeline.telemetry.logging import configure_logging
from services.cli import admin_commands, dlq_commands, lifecycle_commands, manage_commands, topics
from services.errors.cli import add_errors_commands, errors_command
from services.notifier.cli import add_notify_commands, notify_command


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env(os.environ)
    changes: dict[str, object] = {}
    if getattr(args, "data_dir", None):
        changes["data_dir"] = Path(args.data_dir)
    for name in ("host", "port", "admin_host", "admin_port", "console_port"):
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    return settings.with_overrides(**changes) if changes else settings


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data directory (FORGELINE_DATA_DIR, default ./.forgeline)")

    serving = argparse.ArgumentParser(add_help=False)
    serving.add_argument("--host", help="gateway listen address (FORGELINE_HOST, default 127.0.0.1)")
    serving.add_argument("--port", type=int, help="gateway port (FORGELINE_PORT, default 8080)")
    serving.add_argument("--admin-port", type=int, help="processors admin port (FORGELINE_ADMIN_PORT, default 8081)")
    serving.add_argument(
        "--admin-host",
        help="processors admin address (FORGELINE_ADMIN_HOST, default 127.0.0.1, whatever --host says); "
        "any other address needs FORGELINE_ADMIN_KEY",
    )

    serving.add_argument("--console-port", type=int, help="console port (FORGELINE_CONSOLE_PORT, default 8082)")

    parser = argparse.ArgumentParser(prog="forgeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", parents=[common, serving], help="embedded mode: gateway + all processors, supervised")
    sub.add_parser("gateway", parents=[common, serving], help="run the gateway alone")
    sub.add_parser("processors", parents=[common, serving], help="run every processor in one process")
    process = sub.add_parser("process", parents=[common, serving], help="run one processor alone")
    process.add_argument("name", help="normalizer | writer | errors | spans | monitors | exporter | notifier")
    sub.add_parser("migrate", parents=[common], help="apply warehouse migrations (not while `up` runs on chDB)")
    sub.add_parser(
        "bootstrap",
        parents=[common],
        help="first start of a distributed deployment: default organisation, project and tokens (idempotent)",
    )

    sql = sub.add_parser("sql", parents=[common], help="run a read-only query through the running processors")
    sql.add_argument("query")
    sql.add_argument("--format", default="PrettyCompact", help="ClickHouse output format (PrettyCompact, CSV…)")
    sql.add_argument("--admin-url", help="processors admin URL (default: from the running `up`)")
    sql.add_argument(
        "--output", help="write the result to this file (required for Parquet, Arrow and other binary formats)"
    )

    export = sub.add_parser("export", parents=[common], help="backfill NDJSON files from the warehouse")
    export.add_argument("--kind", required=True, help="table or kind: errors, spans, game_events, …")
    export.add_argument("--from", dest="since", required=True, help="start, ISO 8601 (UTC unless an offset is given)")
    export.add_argument("--to", dest="until", required=True, help="end (exclusive), ISO 8601")
    export.add_argument("--out", help="a directory, or s3://bucket/prefix (default: <data-dir>/backfill)")
    export.add_argument("--gzip", action="store_true", help="write .ndjson.gz")
    export.add_argument("--dsn", help="read ClickHouse directly (http://…, chdb:///dir when nothing else has it open)")
    export.add_argument("--admin-url", help="processors admin URL (default: from the running `up`)")

    bench = sub.add_parser("bench", help="benchmarks, each next to a same-run baseline (writes bench/results.json)")
    bench.add_argument("--quick", action="store_true", help="short runs (a few seconds each)")
    bench.add_argument(
        "--only",
        action="append",
        help="run only these scenarios: http, msgpack, bus, writer, exporter, pipeline, cost, memory, kafka, scale, "
        "console, sizing",
    )
    bench.add_argument("--out", default="bench/results.json")

    admin_commands.add_tenancy_commands(sub, common)
    lifecycle_commands.add_erase_command(sub, common)
    topics.add_topics_commands(sub, common)
    add_errors_commands(sub, common)
    add_notify_commands(sub, common)
    dlq_commands.add_dlq_commands(sub, common)
    manage_commands.add_manage_commands(sub, common, serving)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as err:
        print(f"forgeline: bad setting: {err}", file=sys.stderr)
        return 2
    command = args.command
    if command in ("up", "processors", "process"):
        from services.admin import admin_exposure_problem

        exposure = admin_exposure_problem(settings.admin_host, settings.admin_key.reveal())
        if exposure:
            print(f"forgeline: bad setting: {exposure}", file=sys.stderr)
            return 2
    if command == "up":
        from services.supervisor.up import run_up

        configure_logging("supervisor", settings.log_level)
        return run_up(settings)
    if command == "gateway":
        from services.gateway.main import run_gateway

        configure_logging("gateway", settings.log_level)
        run_gateway(settings)
        return 0
    if command in ("processors", "process"):
        from services.supervisor.processors import PROCESSORS, run_processors

        names = (settings.processors or PROCESSORS) if command == "processors" else (args.name,)
        configure_logging("processors" if command == "processors" else args.name, settings.log_level)
        return asyncio.run(run_processors(settings, names))
    if command == "migrate":
        return admin_commands.migrate_command(settings)
    if command == "bootstrap":
        return admin_commands.bootstrap_command(settings)
    if command == "bench":
        from services.bench.run import run_bench

        run_bench(args.quick, Path(args.out), only=args.only)
        return 0
    if command == "export":
        from services.exporter.backfill import backfill_command

        return backfill_command(settings, args.kind, args.since, args.until, args.out, args.gzip, args.dsn,
                                args.admin_url)  # fmt: skip
    if command == "errors":
        return errors_command(settings, args)
    if command == "notify":
        return notify_command(settings, args)
    if command == "dlq":
        return dlq_commands.dlq_command(settings, args)
    if command == "console":
        from services.console.main import run_console

        configure_logging("console", settings.log_level)
        run_console(settings)
        return 0
    if command in ("admin-keys", "users"):
        return manage_commands.manage_command(settings, args)
    if command == "sql":
        return admin_commands.sql_command(settings, args.query, args.format, args.admin_url, args.output)
    if command == "erase":
        return lifecycle_commands.erase_command(settings, args)
    if command == "projects" and args.action == "retention":
        return lifecycle_commands.retention_command(settings, args)
    if command == "topics":
        return topics.topics_command(settings, args)
    return admin_commands.tenancy_command(settings, args)


if __name__ == "__main__":
    sys.exit(main())
