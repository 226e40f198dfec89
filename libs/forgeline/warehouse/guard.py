"""What the admin endpoint's SQL (`forgeline sql`, exports) may run.

One read-only statement — SELECT/WITH/UNION, DESCRIBE, EXISTS, SHOW TABLES|DATABASES|CREATE,
EXPLAIN of a SELECT — that reaches no file, URL or other server. Two layers, both decided
by the warehouse itself rather than by a prefix of the text:

1. The analysts' session runs with ``readonly=1`` (set once on that connection, so a
   ``SETTINGS readonly=0`` in a query cannot lift it): ClickHouse refuses writes, DDL,
   SET/SETTINGS, and every table function that needs a source grant (file, url, s3,
   remote, mysql…), also chDB's file-system database (``FROM "/etc/passwd"``).
2. Before the statement runs, the server parses the exact text with ``EXPLAIN AST`` and
   :func:`check_ast` walks the tree: the statement kind, every table function (an
   allowlist), functions that read the server's files (``file()`` is a scalar function
   too, and readonly does not stop it, nor ``DESCRIBE file(…)``), the databases named,
   SETTINGS, FORMAT and INTO OUTFILE clauses.

Two things are refused from the raw text, before the server sees anything, because the
server would act on them while merely parsing: a ``;`` (chDB runs every statement of a
string, so ``EXPLAIN AST SELECT 1; DROP …`` would drop) and the words OUTFILE/INFILE
(the embedded client writes ``INTO OUTFILE`` itself, even under readonly).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from forgeline.warehouse.port import WarehouseError

# Table functions that compute rows and read nothing outside the query.
ALLOWED_TABLE_FUNCTIONS = ("numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateSeries",
                           "values", "view", "null")  # fmt: skip
_ALLOWED_TABLE_FUNCTIONS = frozenset(name.lower() for name in ALLOWED_TABLE_FUNCTIONS)
# Scalar functions that read the server's files (introspection ones are also off by default).
REFUSED_FUNCTIONS = frozenset({"file", "addresstoline", "addresstolinewithinlines", "addresstosymbol", "demangle"})
# Statement kinds, by the root node of their AST.
ALLOWED_ROOTS = frozenset(
    {"SelectWithUnionQuery", "DescribeQuery", "ExistsTableQuery", "ShowTables", "ShowCreateTableQuery", "Explain"}
)
ALLOWED_EXPLAINS = frozenset(
    {"EXPLAIN", "EXPLAIN AST", "EXPLAIN SYNTAX", "EXPLAIN QUERY TREE", "EXPLAIN PLAN", "EXPLAIN PIPELINE",
     "EXPLAIN ESTIMATE"}
)  # fmt: skip
# Output formats: text renderings only (no schema files, no binary blobs in a terminal).
OUTPUT_FORMATS = {
    name.lower(): name
    for name in (
        "TabSeparated", "TabSeparatedRaw", "TabSeparatedWithNames", "TabSeparatedWithNamesAndTypes",
        "TSV", "TSVRaw", "TSVWithNames", "TSVWithNamesAndTypes",
        "CSV", "CSVWithNames", "CSVWithNamesAndTypes",
        "JSON", "JSONStrings", "JSONCompact", "JSONCompactStrings", "JSONColumns", "JSONCompactColumns",
        "JSONEachRow", "JSONStringsEachRow", "JSONCompactEachRow", "JSONCompactEachRowWithNames",
        "JSONCompactEachRowWithNamesAndTypes", "JSONLines", "NDJSON", "JSONObjectEachRow",
        "Pretty", "PrettyCompact", "PrettyCompactMonoBlock", "PrettyNoEscapes", "PrettyCompactNoEscapes",
        "PrettyMonoBlock", "PrettySpace", "PrettySpaceNoEscapes",
        "Vertical", "Markdown", "Values", "XML", "Null",
    )
}  # fmt: skip
# Binary output formats: bytes for a file (`forgeline sql --output FILE`), never a terminal.
# None needs a schema file (Protobuf and CapnProto do: not offered).
BINARY_FORMATS = ("Parquet", "Arrow", "ArrowStream", "ORC", "Avro", "Native", "RowBinary",
                  "RowBinaryWithNames", "RowBinaryWithNamesAndTypes", "MsgPack")  # fmt: skip
OUTPUT_FORMATS.update({name.lower(): name for name in BINARY_FORMATS})


def is_binary_format(fmt: str) -> bool:
    return OUTPUT_FORMATS.get(fmt.strip().lower()) in BINARY_FORMATS


STATEMENT_KINDS = "SELECT/WITH, DESCRIBE, EXISTS, SHOW TABLES|DATABASES|CREATE TABLE or EXPLAIN of a SELECT"

_CHILDREN = re.compile(r" \(children \d+\)$")


class QueryRefused(WarehouseError):
    """The statement is not one the admin endpoint runs; the message names the construct."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


