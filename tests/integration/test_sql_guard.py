"""What `forgeline sql` may run, against real chDB: every refused construct, the allowed ones.

The warehouse is the one the processors open (``ClickHouseWarehouse`` on a chDB directory),
and the admin endpoint on top of it; nothing is mocked. Each refused case also proves its
effect did not happen: no host file's content comes back, no OUTFILE is created, no HTTP
request reaches a listening server, no table changes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from forgeline.warehouse.client import ClickHouseWarehouse
from forgeline.warehouse.guard import QueryRefused, QuerySyntaxError
from forgeline.warehouse.port import WarehouseError
from services.admin import admin_app

# One chDB engine per process: these tests share it and run on one worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("chdb-sql-guard")]

SECRET = "forgeline-secret-token-0123456789"


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"a\n")

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Env:
    warehouse: ClickHouseWarehouse
    root: Path
    secret_file: Path
    http_port: int
    hits: list[str]

    def outfile(self, name: str) -> Path:
        return self.root / "out" / name


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("sqlguard")
    (root / "out").mkdir()
    # Stands for the data dir's bootstrap-tokens.json: a file the server process can read.
    secret_file = root / "bootstrap-tokens.json"
    secret_file.write_text(orjson.dumps({"logister_token": SECRET}).decode())
    hits: list[str] = []
    handler = type("Recorder", (_Recorder,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    warehouse = ClickHouseWarehouse(f"chdb://{root / 'warehouse'}")
    warehouse.command(
        "CREATE TABLE IF NOT EXISTS forgeline.items (id UInt64, name String, version UInt64) "
        "ENGINE = ReplacingMergeTree(version) ORDER BY id"
    )
    warehouse.insert("items", [[1, "sword", 1], [1, "sword+1", 2], [2, "shield", 1]], ["id", "name", "version"])
    try:
        yield Env(warehouse, root, secret_file, server.server_address[1], hits)
    finally:
        warehouse.close()
        server.shutdown()
        server.server_close()


def refused(env: Env, sql: str, fmt: str = "TabSeparated") -> str:
    """The refusal's message; fails the test if the statement ran."""
    with pytest.raises(WarehouseError) as caught:
        out = env.warehouse.query_formatted(sql, fmt)
        pytest.fail(f"ran: {sql!r} -> {out[:200]!r}")
    assert not caught.value.retriable, caught.value
    return str(caught.value)


def rows(env: Env) -> int:
    """Logical rows of the table (a background merge may fold the replaced row at any time)."""
    return int(env.warehouse.query_formatted("SELECT count() FROM forgeline.items FINAL", "TSV"))


# --- files ------------------------------------------------------------------------------

FILE_READS = [
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM file('/etc/passwd')",
    "SeLeCt * FrOm FiLe('/etc/passwd', 'LineAsString')",
    "SELECT * FROM `file`('/etc/passwd', 'LineAsString')",
    "SELECT * FROM `fil\\x65`('/etc/passwd', 'LineAsString')",
    "SELECT /* a comment */ * FROM /* another */ file /* here */ ('/etc/passwd', 'LineAsString')",
    "SELECT * FROM file('/etc/passwd', 'LineAsString') -- trailing comment",
    "SELECT * FROM (SELECT * FROM (SELECT * FROM file('/etc/passwd', 'LineAsString')))",
    "SELECT 1 WHERE 'root' IN (SELECT * FROM file('/etc/passwd', 'LineAsString'))",
    "WITH p AS (SELECT * FROM file('/etc/passwd', 'LineAsString')) SELECT * FROM p",
    "SELECT 1 UNION ALL SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM forgeline.items AS i JOIN file('/etc/passwd', 'LineAsString') AS f ON 1",
    "SELECT * FROM view(SELECT * FROM file('/etc/passwd', 'LineAsString'))",
    "SELECT * FROM fileCluster('default', '/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/passwd')",
    "SELECT FILE('/etc/passwd')",
    "SELECT length(file('/etc/passwd'))",
    "DESCRIBE file('/etc/passwd', 'LineAsString')",
    "DESC TABLE file('/etc/passwd')",
    "EXPLAIN SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "EXPLAIN SYNTAX SELECT file('/etc/passwd')",
    'SELECT * FROM "/etc/passwd"',
    "SELECT * FROM default.`/etc/passwd`",
    "SELECT 1 IN default.`/etc/passwd`",
    "EXISTS default.`/etc/passwd`",
    "SHOW CREATE TABLE default.`/etc/passwd`",
    "SELECT * FROM merge('default', '.*')",
    "SELECT * FROM filesystem('/etc')",
]


