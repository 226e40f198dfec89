-- Records no processor could handle, with the reason, so that an operator can look at
-- them with SQL and replay them once fixed. The id is derived from the source position.

CREATE TABLE IF NOT EXISTS {db}.dead_letters (
    dead_letter_id UUID,
    consumer_group LowCardinality(String),
    source_topic LowCardinality(String),
    source_partition UInt32,
    source_offset UInt64,
    reason String,
    failed_at DateTime64(3, 'UTC'),
    payload String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(failed_at)
ORDER BY (consumer_group, source_topic, source_partition, source_offset, dead_letter_id);
