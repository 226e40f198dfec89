"""Settings, read once at start from FORGELINE_* environment variables.

Logister's own variable names are accepted as aliases so that a Logister self-hoster's
environment works unchanged (seed logister-http-api.txt, "Rate limits"). When both are
set, the FORGELINE_* name wins. A bad value fails at start and names the variable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Ours → Logister's name for the same setting.
LOGISTER_ALIASES: dict[str, str] = {
    "FORGELINE_LOGISTER_RATE_LIMIT_REQUESTS": "LOGISTER_PUBLIC_API_RATE_LIMIT_REQUESTS",
    "FORGELINE_LOGISTER_RATE_LIMIT_PERIOD_SECONDS": "LOGISTER_PUBLIC_API_RATE_LIMIT_PERIOD_SECONDS",
    "FORGELINE_AUTH_FAILURE_RATE_LIMIT_REQUESTS": "LOGISTER_PUBLIC_API_AUTH_FAILURE_RATE_LIMIT_REQUESTS",
}


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


class Secret:
    """A credential read from the environment: it prints as ``***`` (in reprs, logs and
    tracebacks) and is only ever read with ``reveal()``, where it is used."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


def variable(name: str) -> str:
    """The environment variable of a setting: ``FORGELINE_`` + the field name in capitals."""
    return f"FORGELINE_{name.upper()}"


