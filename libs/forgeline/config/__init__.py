"""Settings, read once at start from FORGELINE_* environment variables.

Logister's own variable names are accepted as aliases so that a Logister self-hoster's
environment works unchanged (seed logister-http-api.txt, "Rate limits"). When both are
set, the FORGELINE_* name wins. A bad value fails at start and names the variable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Ours → Logister's name for the same setting.
LOGISTER_ALIASES: dict[str, str] = {
    "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "LOGISTER_PUBLIC_API_RATE_LIMIT_REQUESTS",
    "FORGELINE_LOGISTER_RATE_LIMIT_PERIOD_SECONDS": "LOGISTER_PUBLIC_API_RATE_LIMIT_PERIOD_SECONDS",
    "FORGELINE_AUTH_FAILURE_RATE_LIMIT_REQUESTS": "LOGISTER_PUBLIC_API_AUTH_FAILURE_RATE_LIMIT_REQUESTS",
}


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path(".forgeline")
    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int = 8081
    # The processors' admin port (SQL over the warehouse) listens here, never on `host`;
    # anywhere but loopback it needs admin_key (sent as `Authorization: Bearer …`).
    admin_host: str = "127.0.0.1"
    admin_key: str = field(default="", repr=False)
    console_host: str = "127.0.0.1"  # The console's listen address (web UI and /api/manage/v1; docs/console.md).
    console_port: int = 8082
    # Where the console reads the warehouse: a processors admin port ("" = admin_host:admin_port).
    console_admin_url: str = ""
    # Signs console session cookies; every replica needs the same ("" = generated into data_dir/console.key).
    console_secret: str = field(default="", repr=False)
    console_secure_cookies: bool = False  # Mark session cookies Secure: set when the console is served over HTTPS.
    # "" means: derive from data_dir (embedded defaults).
    bus_url: str = ""
    warehouse_dsn: str = ""
    partitions: int = 4
    log_level: str = "info"

    # Gateway limits.
    logister_rate_limit_requests: int = 1200
    logister_rate_limit_period_seconds: int = 60
    auth_failure_rate_limit_requests: int = 120
    auth_failure_period_seconds: int = 60
    max_body_bytes: int = 1024 * 1024
    max_inflated_bytes: int = 4 * 1024 * 1024
    max_check_in_body_bytes: int = 64 * 1024
    # logister-python splits a batch above 2 MiB gzip / 8 MiB raw: these caps take its
    # largest batches whole, and anything larger gets the 413 that makes it split.
    max_batch_body_bytes: int = 4 * 1024 * 1024
    max_batch_inflated_bytes: int = 16 * 1024 * 1024
    max_batch_lines: int = 1000
    max_json_depth: int = 32
    publish_timeout_seconds: float = 2.0
    # Concurrent requests one gateway worker serves before answering 503 (load shedding).
    max_in_flight: int = 1024
    # Idle keep-alive connections are kept longer than clients' own pools keep them (httpx: 5 s),
    # so a client never sends a request on a connection the server is closing at that moment.
    keep_alive_seconds: int = 75
    # Slow clients (docs/security.md, "Who the client is; slow clients"): the request line and
    # headers must arrive within header_read_timeout_seconds; a body within
    # body_read_timeout_seconds plus one second per body_min_bytes_per_second received, with no
    # gap over body_idle_timeout_seconds. A body still arriving after slow_body_after_seconds is
    # "slow": at most max_slow_bodies of those at once, max_slow_bodies_per_client per source.
    header_read_timeout_seconds: float = 10.0
    body_read_timeout_seconds: float = 30.0
    body_idle_timeout_seconds: float = 10.0
    body_min_bytes_per_second: int = 16 * 1024
    slow_body_after_seconds: float = 1.0
    max_slow_bodies: int = 256
    max_slow_bodies_per_client: int = 16
    token_refresh_seconds: float = 1.0

    # Game telemetry (Forge Logger, MessagePack, uploads).
    forge_rate_limit_requests: int = 6000
    forge_rate_limit_period_seconds: int = 60
    # The MessagePack API's documented limit ("Response Codes"): 10 requests/second per source IP.
    msgpack_rate_limit_requests: int = 10
    msgpack_rate_limit_period_seconds: int = 1
    max_msgpack_body_bytes: int = 4 * 1024 * 1024
    max_msgpack_items: int = 1000
    max_model_bytes: int = 64 * 1024 * 1024  # POST /api/models, the whole multipart body
    # "" means: a local directory under data_dir, signed by the gateway (embedded default).
    blob_store_url: str = ""
    # HMAC key of the local blob store's upload URLs; "" means: generated once into data_dir.
    blob_signing_key: str = ""
    public_url: str = ""  # base of the upload URLs handed to clients; "" = http://host:port
    # Credentials of an s3:// blob store (kept out of the URL so the URL can be logged).
    s3_access_key: str = field(default="", repr=False)
    s3_secret_key: str = field(default="", repr=False)
    upload_url_ttl_seconds: int = 900
    max_upload_bytes: tuple[tuple[str, int], ...] = (
        ("screenshot", 20 * 1024 * 1024),
        ("video", 500 * 1024 * 1024),
        ("save_state", 100 * 1024 * 1024),
        ("log_bundle", 100 * 1024 * 1024),
        ("other", 50 * 1024 * 1024),
    )

    # Processors.
    writer_batch_rows: int = 5000
    writer_flush_seconds: float = 1.0
    # Stream processors: a trace is summarized after this long without a new span; a
    # monitor is missed at last check-in + interval + margin (stream time); the monitor
    # evaluator sends a stream-clock tick through the bus this often (each tick is one record
    # per raw.logister partition and partitions² typed.checkins records: keep it coarse).
    span_quiet_seconds: float = 5.0
    monitor_margin_seconds: float = 60.0
    monitor_tick_seconds: float = 5.0
    # Records per normalizer poll → produce (acks) → commit round trip. Polls return what is
    # there, so this only matters with a backlog, where 5000 did 1.4× the records/s of 1000
    # (docs/performance.md, "scale-out").
    normalizer_batch: int = 5000
    # Dead letters: a record that fails is dead-lettered and the next one processed; but when
    # more than dlq_max_ratio of a processor's last dlq_window_records records failed (once at
    # least dlq_min_records were seen) it stops, uncommitted: a bad deploy, not bad input.
    dlq_max_ratio: float = 0.5
    dlq_min_records: int = 100
    dlq_window_records: int = 1000
    # Which processors `forgeline processors` (and so `forgeline up`) runs; () = all of them.
    # Leave one out to run it as its own service (`forgeline process exporter`).
    processors: tuple[str, ...] = field(default=())
    # NDJSON exporter (services/exporter). "" means: a directory under data_dir.
    export_url: str = ""
    export_gzip: bool = False
    export_max_rows: int = 100_000  # buffered rows (all partitions) that force a flush
    export_max_bytes: int = 64 * 1024 * 1024  # buffered NDJSON bytes that force a flush
    export_flush_seconds: float = 60.0
    # POST /api/export: at most one flush request per window per gateway (the rest coalesce).
    export_request_interval_seconds: float = 1.0
    export_requires_secret_key: bool = False
    # Days each kind of data is kept (warehouse rows, uploads, exports: docs/lifecycle.md), unless
    # FORGELINE_RETENTION or the project's own days (`forgeline projects retention`) say otherwise.
    retention_days: int = 90
    # Days per kind instead of FORGELINE_RETENTION_DAYS, e.g. "errors=30d,spans=7d".
    retention: tuple[tuple[str, int], ...] = ()
    retention_sweep_seconds: float = 3600.0  # how often expired blobs and export lines are swept
    # Salt of the erasure audit's identifier hashes; "" means: generated once into data_dir.
    erasure_salt: str = field(default="", repr=False)
    # Notifier: a delivery is dead-lettered after this many attempts; retries wait
    # base·2^(n-1) seconds (half of it jittered), capped; each provider request has a timeout.
    notify_max_attempts: int = 6
    notify_backoff_seconds: float = 0.5
    notify_backoff_max_seconds: float = 60.0
    notify_timeout_seconds: float = 10.0
    notify_concurrency: int = 64
    # Fernet key of the notify secrets; "" means: generated once into data_dir/notify.key.
    notify_key: str = ""
    # Networks (CIDRs) every notify target may reach although they are not public (an in-house
    # GitLab on 10.x); otherwise only a target added with --allow-private reaches private ones.
    notify_allowed_networks: tuple[str, ...] = field(default=())
    trusted_proxies: tuple[str, ...] = field(default=())
    # Embedded log retention, in Kafka's terms (docs/lifecycle.md).
    bus_retention_ms: int = 7 * 24 * 3600 * 1000  # retention.ms: closed log segments older are deleted (-1: never).
    bus_retention_bytes: int = -1  # retention.bytes per partition: oldest closed segments go above it (-1: no bound).
    bus_segment_bytes: int = 64 * 1024 * 1024  # segment.bytes: the active log segment is closed at this size.
    bus_segment_ms: int = 3600 * 1000  # segment.ms: also closed once its first record is this old.
    # Below this much free space in the data directory the gateway answers 503 (0 = off).
    min_free_bytes: int = 100 * 1024 * 1024
    min_free_percent: float = 0.0  # The same as a percentage of the filesystem (0 = off).

    @property
    def resolved_bus_url(self) -> str:
        return self.bus_url or f"embedded://{(self.data_dir / 'bus').resolve()}"

    @property
    def resolved_blob_store_url(self) -> str:
        return self.blob_store_url or f"file://{(self.data_dir / 'blobs').resolve()}"

    @property
    def resolved_export_url(self) -> str:
        return self.export_url or f"file://{(self.data_dir / 'exports').resolve()}"

    @property
    def upload_size_limits(self) -> dict[str, int]:
        return dict(self.max_upload_bytes)

    @property
    def resolved_warehouse_dsn(self) -> str:
        return self.warehouse_dsn or f"chdb://{(self.data_dir / 'warehouse').resolve()}"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]  # dataclasses.replace is untyped here

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        reader = _Reader(environ)
        d = cls()
        return cls(
            data_dir=Path(reader.get("FORGELINE_DATA_DIR", str, str(d.data_dir))),
            host=reader.get("FORGELINE_HOST", str, d.host),
            port=reader.get("FORGELINE_PORT", _port, d.port),
            admin_port=reader.get("FORGELINE_ADMIN_PORT", _port, d.admin_port),
            admin_host=reader.get("FORGELINE_ADMIN_HOST", str, d.admin_host),
            admin_key=reader.get("FORGELINE_ADMIN_KEY", str, d.admin_key),
            console_host=reader.get("FORGELINE_CONSOLE_HOST", str, d.console_host),
            console_port=reader.get("FORGELINE_CONSOLE_PORT", _port, d.console_port),
            console_admin_url=reader.get("FORGELINE_CONSOLE_ADMIN_URL", str, d.console_admin_url),
            console_secret=reader.get("FORGELINE_CONSOLE_SECRET", str, d.console_secret),
            console_secure_cookies=reader.get("FORGELINE_CONSOLE_SECURE_COOKIES", _bool, d.console_secure_cookies),
            bus_url=reader.get("FORGELINE_BUS_URL", str, d.bus_url),
            warehouse_dsn=reader.get("FORGELINE_WAREHOUSE_DSN", str, d.warehouse_dsn),
            partitions=reader.get("FORGELINE_PARTITIONS", _positive_int, d.partitions),
            log_level=reader.get("FORGELINE_LOG_LEVEL", str, d.log_level),
            logister_rate_limit_requests=reader.get(
                "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS", _positive_int, d.logister_rate_limit_requests
            ),
            logister_rate_limit_period_seconds=reader.get(
                "FORGELINE_LOGISTER_RATE_LIMIT_PERIOD_SECONDS",
                _positive_int,
                d.logister_rate_limit_period_seconds,
            ),
            auth_failure_rate_limit_requests=reader.get(
                "FORGELINE_AUTH_FAILURE_RATE_LIMIT_REQUESTS",
                _positive_int,
                d.auth_failure_rate_limit_requests,
            ),
            auth_failure_period_seconds=reader.get(
                "FORGELINE_AUTH_FAILURE_PERIOD_SECONDS", _positive_int, d.auth_failure_period_seconds
            ),
            max_body_bytes=reader.get("FORGELINE_MAX_BODY_BYTES", _positive_int, d.max_body_bytes),
            max_inflated_bytes=reader.get("FORGELINE_MAX_INFLATED_BYTES", _positive_int, d.max_inflated_bytes),
            max_check_in_body_bytes=reader.get(
                "FORGELINE_MAX_CHECK_IN_BODY_BYTES", _positive_int, d.max_check_in_body_bytes
            ),
            max_batch_body_bytes=reader.get("FORGELINE_MAX_BATCH_BODY_BYTES", _positive_int, d.max_batch_body_bytes),
            max_batch_inflated_bytes=reader.get(
                "FORGELINE_MAX_BATCH_INFLATED_BYTES", _positive_int, d.max_batch_inflated_bytes
            ),
            max_batch_lines=reader.get("FORGELINE_MAX_BATCH_LINES", _positive_int, d.max_batch_lines),
            max_json_depth=reader.get("FORGELINE_MAX_JSON_DEPTH", _positive_int, d.max_json_depth),
            max_in_flight=reader.get("FORGELINE_MAX_IN_FLIGHT", _positive_int, d.max_in_flight),
            keep_alive_seconds=reader.get("FORGELINE_KEEP_ALIVE_SECONDS", _positive_int, d.keep_alive_seconds),
            header_read_timeout_seconds=reader.get(
                "FORGELINE_HEADER_READ_TIMEOUT_SECONDS", _positive_float, d.header_read_timeout_seconds
            ),
            body_read_timeout_seconds=reader.get(
                "FORGELINE_BODY_READ_TIMEOUT_SECONDS", _positive_float, d.body_read_timeout_seconds
            ),
            body_idle_timeout_seconds=reader.get(
                "FORGELINE_BODY_IDLE_TIMEOUT_SECONDS", _positive_float, d.body_idle_timeout_seconds
            ),
            body_min_bytes_per_second=reader.get(
                "FORGELINE_BODY_MIN_BYTES_PER_SECOND", _positive_int, d.body_min_bytes_per_second
            ),
            slow_body_after_seconds=reader.get(
                "FORGELINE_SLOW_BODY_AFTER_SECONDS", _positive_float, d.slow_body_after_seconds
            ),
            max_slow_bodies=reader.get("FORGELINE_MAX_SLOW_BODIES", _positive_int, d.max_slow_bodies),
            max_slow_bodies_per_client=reader.get(
                "FORGELINE_MAX_SLOW_BODIES_PER_CLIENT", _positive_int, d.max_slow_bodies_per_client
            ),
            publish_timeout_seconds=reader.get(
                "FORGELINE_PUBLISH_TIMEOUT_SECONDS", _positive_float, d.publish_timeout_seconds
            ),
            token_refresh_seconds=reader.get(
                "FORGELINE_TOKEN_REFRESH_SECONDS", _positive_float, d.token_refresh_seconds
            ),
            writer_batch_rows=reader.get("FORGELINE_WRITER_BATCH_ROWS", _positive_int, d.writer_batch_rows),
            writer_flush_seconds=reader.get("FORGELINE_WRITER_FLUSH_SECONDS", _positive_float, d.writer_flush_seconds),
            span_quiet_seconds=reader.get("FORGELINE_SPAN_QUIET_SECONDS", _positive_float, d.span_quiet_seconds),
            monitor_margin_seconds=reader.get(
                "FORGELINE_MONITOR_MARGIN_SECONDS", _positive_float, d.monitor_margin_seconds
            ),
            monitor_tick_seconds=reader.get("FORGELINE_MONITOR_TICK_SECONDS", _positive_float, d.monitor_tick_seconds),
            normalizer_batch=reader.get("FORGELINE_NORMALIZER_BATCH", _positive_int, d.normalizer_batch),
            dlq_max_ratio=reader.get("FORGELINE_DLQ_MAX_RATIO", _ratio, d.dlq_max_ratio),
            dlq_min_records=reader.get("FORGELINE_DLQ_MIN_RECORDS", _positive_int, d.dlq_min_records),
            dlq_window_records=reader.get("FORGELINE_DLQ_WINDOW_RECORDS", _positive_int, d.dlq_window_records),
            notify_max_attempts=reader.get("FORGELINE_NOTIFY_MAX_ATTEMPTS", _positive_int, d.notify_max_attempts),
            notify_backoff_seconds=reader.get(
                "FORGELINE_NOTIFY_BACKOFF_SECONDS", _positive_float, d.notify_backoff_seconds
            ),
            notify_backoff_max_seconds=reader.get(
                "FORGELINE_NOTIFY_BACKOFF_MAX_SECONDS", _positive_float, d.notify_backoff_max_seconds
            ),
            notify_timeout_seconds=reader.get(
                "FORGELINE_NOTIFY_TIMEOUT_SECONDS", _positive_float, d.notify_timeout_seconds
            ),
            notify_concurrency=reader.get("FORGELINE_NOTIFY_CONCURRENCY", _positive_int, d.notify_concurrency),
            notify_key=reader.get("FORGELINE_NOTIFY_KEY", str, d.notify_key),
            notify_allowed_networks=reader.get(
                "FORGELINE_NOTIFY_ALLOWED_NETWORKS", _networks, d.notify_allowed_networks
            ),
            trusted_proxies=reader.get("FORGELINE_TRUSTED_PROXIES", _networks, d.trusted_proxies),
            bus_retention_ms=reader.get("FORGELINE_BUS_RETENTION_MS", _positive_or_unbounded, d.bus_retention_ms),
            bus_retention_bytes=reader.get(
                "FORGELINE_BUS_RETENTION_BYTES", _positive_or_unbounded, d.bus_retention_bytes
            ),
            bus_segment_bytes=reader.get("FORGELINE_BUS_SEGMENT_BYTES", _positive_int, d.bus_segment_bytes),
            bus_segment_ms=reader.get("FORGELINE_BUS_SEGMENT_MS", _positive_or_unbounded, d.bus_segment_ms),
            min_free_bytes=reader.get("FORGELINE_MIN_FREE_BYTES", _non_negative_int, d.min_free_bytes),
            min_free_percent=reader.get("FORGELINE_MIN_FREE_PERCENT", _percent, d.min_free_percent),
            processors=reader.get("FORGELINE_PROCESSORS", _csv, d.processors),
            export_url=reader.get("FORGELINE_EXPORT_URL", str, d.export_url),
            export_gzip=reader.get("FORGELINE_EXPORT_GZIP", _bool, d.export_gzip),
            export_max_rows=reader.get("FORGELINE_EXPORT_MAX_ROWS", _positive_int, d.export_max_rows),
            export_max_bytes=reader.get("FORGELINE_EXPORT_MAX_BYTES", _positive_int, d.export_max_bytes),
            export_flush_seconds=reader.get("FORGELINE_EXPORT_FLUSH_SECONDS", _positive_float, d.export_flush_seconds),
            export_request_interval_seconds=reader.get(
                "FORGELINE_EXPORT_REQUEST_INTERVAL_SECONDS", _positive_float, d.export_request_interval_seconds
            ),
            export_requires_secret_key=reader.get(
                "FORGELINE_EXPORT_REQUIRES_SECRET_KEY", _bool, d.export_requires_secret_key
            ),
            retention_days=reader.get("FORGELINE_RETENTION_DAYS", _retention_days, d.retention_days),
            retention=reader.get("FORGELINE_RETENTION", _retention_table, d.retention),
            retention_sweep_seconds=reader.get(
                "FORGELINE_RETENTION_SWEEP_SECONDS", _positive_float, d.retention_sweep_seconds
            ),
            erasure_salt=reader.get("FORGELINE_ERASURE_SALT", str, d.erasure_salt),
            forge_rate_limit_requests=reader.get(
                "FORGELINE_FORGE_RATE_LIMIT_REQUESTS", _positive_int, d.forge_rate_limit_requests
            ),
            forge_rate_limit_period_seconds=reader.get(
                "FORGELINE_FORGE_RATE_LIMIT_PERIOD_SECONDS", _positive_int, d.forge_rate_limit_period_seconds
            ),
            msgpack_rate_limit_requests=reader.get(
                "FORGELINE_MSGPACK_RATE_LIMIT_REQUESTS", _positive_int, d.msgpack_rate_limit_requests
            ),
            msgpack_rate_limit_period_seconds=reader.get(
                "FORGELINE_MSGPACK_RATE_LIMIT_PERIOD_SECONDS", _positive_int, d.msgpack_rate_limit_period_seconds
            ),
            max_msgpack_body_bytes=reader.get(
                "FORGELINE_MAX_MSGPACK_BODY_BYTES", _positive_int, d.max_msgpack_body_bytes
            ),
            max_msgpack_items=reader.get("FORGELINE_MAX_MSGPACK_ITEMS", _positive_int, d.max_msgpack_items),
            max_model_bytes=reader.get("FORGELINE_MAX_MODEL_BYTES", _positive_int, d.max_model_bytes),
            blob_store_url=reader.get("FORGELINE_BLOB_STORE_URL", str, d.blob_store_url),
            blob_signing_key=reader.get("FORGELINE_BLOB_SIGNING_KEY", str, d.blob_signing_key),
            public_url=reader.get("FORGELINE_PUBLIC_URL", str, d.public_url),
            s3_access_key=reader.get("FORGELINE_S3_ACCESS_KEY", str, d.s3_access_key),
            s3_secret_key=reader.get("FORGELINE_S3_SECRET_KEY", str, d.s3_secret_key),
            upload_url_ttl_seconds=reader.get(
                "FORGELINE_UPLOAD_URL_TTL_SECONDS", _positive_int, d.upload_url_ttl_seconds
            ),
            max_upload_bytes=reader.get("FORGELINE_MAX_UPLOAD_BYTES", _size_table, d.max_upload_bytes),
        )


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, key: str, cast: Callable[[str], T], default: T) -> T:
        name = key
        raw = self._environ.get(key)
        alias = LOGISTER_ALIASES.get(key)
        if (raw is None or raw.strip() == "") and alias is not None:
            name, raw = alias, self._environ.get(alias)
        if raw is None or raw.strip() == "":
            return default
        try:
            return cast(raw.strip())
        except ValueError as err:
            raise SettingsError(f"{name}={raw!r}: {err}") from err


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_or_unbounded(raw: str) -> int:
    value = int(raw)
    if value <= 0 and value != -1:
        raise ValueError("must be a positive integer, or -1 for unbounded")
    return value


def _retention_days(raw: str) -> int:
    from forgeline.lifecycle.retention import parse_days

    return parse_days(raw)


def _retention_table(raw: str) -> tuple[tuple[str, int], ...]:
    """``errors=30d,spans=7d`` → ((kind, days), …); kinds are checked."""
    from forgeline.lifecycle.retention import check_kinds, parse_days

    pairs: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        kind, sep, days = item.partition("=")
        if not sep:
            raise ValueError(f"expected kind=days, got {item!r}")
        pairs[kind.strip()] = parse_days(days)
    return tuple(sorted(check_kinds(pairs).items()))


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _percent(raw: str) -> float:
    value = float(raw)
    if not 0 <= value < 100:
        raise ValueError("must be a percentage from 0 to below 100")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _ratio(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 1:
        raise ValueError("must be a ratio above 0 and at most 1")
    return value


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be a TCP port (0-65535)")
    return value


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _networks(raw: str) -> tuple[str, ...]:
    """Addresses or CIDR networks (``10.0.0.0/8,::1``); a typo fails at start, not per request."""
    networks = _csv(raw)
    for network in networks:
        ipaddress.ip_network(network, strict=False)  # ValueError names the bad entry
    return networks


def _size_table(raw: str) -> tuple[tuple[str, int], ...]:
    """``screenshot=20971520,video=524288000``: per attachment type; unnamed types keep defaults."""
    table = dict(Settings().max_upload_bytes)
    for part in _csv(raw):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in table:
            raise ValueError(f"expected type=bytes with type in {', '.join(table)}")
        table[name.strip()] = _positive_int(value.strip())
    return tuple(table.items())