@pytest.mark.parametrize("sql", FILE_READS)
def test_host_files_are_never_read(env: Env, sql: str) -> None:
    message = refused(env, sql)
    assert "root:" not in message
    assert "/bin/" not in message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM file('{path}', 'LineAsString')",
        "SELECT * FROM file('{path}', 'JSONEachRow')",
        "SELECT file('{path}')",
        "SELECT * FROM file('{dir}/*.json', 'LineAsString')",
        "SELECT * FROM `default`.`{path}`",
    ],
)
def test_the_data_dir_tokens_never_come_back(env: Env, sql: str) -> None:
    message = refused(env, sql.format(path=env.secret_file, dir=env.secret_file.parent))
    assert SECRET not in message


def test_the_read_only_session_alone_refuses_table_functions_and_writes(env: Env) -> None:
    """Layer one holds without layer two: the session analysts' queries run on refuses
    file(), url(), writes and setting changes by itself (ClickHouse's readonly=1)."""
    reader = env.warehouse._reader  # the session query_formatted uses, without the syntax-tree check
    for sql in (
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        f"SELECT * FROM url('http://127.0.0.1:{env.http_port}/x', 'LineAsString')",
        f"SELECT * FROM s3('http://127.0.0.1:{env.http_port}/bucket/k.csv', 'CSV')",
        f"SELECT * FROM remote('127.0.0.1:{env.http_port}', system.one)",
        "SELECT * FROM default.`/etc/passwd`",
        "INSERT INTO forgeline.items VALUES (9, 'x', 1)",
        "DROP TABLE forgeline.items",
        "SET readonly = 0",
        "SELECT 1 SETTINGS readonly = 0",
    ):
        with pytest.raises(Exception, match="(?i)readonly") as caught:
            reader.raw_query(sql)
        assert "root:" not in str(caught.value)
    assert env.hits == []
    assert rows(env) == 2


# --- writes to files ---------------------------------------------------------------------

OUTFILES = [
    "SELECT * FROM forgeline.items INTO OUTFILE '{path}'",
    "select * from forgeline.items into outfile '{path}'",
    "SELECT * FROM forgeline.items INTO /* c */ OutFile '{path}' TRUNCATE",
    "SELECT * FROM forgeline.items INTO OUTFILE '{path}' APPEND",
    "SELECT * FROM forgeline.items INTO OUTFILE '{path}' AND STDOUT",
    "SELECT * FROM forgeline.items INTO OUTFILE '{path}' COMPRESSION 'gzip'",
    "EXPLAIN SELECT 1 INTO OUTFILE '{path}'",
    "SHOW TABLES INTO OUTFILE '{path}'",
]


@pytest.mark.parametrize("sql", OUTFILES)
def test_into_outfile_never_creates_the_file(env: Env, sql: str) -> None:
    path = env.outfile(f"out-{abs(hash(sql))}.tsv")
    message = refused(env, sql.format(path=path))
    assert "OUTFILE" in message
    assert not path.exists()


# --- the network -------------------------------------------------------------------------

