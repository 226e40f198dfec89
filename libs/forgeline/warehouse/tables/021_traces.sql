-- Span assembler (services/spans): one current summary per trace, and every span placed in
-- its tree. Both are rewritten with a higher `version` (= the trace's span count) when a
-- late span arrives; ReplacingMergeTree keeps the highest version (query with FINAL).

CREATE TABLE IF NOT EXISTS {db}.trace_summaries (
    project_id LowCardinality(String),
    environment LowCardinality(String),
    trace_id String,
    root_span_id String,
    root_name String,
    started_at DateTime64(3, 'UTC'),
    ended_at DateTime64(3, 'UTC'),
    duration_ms Float64,
    span_count UInt32,
    max_depth UInt32,
    error_count UInt32,
    orphan_count UInt32,
    services Array(String),
    version UInt64,
    summarized_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, trace_id);

CREATE TABLE IF NOT EXISTS {db}.span_tree (
    project_id LowCardinality(String),
    environment LowCardinality(String),
    trace_id String,
    span_id String,
    parent_span_id String,
    event_id String,
    name String,
    kind LowCardinality(String),
    status LowCardinality(String),
    level LowCardinality(String),
    service LowCardinality(String),
    started_at DateTime64(3, 'UTC'),
    ended_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    duration_ms Float64,
    depth UInt32,
    is_orphan UInt8,
    child_count UInt32,
    self_time_ms Float64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, trace_id, span_id);