class QuerySyntaxError(WarehouseError):
    """The warehouse cannot parse the statement; the message points into the caller's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


_POSITION = re.compile(r"\bposition (\d+)")
_LINE_ONE_COL = re.compile(r"\(line 1, col (\d+)\)")
_EXCEPTION_NOISE = re.compile(r"^Code: \d+\. DB::Exception: (Syntax error: )?|\s*\(SYNTAX_ERROR\)[^)]*$")


def syntax_error(message: str, prefix: str) -> QuerySyntaxError:
    """ClickHouse's syntax error for ``prefix + statement``, with positions in the statement."""
    shift = len(prefix)

    def position(match: re.Match[str]) -> str:
        return f"position {max(int(match.group(1)) - shift, 1)}"

    def column(match: re.Match[str]) -> str:
        return f"(line 1, col {max(int(match.group(1)) - shift, 1)})"

    text = _EXCEPTION_NOISE.sub("", message.strip())
    return QuerySyntaxError(_LINE_ONE_COL.sub(column, _POSITION.sub(position, text)).strip())


@dataclass(frozen=True)
class Catalog:
    """What the server knows, lower-cased: for names that are only table functions, and
    the databases a query must not name."""

    table_functions: frozenset[str]
    scalar_functions: frozenset[str]
    databases: frozenset[str]


def output_format(fmt: str) -> str:
    """``fmt`` spelled as ClickHouse spells it, if it is an allowed output format."""
    canonical = OUTPUT_FORMATS.get(fmt.strip().lower())
    if canonical is None:
        raise QueryRefused(
            f"output format {fmt[:40]!r} is not allowed; use one of {', '.join(OUTPUT_FORMATS.values())}"
        )
    return canonical


def statement_of(sql: str) -> str:
    """The one statement in ``sql`` (trailing ';' dropped); refused before any parsing."""
    statement = sql.strip()
    while statement.endswith(";"):
        statement = statement[:-1].rstrip()
    if not statement:
        raise QueryRefused("empty query")
    if ";" in statement:
        # Not even inside a string or a comment: the lexers of chDB and of this check
        # would have to agree exactly on where those end, and chDB runs every statement.
        raise QueryRefused("one statement at a time: ';' may only end the query (in a string, write char(59))")
    if "\x00" in statement:
        raise QueryRefused("the query holds a NUL character")
    lowered = statement.lower()
    for word, clause in (("outfile", "INTO OUTFILE"), ("infile", "FROM INFILE")):
        if word in lowered:
            raise QueryRefused(f"{clause} is not allowed (the word {word.upper()} may not appear in a query)")
    return statement


def explain_sql(statement: str, fmt: str) -> str:
    """The ``EXPLAIN AST`` of exactly what :func:`run_sql` runs, its own output pinned to TSV."""
    return f"EXPLAIN AST {run_sql(statement, fmt)}\nFORMAT TabSeparated"


def run_sql(statement: str, fmt: str) -> str:
    return f"{statement}\nFORMAT {fmt}"