NETWORK = [
    "SELECT * FROM url('http://127.0.0.1:{port}/url', 'LineAsString')",
    "SELECT * FROM URL('http://127.0.0.1:{port}/URL', 'LineAsString')",
    "DESCRIBE url('http://127.0.0.1:{port}/describe', 'LineAsString')",
    "SELECT * FROM urlCluster('default', 'http://127.0.0.1:{port}/cluster', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:{port}/bucket/key.csv', 'CSV')",
    "SELECT * FROM s3Cluster('default', 'http://127.0.0.1:{port}/bucket/k.csv', 'CSV')",
    "SELECT * FROM gcs('http://127.0.0.1:{port}/bucket/key.csv', 'CSV')",
    "SELECT * FROM hdfs('hdfs://127.0.0.1:{port}/x', 'CSV')",
    "SELECT * FROM remote('127.0.0.1:{port}', system.one)",
    "SELECT * FROM remoteSecure('127.0.0.1:{port}', system.one)",
    "SELECT * FROM cluster('default', system.one)",
    "SELECT * FROM clusterAllReplicas('default', system.one)",
    "SELECT * FROM mysql('127.0.0.1:{port}', 'db', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:{port}', 'db', 't', 'u', 'p')",
    "SELECT * FROM mongodb('127.0.0.1:{port}', 'db', 't', 'u', 'p', 'x String')",
    "SELECT * FROM redis('127.0.0.1:{port}', 'k', 'k String, v String')",
    "SELECT * FROM odbc('DSN=x', 't')",
    "SELECT * FROM jdbc('jdbc:mysql://127.0.0.1:{port}/db', 't')",
    "SELECT * FROM sqlite('/tmp/x.db', 't')",
    "SELECT * FROM azureBlobStorage('http://127.0.0.1:{port}/a', 'c', 'b.csv')",
    "SELECT * FROM deltaLake('http://127.0.0.1:{port}/bucket/t/')",
    "SELECT * FROM hudi('http://127.0.0.1:{port}/bucket/t/')",
    "SELECT * FROM iceberg('http://127.0.0.1:{port}/bucket/t/')",
    "SELECT * FROM input('a String')",
    "SELECT * FROM executable('x.sh', 'TSV', 'a String')",
    "SELECT * FROM python(x)",
    "SELECT * FROM dictionary('remote_dict')",
    "SELECT * FROM format(JSONEachRow, '{{\"a\": 1}}')",
    "EXPLAIN TABLE OVERRIDE mysql('127.0.0.1:{port}', 'db', 't', 'u', 'p') PARTITION BY x",
    "SELECT * FROM numbers(1) WHERE 1 IN (SELECT * FROM url('http://127.0.0.1:{port}/in', 'LineAsString'))",
]


@pytest.mark.parametrize("sql", NETWORK)
def test_table_functions_that_reach_out_are_refused(env: Env, sql: str) -> None:
    message = refused(env, sql.format(port=env.http_port))
    assert "not allowed" in message, message
    assert env.hits == []


# --- statements other than reads ---------------------------------------------------------

WRITES = {
    "INSERT INTO forgeline.items VALUES (3, 'bow', 1)": "INSERT",
    "INSERT INTO FUNCTION file('/tmp/x.tsv') SELECT 1": "INSERT",
    "ALTER TABLE forgeline.items DELETE WHERE 1": "ALTER",
    "ALTER TABLE forgeline.items UPDATE name = 'x' WHERE 1": "ALTER",
    "DROP TABLE forgeline.items": "DROP",
    "TRUNCATE TABLE forgeline.items": "TRUNCATE",
    "CREATE TABLE forgeline.x (a UInt8) ENGINE = Memory": "CREATE",
    "CREATE TABLE forgeline.x ENGINE = File(TSV, '/etc/passwd')": "CREATE",
    "RENAME TABLE forgeline.items TO forgeline.gone": "RENAME",
    "SYSTEM FLUSH LOGS": "SYSTEM",
    "SYSTEM SHUTDOWN": "SYSTEM",
    "KILL QUERY WHERE 1": "KILL",
    "SET readonly = 0": "SET",
    "ATTACH TABLE forgeline.y FROM '/tmp' (a UInt8) ENGINE = Memory": "ATTACH",
    "DETACH TABLE forgeline.items": "DETACH",
    "OPTIMIZE TABLE forgeline.items FINAL": "OPTIMIZE",
    "GRANT ALL ON *.* TO default": "GRANT",
    "USE default": "USE",
    "SHOW PROCESSLIST": "SHOW PROCESSLIST",
    "EXPLAIN PIPELINE INSERT INTO forgeline.items SELECT 1, 'x', 1": "INSERT",
}


@pytest.mark.parametrize("sql", list(WRITES))
def test_writes_and_admin_statements_are_refused(env: Env, sql: str) -> None:
    message = refused(env, sql)
    assert "read-only" in message or "not allowed" in message or "readonly" in message, message
    assert WRITES[sql] in message.upper(), message
    assert rows(env) == 2


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("SELECT 1; DROP TABLE forgeline.items", "one statement"),
        ("SELECT 1; SELECT 2;", "one statement"),
        ("SELECT ';'; DROP TABLE forgeline.items", "one statement"),
        ("SELECT 1 /* ; */", "one statement"),
        ("SELECT $$'$$; DROP TABLE forgeline.items; SELECT '", "one statement"),
        ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
        ("SELECT 1 SETTINGS readonly = 1", "SETTINGS"),
        ("SELECT 1 SETTINGS max_threads = 1", "SETTINGS"),
        ("SELECT * FROM file('/etc/passwd') SETTINGS readonly = 0", "SETTINGS"),
        ("EXPLAIN PLAN header = 1 SELECT 1", "EXPLAIN"),
        ("SELECT 1 FORMAT JSON", "FORMAT"),
        ("SELECT 1 FORMAT TabSeparated", "FORMAT"),
        ("", "empty"),
        (" ; ", "empty"),
    ],
)
def test_statement_tricks_are_refused(env: Env, sql: str, says: str) -> None:
    assert says in refused(env, sql)
    assert rows(env) == 2


