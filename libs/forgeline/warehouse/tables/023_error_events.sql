-- One inbox: every error event, from a backend (Logister) or a game (Forge Logger crashes,
-- exceptions, critical events and crash reports), with the build version, platform and
-- channel of its game session when it has one (empty otherwise). Grouped in error_groups
-- by the same rule whatever its source (docs/tables.md, "Errors from games").

CREATE VIEW IF NOT EXISTS {db}.error_events AS
SELECT
    e.event_id AS event_id,
    e.organisation_id AS organisation_id,
    e.project_id AS project_id,
    e.environment AS environment,
    e.occurred_at AS occurred_at,
    e.received_at AS received_at,
    e.level AS level,
    e.message AS message,
    e.exception_class AS exception_class,
    e.fingerprint AS fingerprint,
    e.release AS release,
    e.session_id AS session_id,
    if(JSONExtractString(e.context, 'source') LIKE 'forge_%', 'game', 'backend') AS source,
    s.version AS build,
    s.platform AS platform,
    s.channel AS channel,
    e.context AS context
FROM {db}.errors AS e FINAL
LEFT JOIN (
    SELECT toString(session_id) AS session_id, project_id, version, platform, channel
    FROM {db}.sessions FINAL
) AS s ON s.session_id = e.session_id AND s.project_id = e.project_id;
