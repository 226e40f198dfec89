-- Monitor evaluator (services/monitors): the current state of every monitor, the history
-- of its state changes, and the evaluator's stream clock (restored at start).

CREATE TABLE IF NOT EXISTS {db}.monitor_states (
    project_id LowCardinality(String),
    environment LowCardinality(String),
    slug String,
    organisation_id LowCardinality(String),
    state LowCardinality(String),
    interval_seconds UInt32,
    margin_seconds UInt32,
    last_check_in_at DateTime64(3, 'UTC'),
    last_status LowCardinality(String),
    deadline_at DateTime64(3, 'UTC'),
    state_changed_at DateTime64(3, 'UTC'),
    applied_offset Int64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, environment, slug);

CREATE TABLE IF NOT EXISTS {db}.monitor_state_changes (
    change_id UUID,
    project_id LowCardinality(String),
    environment LowCardinality(String),
    slug String,
    previous_state LowCardinality(String),
    state LowCardinality(String),
    changed_at DateTime64(3, 'UTC'),
    stream_clock_at DateTime64(3, 'UTC'),
    reason LowCardinality(String),
    event_id String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(changed_at)
ORDER BY (project_id, environment, slug, changed_at, change_id);

CREATE TABLE IF NOT EXISTS {db}.stream_clocks (
    name LowCardinality(String),
    clock_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(clock_at)
ORDER BY name;
