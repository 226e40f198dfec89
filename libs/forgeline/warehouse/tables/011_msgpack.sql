-- MessagePack game analytics (seed msgpack-game-analytics-api.txt): one table per inferred
-- event kind. event_id is derived from (application, request body, index in the batch):
-- a retried request maps onto the same rows.

CREATE TABLE IF NOT EXISTS {db}.players (
    event_id UUID,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    app_id LowCardinality(String),
    build_id LowCardinality(String),
    player_id String,
    event_name LowCardinality(String),
    region LowCardinality(String),
    hardware String,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (app_id, player_id, event_id);

CREATE TABLE IF NOT EXISTS {db}.funnel_steps (
    event_id UUID,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    app_id LowCardinality(String),
    build_id LowCardinality(String),
    player_id String,
    session_id String,
    step_name LowCardinality(String),
    level_id LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (app_id, step_name, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.gameplay_events (
    event_id UUID,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    app_id LowCardinality(String),
    build_id LowCardinality(String),
    player_id String,
    session_id String,
    event_name LowCardinality(String),
    level_id LowCardinality(String),
    position_x Nullable(Float64),
    position_y Nullable(Float64),
    position_z Nullable(Float64),
    input_method LowCardinality(String),
    custom_data String,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (app_id, level_id, event_name, occurred_at, event_id);

-- One row per realtime message, positions as three parallel arrays (see docs/decisions.md).
CREATE TABLE IF NOT EXISTS {db}.trajectories (
    event_id UUID,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    app_id LowCardinality(String),
    build_id LowCardinality(String),
    player_id String,
    session_id String,
    level_id LowCardinality(String),
    status LowCardinality(String),
    input_method LowCardinality(String),
    fps_mean Nullable(Float64),
    fps_low_5 Nullable(Float64),
    fps_low_1 Nullable(Float64),
    xs Array(Float64),
    ys Array(Float64),
    zs Array(Float64),
    point_count UInt32,
    started_at DateTime64(3, 'UTC'),
    ended_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (app_id, level_id, session_id, started_at, event_id);
