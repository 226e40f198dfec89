"""Every topic name in one place. Dead letters go to ``dlq.<consumer group>``."""

from __future__ import annotations

# Raw payloads as the gateway accepted them, one topic per API family.
RAW_LOGISTER = "raw.logister"
RAW_FORGE = "raw.forge"
RAW_MSGPACK = "raw.msgpack"

# Typed records from the normalizer, keyed for the next stage.
TYPED_ERRORS = "typed.errors"  # key: fingerprint
TYPED_LOGS = "typed.logs"  # key: event id
TYPED_METRICS = "typed.metrics"  # key: metric name
TYPED_TRANSACTIONS = "typed.transactions"  # key: transaction name
TYPED_SPANS = "typed.spans"  # key: trace id
TYPED_CHECKINS = "typed.checkins"  # key: project/environment/slug (the monitor)
TYPED_DEPLOYMENTS = "typed.deployments"  # key: project/release
# Game telemetry (Forge Logger and MessagePack families).
TYPED_BUILDS = "typed.builds"  # key: build id
TYPED_SESSIONS = "typed.sessions"  # key: session id
TYPED_GAME_EVENTS = "typed.game_events"  # key: session id
TYPED_REPORTS = "typed.reports"  # key: report id
TYPED_UPLOADS = "typed.uploads"  # key: upload id
TYPED_PLAYERS = "typed.players"  # key: app/player
TYPED_FUNNEL_STEPS = "typed.funnel_steps"  # key: app/session
TYPED_GAMEPLAY_EVENTS = "typed.gameplay_events"  # key: app/session
TYPED_TRAJECTORIES = "typed.trajectories"  # key: app/session
TYPED_LEVEL_MODELS = "typed.level_models"  # key: model id

# Stream processors' inputs and outputs (services/errors, spans, monitors).
# Status changes of error groups (`forgeline errors resolve|ignore`), keyed like typed.errors
# (project/group fingerprint) and with the same partition count, so a group's events and its
# status changes reach the same consumer in one order.
CONTROL_ERROR_GROUPS = "control.error_groups"
EVENTS_ERROR_GROUPS = "events.error_groups"  # "new" / "regressed" records, key: project/fingerprint
EVENTS_MONITORS = "events.monitors"  # monitor state changes, key: project/environment/slug
# Stream-clock ticks travel *inside* raw.logister and typed.checkins (header TICK_HEADER), so
# that they are ordered after every record appended before them: see services/monitors.
TICK_HEADER = "forgeline-tick"
# "Flush what you buffer now" for the NDJSON exporter (POST /api/export; services/exporter).
# One partition: with shared groups (Kafka) only the replica that owns it flushes early.
CONTROL_EXPORTER = "control.exporter"

# Tenancy: organisations, projects, environments, applications, tokens. Compacted by key.
CONTROL_TENANCY = "control.tenancy"

# Notifier (services/notifier): provider targets per project (`forgeline notify add`), keyed
# by target id, secrets Fernet-encrypted; and the delivery log (pending / delivered / dead per
# delivery id), read whole at start so that a restart or a redelivery never sends twice.
CONTROL_NOTIFY = "control.notify"
CONTROL_NOTIFY_DELIVERIES = "control.notify_deliveries"

# Console users, admin keys and the audit log of every management change (forgeline.manage).
CONTROL_CONSOLE = "control.console"

TYPED_TOPICS = (
    TYPED_ERRORS,
    TYPED_LOGS,
    TYPED_METRICS,
    TYPED_TRANSACTIONS,
    TYPED_SPANS,
    TYPED_CHECKINS,
    TYPED_DEPLOYMENTS,
    TYPED_BUILDS,
    TYPED_SESSIONS,
    TYPED_GAME_EVENTS,
    TYPED_REPORTS,
    TYPED_UPLOADS,
    TYPED_PLAYERS,
    TYPED_FUNNEL_STEPS,
    TYPED_GAMEPLAY_EVENTS,
    TYPED_TRAJECTORIES,
    TYPED_LEVEL_MODELS,
)


def dead_letter_topic(group: str) -> str:
    return f"dlq.{group}"


# Topics whose partition count is not the configured default. The control topic has one
# partition so that every reader sees tenancy changes in the order they were made.
FIXED_PARTITIONS: dict[str, int] = {CONTROL_TENANCY: 1, CONTROL_EXPORTER: 1, CONTROL_NOTIFY: 1, CONTROL_CONSOLE: 1}

# Consumer groups that dead-letter (each owns ``dlq.<group>``; the writer stores them all).
DEAD_LETTER_GROUPS = ("normalizer", "writer", "errors", "spans", "monitors", "exporter", "notifier")
RAW_TOPICS = (RAW_LOGISTER, RAW_FORGE, RAW_MSGPACK)
# Kafka compacts these (last record per key): state, every record keyed.
CONTROL_TOPICS = (CONTROL_TENANCY, CONTROL_ERROR_GROUPS, CONTROL_NOTIFY, CONTROL_NOTIFY_DELIVERIES, CONTROL_CONSOLE)
# Control topics with one key per event, which compaction alone never shrinks: also deleted by
# age (cleanup.policy=compact,delete), a key going once its last record is older than
# retention.key_retention_ms of the other topics' settings. The delivery log answers for
# records of typed.reports and events.*: an id is kept while they can be replayed. (The audit
# entries of control.console are one key per change too, but share the topic with users and
# admin keys, which must never expire: they stay.) Every other control topic keeps its keys.
COMPACT_DELETE_TOPICS = (CONTROL_NOTIFY_DELIVERIES,)
# Requests without keys (compaction would refuse them): ordinary retention.
REQUEST_TOPICS = (CONTROL_EXPORTER,)
EVENT_TOPICS = (EVENTS_ERROR_GROUPS, EVENTS_MONITORS)


def provisioned_topics() -> tuple[str, ...]:
    """Every topic `forgeline topics ensure` creates (raw, typed, events, dead-letter, control)."""
    return (
        *RAW_TOPICS,
        *TYPED_TOPICS,
        *EVENT_TOPICS,
        *(dead_letter_topic(group) for group in DEAD_LETTER_GROUPS),
        *CONTROL_TOPICS,
        *REQUEST_TOPICS,
    )


# Per-topic retention of the embedded log, in Kafka's topic-config names (-1 = unbounded);
# every other topic takes FORGELINE_BUS_RETENTION_MS / _BYTES (the control topics are
# compacted instead). Flush requests are useful for seconds only.
RETENTION_OVERRIDES: dict[str, dict[str, int]] = {
    CONTROL_EXPORTER: {"retention.ms": 24 * 3600 * 1000, "segment.ms": 3600 * 1000},
}
