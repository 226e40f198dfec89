-- Forge Logger (seeds forge-logger-*.txt): builds, sessions, game events, bug reports,
-- finished uploads. Ids come from the input (UUIDv5) or the gateway, so a replayed batch
-- collapses into one row per id when parts merge; count with FINAL to be exact at once.

CREATE TABLE IF NOT EXISTS {db}.builds (
    build_id UUID,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    version String,
    platform LowCardinality(String),
    git_commit String,
    channel LowCardinality(String),
    seen_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (project_id, build_id);

CREATE TABLE IF NOT EXISTS {db}.sessions (
    session_id UUID,
    build_id UUID,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    version String,
    platform LowCardinality(String),
    channel LowCardinality(String),
    player_external_id String,
    device_id String,
    metadata String,
    started_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (project_id, environment, session_id);

CREATE TABLE IF NOT EXISTS {db}.game_events (
    event_id UUID,
    session_id UUID,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    type LowCardinality(String),
    severity LowCardinality(String),
    properties String,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (project_id, environment, session_id, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.reports (
    report_id UUID,
    session_id UUID,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    client_request_id String,
    title String,
    description String,
    severity LowCardinality(String),
    reporter_type LowCardinality(String),
    event_ids Array(String),
    upload_ids Array(String),
    export_providers Array(LowCardinality(String)),
    metadata String,
    received_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (project_id, environment, report_id);

CREATE TABLE IF NOT EXISTS {db}.uploads (
    upload_id UUID,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    session_id String,
    attachment_type LowCardinality(String),
    filename String,
    content_type LowCardinality(String),
    size_bytes UInt64,
    sha256 String,
    storage_key String,
    completed_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (project_id, environment, upload_id);
