"""Every Prometheus metric, declared once: ``forgeline_<service>_<what>_<unit>``.

Labels come from a fixed set (route, status, reason, topic, table, service) and never
from user input, so cardinality stays bounded whatever clients send.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SIZE_BUCKETS = (1, 10, 50, 100, 500, 1000, 5000, 10000, 50000)

# Gateway.
GATEWAY_REQUESTS = Counter(
    "forgeline_gateway_requests_total", "HTTP requests answered, by route and status.", ["route", "status"]
)
GATEWAY_REJECTIONS = Counter(
    "forgeline_gateway_rejections_total", "Requests refused, by route and reason.", ["route", "reason"]
)
GATEWAY_LATENCY = Histogram(
    "forgeline_gateway_request_duration_seconds",
    "Time from request start to response, by route.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
GATEWAY_TOKENS = Gauge("forgeline_gateway_tokens_loaded", "Tokens in the gateway's in-memory table.")

# Bus.
BUS_PRODUCED = Counter("forgeline_bus_records_produced_total", "Records appended durably, by topic.", ["topic"])
BUS_PRODUCE_LATENCY = Histogram(
    "forgeline_bus_produce_duration_seconds",
    "Time for an append to become durable.",
    buckets=_LATENCY_BUCKETS,
)

# Embedded log retention: records retention.bytes deleted before a consumer group committed them.
BUS_RETENTION_UNREAD_DELETED = Counter(
    "forgeline_bus_retention_unread_deleted_records_total",
    "Records deleted by the size bound before a consumer group read them, by topic and group.",
    ["topic", "group"],
)

# Processors.
PROCESSOR_CONSUMED = Counter(
    "forgeline_processor_records_consumed_total", "Records read, by service and topic.", ["service", "topic"]
)
PROCESSOR_BATCH_SIZE = Histogram(
    "forgeline_processor_batch_size_records",
    "Records per processed batch.",
    ["service"],
    buckets=_SIZE_BUCKETS,
)
PROCESSOR_LAG = Gauge(
    "forgeline_processor_consumer_lag_records",
    "Records written but not yet committed by the group, by topic.",
    ["service", "topic"],
)
PROCESSOR_DEAD_LETTERS = Counter(
    "forgeline_processor_dead_letters_total", "Records sent to the dead-letter topic.", ["service", "reason"]
)
PROCESSOR_RETRIES = Counter(
    "forgeline_processor_retries_total",
    "Retriable failures (nothing committed), by reason.",
    ["service", "reason"],
)
WRITER_ROWS = Counter("forgeline_writer_rows_inserted_total", "Rows inserted, by table.", ["table"])
WRITER_RESENDS = Counter(
    "forgeline_writer_resends_total",
    "Rows written with the times of an earlier copy of their event (a resend without its own time), by table.",
    ["table"],
)
WRITER_INSERT_LATENCY = Histogram(
    "forgeline_writer_insert_duration_seconds",
    "Warehouse insert time, by table.",
    ["table"],
    buckets=_LATENCY_BUCKETS,
)

# Stream processors (services/errors, spans, monitors).
ERROR_GROUP_NOTIFICATIONS = Counter(
    "forgeline_errors_group_notifications_total", "Error group records emitted, by kind (new, regressed).", ["kind"]
)
SPANS_TRACES_SUMMARIZED = Counter(
    "forgeline_spans_trace_summaries_total",
    "Trace summaries written (re-summaries too), by kind (complete, orphaned).",
    ["kind"],
)
SPANS_OPEN_TRACES = Gauge("forgeline_spans_open_traces", "Traces held in memory by the span assembler.")
MONITOR_STATES = Gauge("forgeline_monitors_monitors", "Monitors per current state.", ["state"])
MONITOR_STATE_CHANGES = Counter(
    "forgeline_monitors_state_changes_total", "Monitor state changes emitted, by new state.", ["state"]
)
MONITOR_STREAM_CLOCK = Gauge(
    "forgeline_monitors_stream_clock_seconds", "The monitor evaluator's stream clock (epoch seconds)."
)

# NDJSON exporter (services/exporter).
EXPORTER_LINES = Counter("forgeline_exporter_lines_written_total", "NDJSON lines written, by table.", ["table"])
EXPORTER_FILES = Counter("forgeline_exporter_files_written_total", "NDJSON files written, by table.", ["table"])
EXPORTER_BYTES = Counter(
    "forgeline_exporter_bytes_written_total", "File bytes written (after gzip), by table.", ["table"]
)
EXPORTER_FLUSHES = Counter(
    "forgeline_exporter_flushes_total", "Flushes, by reason (rows, bytes, time, request, replay, stop).", ["reason"]
)
EXPORTER_FLUSH_LATENCY = Histogram(
    "forgeline_exporter_flush_duration_seconds",
    "Time to write a flush's files durably and commit its offsets.",
    buckets=_LATENCY_BUCKETS,
)
EXPORTER_SKIPPED = Counter(
    "forgeline_exporter_records_skipped_total", "Typed records with no row (the writer dead-letters them).", ["table"]
)
EXPORTER_REQUESTS = Counter(
    "forgeline_exporter_flush_requests_total",
    "Flush requests read from control.exporter, by outcome (flushed, coalesced).",
    ["outcome"],
)
EXPORTER_BUFFERED = Gauge("forgeline_exporter_buffered_rows", "Rows read and not yet written to a file.")
# Notifier (services/notifier). The provider label is one of five fixed names.
NOTIFIER_SENT = Counter("forgeline_notifier_sent_total", "Notifications delivered, by provider.", ["provider"])
NOTIFIER_FAILED_ATTEMPTS = Counter(
    "forgeline_notifier_failed_attempts_total",
    "Delivery attempts that failed, by provider and reason (timeout, connect, lookup, http_<status>).",
    ["provider", "reason"],
)
NOTIFIER_RETRIES = Counter(
    "forgeline_notifier_retries_total",
    "Delivery attempts scheduled again, by provider and reason.",
    ["provider", "reason"],
)
NOTIFIER_DEAD_LETTERS = Counter(
    "forgeline_notifier_dead_letters_total",
    "Deliveries given up (dlq.notifier), by provider and reason.",
    ["provider", "reason"],
)
NOTIFIER_DUPLICATES = Counter(
    "forgeline_notifier_duplicates_skipped_total",
    "Deliveries skipped because their id was already delivered or dead (replays, redeliveries).",
    ["provider"],
)
NOTIFIER_RECOVERED = Counter(
    "forgeline_notifier_recovered_total",
    "Deliveries left pending by a crash that the provider turned out to have (not sent again).",
    ["provider"],
)
NOTIFIER_SEND_LATENCY = Histogram(
    "forgeline_notifier_send_duration_seconds",
    "Provider request time, by provider.",
    ["provider"],
    buckets=_LATENCY_BUCKETS,
)


_Metric = TypeVar("_Metric", bound=MetricWrapperBase)


class LabelledChildren(Generic[_Metric]):
    """A metric's labelled children, each looked up once: ``labels()`` validates its values
    and takes a lock on every call, which showed in the gateway's per-request profile."""

    def __init__(self, metric: _Metric) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], _Metric] = {}

    def get(self, *values: str) -> _Metric:
        """The child for these label values, in the metric's label order."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child
