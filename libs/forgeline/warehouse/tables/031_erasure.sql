-- Erasure requests (forgeline.lifecycle.erasure): one row when a request arrives, replaced by
-- its completion (higher version). Identifiers are kept only as salted hashes.

CREATE TABLE IF NOT EXISTS {db}.erasure_audit (
    request_id UUID,
    project_id String,
    subject_hashes Array(String),
    state LowCardinality(String),
    requested_at DateTime64(3, 'UTC'),
    completed_at Nullable(DateTime64(3, 'UTC')),
    rows_deleted UInt64,
    blobs_deleted UInt64,
    export_lines_removed UInt64,
    version UInt8
) ENGINE = ReplacingMergeTree(version)
ORDER BY request_id;
