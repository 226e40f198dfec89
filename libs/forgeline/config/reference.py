"""The settings reference (docs/settings.md), generated from the ``Settings`` dataclass.

Every field is one row: its variable (``FORGELINE_`` + the field name in capitals, which
``Settings.from_env`` reads), its default and what the source says about it (the comment on
its line, or the comment block right above it). A test compares docs/settings.md with this
output, so a new setting cannot go undocumented. Regenerate with:

    .venv/bin/python -m forgeline.config.reference > docs/settings.md
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import MISSING, fields
from inspect import getsource
from pathlib import Path

import forgeline.config as config
from forgeline.config import LOGISTER_ALIASES, Secret, Settings, variable
from forgeline.schemas import forge, logister, msgpack

# Limits fixed in the code (not settings), from the constants that enforce them.
FIXED_LIMITS: tuple[tuple[str, str], ...] = (
    ("Logister `message`", f"{logister._MAX_MESSAGE:,} characters (422 above)"),
    ("Logister short fields (ids, names, environment, release, level)", f"{logister._MAX_SHORT} characters"),
    ("Forge Logger events per `POST /v1/ingest/events`", f"{forge.MAX_BATCH_EVENTS}"),
    ("Forge Logger `eventIds` / `uploadIds` per report", f"{forge.MAX_REFERENCES:,}"),
    ("Forge Logger files per `POST /v1/ingest/uploads`", f"{forge.MAX_UPLOAD_FILES}"),
    ("Upload file name", f"{forge.MAX_FILENAME_BYTES} bytes"),
    ("MessagePack realtime `positions`", f"{msgpack.MAX_POSITIONS:,} numbers"),
)


# Notes for settings the source leaves uncommented.
EXTRA_NOTES: dict[str, str] = {
    "data_dir": "Where the embedded mode keeps the bus, the warehouse, uploads, keys and the tokens file.",
    "host": "The gateway's listen address (`--host`).",
    "port": "The gateway's port (`--port`, `make run PORT=…`).",
    "admin_port": "The processors' admin port: SQL, `/ready`, `/metrics` (`--admin-port`).",
    "admin_key": "Bearer key of the admin port; required when it listens beyond loopback (16+ characters).",
    "console_port": "The console's port (`--console-port`).",
    "warehouse_dsn": "`http://…` for a ClickHouse server; empty: chDB under the data directory.",
    "partitions": "Partitions per topic the embedded bus creates.",
    "log_level": "`debug`, `info`, `warning` or `error`.",
    "auth_failure_period_seconds": "The window of the failed-authentication budget, per source address.",
    "max_body_bytes": "A request body as sent (413 above).",
    "max_inflated_bytes": "A body once decompressed (413 above).",
    "max_check_in_body_bytes": "A Logister check-in body.",
    "max_batch_lines": "Events in one NDJSON batch.",
    "max_json_depth": "Nesting of a JSON or MessagePack document (400 deeper).",
    "publish_timeout_seconds": "How long the gateway waits for the bus to acknowledge (503 after).",
    "token_refresh_seconds": "How often each gateway reads new tokens, revocations and archived projects.",
    "forge_rate_limit_requests": "Forge Logger requests per token per window (429 above).",
    "max_msgpack_body_bytes": "One MessagePack request body.",
    "max_msgpack_items": "Events in one MessagePack batch.",
    "upload_url_ttl_seconds": "How long a signed upload URL stays valid.",
    "max_upload_bytes": "Largest upload per attachment type (`type=bytes,…`).",
    "writer_batch_rows": "Rows per warehouse insert.",
    "writer_flush_seconds": "Longest a row waits before its insert.",
    "trusted_proxies": "Addresses (CIDRs) whose X-Forwarded-For is believed (docs/security.md).",
}


def _default(value: object, name: str = "") -> str:
    if isinstance(value, Secret):  # a secret's default is never shown, only whether there is one
        return "(set)" if value else "(empty)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, tuple):
        if not value:
            return "(none)"
        if all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return "`" + ",".join(f"{k}={_size(v)}" for k, v in value) + "`"
        return "`" + ",".join(str(item) for item in value) + "`"
    if isinstance(value, int) and not isinstance(value, bool):
        sized = name.endswith("_bytes") and value >= 1024 and value % 1024 == 0
        return f"`{value}`" + (f" ({_size(value)})" if sized else "")
    if value == "":
        return "(empty)"
    return f"`{value}`"


def _size(value: object) -> str:
    if not isinstance(value, int) or value < 1024 or value % 1024:
        return str(value)
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value % factor == 0:
            return f"{value // factor} {unit}"
    return str(value)


def _notes() -> dict[str, str]:
    """Field name → its comment: the one on its line, else the block right above it."""
    source = getsource(config)
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.add(token.start[0])
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    notes: dict[str, str] = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        line = node.lineno
        end = node.end_lineno or line
        own = [comments[n] for n in range(line, end + 1) if n in comments]
        if not own:
            n = line - 1
            while n in comments and n not in code_lines:
                own.insert(0, comments[n])
                n -= 1
        notes[node.target.id] = " ".join(own).replace("|", "\\|")
    return notes


def render() -> str:
    notes = _notes()
    aliases = {ours: theirs for ours, theirs in LOGISTER_ALIASES.items()}
    out = [
        "# Settings reference",
        "",
        "Every setting is an environment variable, read once at start; a bad value stops the",
        "service with a message naming the variable. Command-line flags (`--port`, `--data-dir`…)",
        "win over the variables. This page is generated from the settings themselves",
        "(`python -m forgeline.config.reference`); a test keeps it current.",
        "",
        "| variable | default | notes |",
        "|---|---|---|",
    ]
    for f in fields(Settings):
        factory = f.default_factory
        default: object = f.default if f.default is not MISSING else factory() if callable(factory) else None
        name = variable(f.name)
        note = notes.get(f.name, "") or EXTRA_NOTES.get(f.name, "")
        if name in aliases:
            note = (note + " " if note else "") + f"Also read from `{aliases[name]}`."
        out.append(f"| `{name}` | {_default(default, f.name)} | {note} |")
    out += [
        "",
        "## Limits fixed in the code",
        "",
        "| what | limit |",
        "|---|---|",
        *(f"| {what} | {limit} |" for what, limit in FIXED_LIMITS),
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