def test_settings_in_a_query_never_lift_readonly(env: Env) -> None:
    refused(env, "SELECT 1 SETTINGS readonly = 0")
    refused(env, "SET readonly = 0")
    assert env.warehouse.query_formatted("SELECT getSetting('readonly')", "TSV") == b"1\n"
    refused(env, "INSERT INTO forgeline.items VALUES (4, 'axe', 1)")
    assert rows(env) == 2


@pytest.mark.parametrize("fmt", ["Template", "Protobuf", "CapnProto", "TSV\nFORMAT JSON", "x y"])
def test_output_formats_are_an_allowlist(env: Env, fmt: str) -> None:
    # Formats that read a schema or template file stay out; binary ones are for --output.
    assert "output format" in refused(env, "SELECT 1", fmt)


def test_binary_formats_render_bytes_for_a_file(env: Env) -> None:
    out = env.warehouse.query_formatted("SELECT id FROM forgeline.items FINAL ORDER BY id", "RowBinary")
    assert out == (1).to_bytes(8, "little") + (2).to_bytes(8, "little")
    assert env.warehouse.query_formatted("SELECT 1", "Parquet").startswith(b"PAR1")
    client = TestClient(admin_app(lambda: {}, env.warehouse))
    response = client.post("/query", json={"sql": "SELECT 1", "format": "parquet"})
    assert response.headers["content-type"] == "application/octet-stream"
    assert "file()" in refused(env, "SELECT * FROM file('/etc/passwd')", "Parquet")


def test_a_syntax_error_is_not_a_refusal_and_points_into_the_text(env: Env) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        env.warehouse.query_formatted("SELEC 1", "TSV")
    assert "position 7" in str(caught.value) and "EXPLAIN" not in str(caught.value)
    client = TestClient(admin_app(lambda: {}, env.warehouse))
    codes = {
        "SELEC 1": "syntax_error",
        "INSERT INTO forgeline.items VALUES (4, 'axe', 1)": "refused",
        "SELECT nope FROM forgeline.items": "query_error",
    }
    for sql, code in codes.items():
        response = client.post("/query", json={"sql": sql, "format": "TSV"})
        assert (response.status_code, response.json()["code"]) == (400, code), sql


# --- what runs ---------------------------------------------------------------------------

ALLOWED = {
    "SELECT id, name FROM forgeline.items FINAL ORDER BY id": "1\tsword+1\n2\tshield\n",
    "select id from items final order by id;": "1\n2\n",
    "  SELECT count() FROM forgeline.items FINAL ;; ": "2\n",
    "WITH best AS (SELECT id, max(version) AS v FROM forgeline.items GROUP BY id) SELECT sum(v) FROM best": "3\n",
    "SELECT id FROM forgeline.items FINAL WHERE id = 1 UNION ALL SELECT id FROM forgeline.items FINAL WHERE id = 2": (
        "1\n2\n"
    ),
    "SELECT id FROM (SELECT id FROM (SELECT id FROM forgeline.items FINAL)) WHERE id IN "
    "(SELECT id FROM forgeline.items WHERE name = 'shield')": "2\n",
    "SELECT /* items */ count() -- all of them\nFROM forgeline.items FINAL": "2\n",
    "SELECT name FROM system.tables WHERE database = 'forgeline'": "items\n",
    "SELECT count() > 0 FROM system.columns WHERE database = 'forgeline'": "1\n",
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'forgeline'": "items\n",
    "SHOW TABLES": "items\n",
    "SHOW TABLES FROM forgeline": "items\n",
    "DESCRIBE forgeline.items": None,
    "EXISTS TABLE forgeline.items": "1\n",
    "SHOW CREATE TABLE forgeline.items": None,
    "EXPLAIN SELECT count() FROM forgeline.items": None,
    "EXPLAIN AST SELECT 1": None,
    "SELECT sum(number) FROM numbers(10)": "45\n",
    "SELECT * FROM generate_series(1, 3)": "1\n2\n3\n",
    "SELECT * FROM values('a UInt8', 1, 2)": "1\n2\n",
    "SELECT format('{} {}', 'file', 'url')": "file url\n",
    "SELECT 'file(''/etc/passwd'')' AS text": "file(\\'/etc/passwd\\')\n",  # TSV escapes quotes
    "SELECT 1 AS `default.x`": "1\n",
}


