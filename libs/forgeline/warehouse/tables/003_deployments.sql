-- Deployments (logister-python's record_deployment): release ↔ commit ↔ environment, so
-- that errors and transactions can be joined to the deploy that introduced them.

CREATE TABLE IF NOT EXISTS {db}.deployments (
    deployment_id UUID,
    organisation_id LowCardinality(String),
    project_id LowCardinality(String),
    environment LowCardinality(String),
    release String,
    repository String,
    commit_sha String,
    branch String,
    deployed_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    pull_request_number String,
    pull_request_url String,
    release_tag String,
    release_url String,
    compare_url String,
    workflow_run_url String,
    deployment_url String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(deployed_at)
ORDER BY (project_id, environment, release, deployment_id);