def setting(default: T, parse: Callable[[str], T]) -> T:
    """One setting: its default and the parser of its variable's text (ValueError says why not)."""
    return field(default=default, metadata={"parse": parse})


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


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = setting(Path(".forgeline"), Path)
    host: str = setting("127.0.0.1", str)
    port: int = setting(8080, _port)
    admin_port: int = setting(8081, _port)
    # The processors' admin port (SQL over the warehouse) listens here, never on `host`;
    # anywhere but loopback it needs admin_key (sent as `Authorization: Bearer …`).
    admin_host: str = setting("127.0.0.1", str)
    admin_key: Secret = setting(Secret(""), Secret)
    console_host: str = setting(
        "127.0.0.1", str
    )  # The console's listen address (web UI and /api/manage/v1; docs/console.md).
    console_port: int = setting(8082, _port)
    # Where the console reads the warehouse: a processors admin port ("" = admin_host:admin_port).
    console_admin_url: str = setting("", str)
    # Signs console session cookies; every replica needs the same ("" = generated into data_dir/console.key).
    console_secret: Secret = setting(Secret(""), Secret)
    console_secure_cookies: bool = setting(
        False, _bool
    )  # Mark session cookies Secure: set when the console is served over HTTPS.
    # "" means: derive from data_dir (embedded defaults).
    bus_url: str = setting("", str)
    warehouse_dsn: str = setting("", str)
    partitions: int = setting(4, _positive_int)
    log_level: str = setting("info", str)

    # Gateway limits.
    logister_rate_limit_requests: int = setting(1200, _positive_int)
    logister_rate_limit_period_seconds: int = setting(60, _positive_int)
    auth_failure_rate_limit_requests: int = setting(120, _positive_int)
    auth_failure_period_seconds: int = setting(60, _positive_int)
    max_body_bytes: int = setting(1024 * 1024, _positive_int)
    max_inflated_bytes: int = setting(4 * 1024 * 1024, _positive_int)
    max_check_in_body_bytes: int = setting(64 * 1024, _positive_int)
    # logister-python splits a batch above 2 MiB gzip / 8 MiB raw: these caps take its
    # largest batches whole, and anything larger gets the 413 that makes it split.
    max_batch_body_bytes: int = setting(4 * 1024 * 1024, _positive_int)
    max_batch_inflated_bytes: int = setting(16 * 1024 * 1024, _positive_int)
    max_batch_lines: int = setting(1000, _positive_int)
    max_json_depth: int = setting(32, _positive_int)
    publish_timeout_seconds: float = setting(2.0, _positive_float)
    # Concurrent requests one gateway worker serves before answering 503 (load shedding).
    max_in_flight: int = setting(1024, _positive_int)
    # Idle keep-alive connections are kept longer than clients' own pools keep them (httpx: 5 s),
    # so a client never sends a request on a connection the server is closing at that moment.
    keep_alive_seconds: int = setting(75, _positive_int)
    # Slow clients (docs/security.md, "Who the client is; slow clients"): the request line and
    # headers must arrive within header_read_timeout_seconds; a body within
    # body_read_timeout_seconds plus one second per body_min_bytes_per_second received, with no
    # gap over body_idle_timeout_seconds. A body still arriving after slow_body_after_seconds is
    # "slow": at most max_slow_bodies of those at once, max_slow_bodies_per_client per source.
    header_read_timeout_seconds: float = setting(10.0, _positive_float)
    body_read_timeout_seconds: float = setting(30.0, _positive_float)
    body_idle_timeout_seconds: float = setting(10.0, _positive_float)
    body_min_bytes_per_second: int = setting(16 * 1024, _positive_int)
    slow_body_after_seconds: float = setting(1.0, _positive_float)
    max_slow_bodies: int = setting(256, _positive_int)
    max_slow_bodies_per_client: int = setting(16, _positive_int)
    token_refresh_seconds: float = setting(1.0, _positive_float)

    # Game telemetry (Forge Logger, MessagePack, uploads).
    forge_rate_limit_requests: int = setting(6000, _positive_int)
    forge_rate_limit_period_seconds: int = setting(60, _positive_int)
    # The MessagePack API's documented limit ("Response Codes"): 10 requests/second per source IP.
    msgpack_rate_limit_requests: int = setting(10, _positive_int)
    msgpack_rate_limit_period_seconds: int = setting(1, _positive_int)
    max_msgpack_body_bytes: int = setting(4 * 1024 * 1024, _positive_int)
    max_msgpack_items: int = setting(1000, _positive_int)
    max_model_bytes: int = setting(64 * 1024 * 1024, _positive_int)  # POST /api/models, the whole multipart body
    # "" means: a local directory under data_dir, signed by the gateway (embedded default).
    blob_store_url: str = setting("", str)
    # HMAC key of the local blob store's upload URLs; "" means: generated once into data_dir.
    blob_signing_key: Secret = setting(Secret(""), Secret)
    public_url: str = setting("", str)  # base of the upload URLs handed to clients; "" = http://host:port
    # Credentials of an s3:// blob store (kept out of the URL so the URL can be logged).
    s3_access_key: Secret = setting(Secret(""), Secret)
    s3_secret_key: Secret = setting(Secret(""), Secret)
    upload_url_ttl_seconds: int = setting(900, _positive_int)
    max_upload_bytes: tuple[tuple[str, int], ...] = setting(
        (
            ("screenshot", 20 * 1024 * 1024),
            ("video", 500 * 1024 * 1024),
            ("save_state", 100 * 1024 * 1024),
            ("log_bundle", 100 * 1024 * 1024),
            ("other", 50 * 1024 * 1024),
        ),
        _size_table,
    )

    # Processors.
    writer_batch_rows: int = setting(5000, _positive_int)
    writer_flush_seconds: float = setting(1.0, _positive_float)
    # A client's event resent without its own time (Logister `uuid`, a Forge Logger request
    # resent as it was) is stored as the row written at its first receipt when it arrives within
    # this many hours of it: the writer looks the id up that far back in its table (one query
    # per table, project and flush that holds such rows; it reads that project's rows of the
    # window, so it costs more the longer the window: docs/performance.md). 0 turns it off.
    resend_window_hours: int = setting(24, _non_negative_int)
    # Stream processors: a trace is summarized after this long without a new span; a
    # monitor is missed at last check-in + interval + margin (stream time); the monitor
    # evaluator sends a stream-clock tick through the bus this often (each tick is one record
    # per raw.logister partition and partitions² typed.checkins records: keep it coarse).
    span_quiet_seconds: float = setting(5.0, _positive_float)
    monitor_margin_seconds: float = setting(60.0, _positive_float)
    monitor_tick_seconds: float = setting(5.0, _positive_float)
    # Records per normalizer poll, and events per produce (acks) → commit round trip: a record
    # of a batch request holds many events, so a poll is sent and committed in slices of about
    # this many events (memory follows it). Polls return what is there, so this only matters
    # with a backlog, where 5000 did 1.4× the records/s of 1000 (docs/performance.md, "scale-out").
    normalizer_batch: int = setting(5000, _positive_int)
    # Dead letters: a record that fails is dead-lettered and the next one processed; but when
    # more than dlq_max_ratio of a processor's last dlq_window_records records failed (once at
    # least dlq_min_records were seen) it stops, uncommitted: a bad deploy, not bad input.
    dlq_max_ratio: float = setting(0.5, _ratio)
    dlq_min_records: int = setting(100, _positive_int)
    dlq_window_records: int = setting(1000, _positive_int)
    # Which processors `forgeline processors` (and so `forgeline up`) runs; () = all of them.
    # Leave one out to run it as its own service (`forgeline process exporter`).
    processors: tuple[str, ...] = setting((), _csv)
    # NDJSON exporter (services/exporter). "" means: a directory under data_dir.
    export_url: str = setting("", str)
    export_gzip: bool = setting(False, _bool)
    export_max_rows: int = setting(100_000, _positive_int)  # buffered rows (all partitions) that force a flush
    export_max_bytes: int = setting(64 * 1024 * 1024, _positive_int)  # buffered NDJSON bytes that force a flush
    export_flush_seconds: float = setting(60.0, _positive_float)
    # POST /api/export: at most one flush request per window per gateway (the rest coalesce).
    export_request_interval_seconds: float = setting(1.0, _positive_float)
    export_requires_secret_key: bool = setting(False, _bool)
    # Days each kind of data is kept (warehouse rows, uploads, exports: docs/lifecycle.md), unless
    # FORGELINE_RETENTION or the project's own days (`forgeline projects retention`) say otherwise.
    retention_days: int = setting(90, _retention_days)
    # Days per kind instead of FORGELINE_RETENTION_DAYS, e.g. "errors=30d,spans=7d".
    retention: tuple[tuple[str, int], ...] = setting((), _retention_table)
    retention_sweep_seconds: float = setting(
        3600.0, _positive_float
    )  # how often expired blobs and export lines are swept
    # Salt of the erasure audit's identifier hashes; "" means: generated once into data_dir.
    erasure_salt: Secret = setting(Secret(""), Secret)
    # Notifier: a delivery is dead-lettered after this many attempts; retries wait
    # base·2^(n-1) seconds (half of it jittered), capped; each provider request has a timeout.
    notify_max_attempts: int = setting(6, _positive_int)
    notify_backoff_seconds: float = setting(0.5, _positive_float)
    notify_backoff_max_seconds: float = setting(60.0, _positive_float)
    notify_timeout_seconds: float = setting(10.0, _positive_float)
    notify_concurrency: int = setting(64, _positive_int)
    # Fernet key of the notify secrets; "" means: generated once into data_dir/notify.key.
    notify_key: Secret = setting(Secret(""), Secret)
    # Networks (CIDRs) every notify target may reach although they are not public (an in-house
    # GitLab on 10.x); otherwise only a target added with --allow-private reaches private ones.
    notify_allowed_networks: tuple[str, ...] = setting((), _networks)
    trusted_proxies: tuple[str, ...] = setting((), _networks)
    # Embedded log retention, in Kafka's terms (docs/lifecycle.md).
    bus_retention_ms: int = setting(
        7 * 24 * 3600 * 1000, _positive_or_unbounded
    )  # retention.ms: closed log segments older are deleted (-1: never).
    bus_retention_bytes: int = setting(
        -1, _positive_or_unbounded
    )  # retention.bytes per partition: oldest closed segments go above it (-1: no bound).
    bus_segment_bytes: int = setting(
        64 * 1024 * 1024, _positive_int
    )  # segment.bytes: the active log segment is closed at this size.
    bus_segment_ms: int = setting(
        3600 * 1000, _positive_or_unbounded
    )  # segment.ms: also closed once its first record is this old.
    # Below this much free space in the data directory the gateway answers 503 (0 = off).
    min_free_bytes: int = setting(100 * 1024 * 1024, _non_negative_int)
    min_free_percent: float = setting(0.0, _percent)  # The same as a percentage of the filesystem (0 = off).

    def __post_init__(self) -> None:
        # Code and tests may pass a credential as plain text; it is held as a Secret all the same.
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["parse"] is Secret and isinstance(value, str):
                object.__setattr__(self, f.name, Secret(value))

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
        """Every field from its variable, ``FORGELINE_`` + the field name in capitals."""
        reader = _Reader(environ)
        values: dict[str, Any] = {}
        for f in fields(cls):
            values[f.name] = reader.get(variable(f.name), f.metadata["parse"], getattr(_DEFAULTS, f.name))
        return cls(**values)


_DEFAULTS = Settings()