@pytest.mark.parametrize("sql", list(ALLOWED))
def test_reads_of_the_warehouse_run(env: Env, sql: str) -> None:
    out = env.warehouse.query_formatted(sql, "TabSeparated").decode()
    if ALLOWED[sql] is not None:
        # Rows in the order the query fixes; UNION ALL fixes none, so lines compare as a multiset.
        expected = ALLOWED[sql]
        if "UNION ALL" in sql:
            assert sorted(out.splitlines()) == sorted(expected.splitlines())
        else:
            assert out == expected
    else:
        assert out.strip()


def test_a_semicolon_inside_a_string_is_refused_with_a_way_out(env: Env) -> None:
    assert "char(59)" in refused(env, "SELECT 'a; b'")
    assert env.warehouse.query_formatted("SELECT concat('a', char(59), ' b')", "TSV") == b"a; b\n"


@pytest.mark.parametrize("fmt", ["JSONEachRow", "jsoneachrow", "CSVWithNames", "PrettyCompact", "Vertical"])
def test_allowed_formats_render(env: Env, fmt: str) -> None:
    out = env.warehouse.query_formatted("SELECT id FROM forgeline.items FINAL ORDER BY id", fmt).decode()
    assert "1" in out and "2" in out


def test_a_quoted_alias_with_newlines_cannot_hide_a_table_function(env: Env) -> None:
    # EXPLAIN AST prints aliases raw: a newline in one adds lines of the caller's choosing.
    sql = "SELECT * FROM file('/etc/passwd', 'LineAsString') AS `x\n      TableIdentifier forgeline.items`"
    assert "file()" in refused(env, sql)
    sql = "SELECT 1 AS `a\n Identifier TabSeparated\nSelectWithUnionQuery`, file('/etc/passwd')"
    assert "file()" in refused(env, sql)


# --- through the admin endpoint ----------------------------------------------------------


def test_the_admin_endpoint_answers_400_naming_the_construct(env: Env) -> None:
    client = TestClient(admin_app(lambda: {}, env.warehouse))
    cases = {
        "SELECT * FROM file('/etc/passwd')": "file()",
        f"SELECT * FROM url('http://127.0.0.1:{env.http_port}/')": "url()",
        f"SELECT 1 INTO OUTFILE '{env.outfile('admin.tsv')}'": "OUTFILE",
        "DROP TABLE forgeline.items": "DROP",
        "SELECT 1; SELECT 2": "one statement",
        "SELECT 1 SETTINGS readonly = 0": "SETTINGS",
    }
    for sql, construct in cases.items():
        response = client.post("/query", json={"sql": sql, "format": "TSV"})
        assert response.status_code == 400, (sql, response.text)
        assert construct in response.json()["error"], (sql, response.text)
        assert "root:" not in response.text
    assert not env.outfile("admin.tsv").exists()
    assert env.hits == []
    ok = client.post("/query", json={"sql": "SELECT count() FROM forgeline.items FINAL", "format": "TSV"})
    assert (ok.status_code, ok.text) == (200, "2\n")


def test_the_admin_key_guards_the_query_endpoint(env: Env) -> None:
    key = "k" * 24
    client = TestClient(admin_app(lambda: {"writer": True}, env.warehouse, admin_key=key))
    body = {"sql": "SELECT 1", "format": "TSV"}
    wrong: list[list[tuple[bytes, bytes]]] = [
        [],
        [(b"authorization", b"Bearer wrong-key-wrong-key-wrong")],
        [(b"authorization", key.encode())],
        [(b"authorization", f"Basic {key}".encode())],
        [(b"authorization", f"Bearer {key}x".encode())],
        [(b"authorization", "Bearer \u00e9".encode())],
    ]
    for headers in wrong:
        response = client.post("/query", json=body, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.post("/query", json=body, headers={"Authorization": f"Bearer {key}"}).text == "1\n"
    assert client.post("/query", json=body, headers={"Authorization": f"bearer  {key} "}).text == "1\n"
    # Probes and Prometheus need no key.
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_query_refused_is_a_warehouse_error() -> None:
    assert issubclass(QueryRefused, WarehouseError)
    assert QueryRefused("x").retriable is False
