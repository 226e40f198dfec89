-- Logister family: one table per event kind. Columns are documented in docs/tables.md.
-- Every table is a ReplacingMergeTree whose sorting key ends with the event id: a batch
-- replayed after a crash collapses to one row per event (exact counts use FINAL).

CREATE TABLE IF NOT EXISTS {db}.errors (
    event_id UUID,
    legacy_id UInt64,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    level LowCardinality(String),
    message String,
    fingerprint String,
    exception_class String,
    release LowCardinality(String),
    trace_id String,
    request_id String,
    session_id String,
    user_id String,
    context String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (project_id, environment, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.logs (
    event_id UUID,
    legacy_id UInt64,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    level LowCardinality(String),
    message String,
    fingerprint String,
    release LowCardinality(String),
    trace_id String,
    request_id String,
    session_id String,
    user_id String,
    context String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (project_id, environment, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.metrics (
    event_id UUID,
    legacy_id UInt64,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    level LowCardinality(String),
    name LowCardinality(String),
    value Nullable(Float64),
    unit LowCardinality(String),
    duration_ms Nullable(Float64),
    release LowCardinality(String),
    trace_id String,
    request_id String,
    session_id String,
    user_id String,
    context String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (project_id, environment, name, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.transactions (
    event_id UUID,
    legacy_id UInt64,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    level LowCardinality(String),
    message String,
    transaction_name String,
    duration_ms Nullable(Float64),
    route String,
    method LowCardinality(String),
    status_code Nullable(Int32),
    release LowCardinality(String),
    trace_id String,
    request_id String,
    session_id String,
    user_id String,
    context String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (project_id, environment, transaction_name, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.spans (
    event_id UUID,
    legacy_id UInt64,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    span_id String,
    parent_span_id String,
    name String,
    kind LowCardinality(String),
    status LowCardinality(String),
    level LowCardinality(String),
    started_at DateTime64(3, 'UTC'),
    ended_at Nullable(DateTime64(3, 'UTC')),
    duration_ms Float64,
    service LowCardinality(String),
    route String,
    release LowCardinality(String),
    trace_id String,
    request_id String,
    session_id String,
    user_id String,
    context String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (project_id, trace_id, started_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.check_ins (
    event_id UUID,
    legacy_id UInt64,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    slug String,
    status LowCardinality(String),
    expected_interval_seconds UInt32,
    duration_ms Nullable(Float64),
    source LowCardinality(String),
    release LowCardinality(String),
    trace_id String,
    request_id String,
    context String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (project_id, environment, slug, occurred_at, event_id);