def check_ast(explained: str, fmt: str, catalog: Catalog, database: str) -> None:
    """Refuse the statement whose ``EXPLAIN AST`` (TabSeparated rows) is ``explained``.

    The dump is one line per node, indented one space per level. Aliases are printed raw,
    so a quoted alias holding a newline adds lines of the attacker's choosing — but it
    cannot remove or change the real lines (kind and name come before the alias), and
    every rule below refuses on a line, so an added line can only refuse more.
    """
    lines = [line for line in explained.split("\n") if line.strip()]
    if not lines:
        raise QueryRefused("the warehouse returned no syntax tree for the query")
    allowed_databases = {database, "system", "information_schema", "INFORMATION_SCHEMA"}
    denied_databases = catalog.databases - {name.lower() for name in allowed_databases}
    root_kind, _, root_rest = lines[0].partition(" ")
    _check_root(root_kind, _CHILDREN.sub("", root_rest), lines, allowed_databases, fmt, database)
    for index, line in enumerate(lines):
        stripped = line.lstrip(" ")
        depth = len(line) - len(stripped)
        kind, _, rest = stripped.partition(" ")
        name = rest.split(" ", 1)[0]
        if kind == "Set":
            raise QueryRefused("SETTINGS clauses are not allowed (queries here run read-only, with fixed settings)")
        if kind == "Literal" and depth == 1:
            raise QueryRefused("INTO OUTFILE is not allowed")
        if kind == "Function":
            _check_function(name, catalog, table_position=_after_table_expression(lines, index, depth))
        elif kind == "TableIdentifier":
            db, dot, _ = name.partition(".")
            if dot and db not in allowed_databases:
                raise _database_refused(db, database)
        elif kind == "Identifier":
            db = name.partition(".")[0]
            if "." in name and db.lower() in denied_databases:
                raise _database_refused(db, database)


def check_statement_kind(explained: str) -> None:
    """Refuse a statement kind other than :data:`ALLOWED_ROOTS` (the first line of its tree)."""
    kind = explained.lstrip("\n").split("\n", 1)[0].split(" ", 1)[0]
    if kind not in ALLOWED_ROOTS:
        raise QueryRefused(f"read-only: only {STATEMENT_KINDS} statements run here, not {_statement_name(kind)}")


def _check_root(kind: str, rest: str, lines: list[str], allowed_databases: set[str], fmt: str, database: str) -> None:
    check_statement_kind(lines[0])
    if kind == "Explain":
        if rest not in ALLOWED_EXPLAINS:
            raise QueryRefused(f"{rest[:40]} is not allowed; EXPLAIN [AST|SYNTAX|QUERY TREE|PLAN|PIPELINE|ESTIMATE]")
        first = lines[1].strip().split(" ", 1)[0] if len(lines) > 1 else ""
        if first == "Set":
            raise QueryRefused("EXPLAIN options (header=1, actions=1…) are not allowed")
        if first != "SelectWithUnionQuery":
            raise QueryRefused(f"read-only: EXPLAIN runs here only for a SELECT, not {_statement_name(first)}")
    elif kind in ("ExistsTableQuery", "ShowCreateTableQuery"):
        db = rest.split(" ", 1)[0]
        if db and db not in allowed_databases:
            raise _database_refused(db, database)
    elif kind == "ShowTables":
        # SHOW TABLES FROM db: the database, then our FORMAT, as Identifier children.
        named = [line.strip().split(" ", 1)[1] for line in lines[1:] if line.startswith(" Identifier ")]
        for db in named:
            if db != fmt and db not in allowed_databases:
                raise _database_refused(db, database)


def _check_function(name: str, catalog: Catalog, table_position: bool) -> None:
    lowered = name.lower()
    if table_position:
        if lowered not in _ALLOWED_TABLE_FUNCTIONS:
            raise QueryRefused(
                f"table function {name}() is not allowed (only {', '.join(ALLOWED_TABLE_FUNCTIONS)}): "
                "queries here read the warehouse, never files, URLs or other servers"
            )
        return
    if lowered in REFUSED_FUNCTIONS:
        raise QueryRefused(f"function {name}() is not allowed: it reads the server's files")
    if lowered in catalog.table_functions and lowered not in catalog.scalar_functions:
        if lowered not in _ALLOWED_TABLE_FUNCTIONS:
            raise QueryRefused(f"table function {name}() is not allowed")


def _after_table_expression(lines: list[str], index: int, depth: int) -> bool:
    """Whether line ``index`` is the first child of a TableExpression (a FROM/JOIN item).

    A TableExpression line carries no alias, so nothing can be injected between it and
    its first child."""
    if index == 0:
        return False
    previous = lines[index - 1]
    return previous.strip().split(" ", 1)[0] == "TableExpression" and len(previous) - len(previous.lstrip(" ")) == (
        depth - 1
    )


def _database_refused(db: str, database: str) -> QueryRefused:
    return QueryRefused(f"database {db!r} is not readable here; use {database}, system or information_schema")


def _statement_name(kind: str) -> str:
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", kind.removesuffix("Query")).upper()
    return words or "an empty statement"
