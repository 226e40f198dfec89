-- Level models uploaded through POST /api/models (seed msgpack-game-analytics-api.txt):
-- the bytes live in the blob store; this is their metadata. model_id is derived from
-- (application, level, content hash): the same file uploaded twice is one row.

CREATE TABLE IF NOT EXISTS {db}.level_models (
    model_id UUID,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    app_id LowCardinality(String),
    app_name String,
    level_name String,
    filename String,
    content_type LowCardinality(String),
    size_bytes UInt64,
    sha256 String,
    storage_key String,
    uploaded_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (app_id, level_name, model_id);
