-- Error groups (services/errors): the error inbox. One current row per (project, group):
-- the grouper upserts the whole row with a higher `version` each time the group changes.

CREATE TABLE IF NOT EXISTS {db}.error_groups (
    project_id LowCardinality(String),
    group_id String,
    fingerprint String,
    organisation_id LowCardinality(String),
    title String,
    exception_class String,
    first_seen DateTime64(3, 'UTC'),
    last_seen DateTime64(3, 'UTC'),
    event_count UInt64,
    last_level LowCardinality(String),
    releases Array(String),
    environments Array(String),
    status LowCardinality(String),
    regressed UInt8,
    status_changed_at DateTime64(3, 'UTC'),
    recent_event_ids Array(String),
    applied_event_offset Int64,
    applied_control_offset Int64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, group_id);

-- One row per (group, event id): the exact event count of a group whatever happened on
-- the way (client retries, redeliveries). count() with FINAL, or uniqExact(event_id).
CREATE TABLE IF NOT EXISTS {db}.error_group_events (
    project_id LowCardinality(String),
    group_id String,
    event_id String,
    occurred_at DateTime64(3, 'UTC'),
    environment LowCardinality(String),
    release String,
    level LowCardinality(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (project_id, group_id, event_id);
