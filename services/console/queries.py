"""The console's warehouse queries: fixed text, ``%(name)s`` placeholders, each bounded in
time (``days``) and in rows (``limit``/``offset``). Project ids come from the session's
checked access, never from the text of a request alone."""

from __future__ import annotations

PAGE_SIZE = 50
MAX_DAYS = 90

ERROR_GROUPS = """
SELECT group_id, title, exception_class, status, regressed, event_count, last_level,
       toString(first_seen) AS first, toString(last_seen) AS last
FROM forgeline.error_groups FINAL
WHERE project_id = %(project)s AND last_seen >= now64(3) - toIntervalDay(%(days)s)
  AND (%(status)s = '' OR (%(status)s = 'regressed' AND regressed = 1 AND status = 'unresolved')
       OR (%(status)s != 'regressed' AND status = %(status)s))
ORDER BY last_seen DESC
LIMIT %(limit)s OFFSET %(offset)s
"""

# Events per day of the groups on one page (the sparkline), the last 14 days.
GROUP_SPARKLINES = """
SELECT group_id, toString(toDate(occurred_at)) AS day, count() AS n
FROM forgeline.error_group_events FINAL
WHERE project_id = %(project)s AND group_id IN %(groups)s AND occurred_at >= now64(3) - toIntervalDay(14)
GROUP BY group_id, day
"""

ERROR_GROUP = """
SELECT group_id, fingerprint, title, exception_class, status, regressed, event_count, last_level,
       toString(first_seen) AS first, toString(last_seen) AS last, releases, environments
FROM forgeline.error_groups FINAL
WHERE project_id = %(project)s AND group_id = %(group)s
LIMIT 1
"""

GROUP_EVENTS = """
SELECT toString(event_id) AS id, toString(occurred_at) AS at, level, message, environment,
       release, trace_id, session_id, user_id, context
FROM forgeline.errors
WHERE project_id = %(project)s AND occurred_at >= now64(3) - toIntervalDay(%(days)s)
  AND event_id IN (
    SELECT toUUIDOrZero(event_id) FROM forgeline.error_group_events
    WHERE project_id = %(project)s AND group_id = %(group)s AND occurred_at >= now64(3) - toIntervalDay(%(days)s)
    ORDER BY occurred_at DESC LIMIT %(limit)s)
ORDER BY occurred_at DESC
LIMIT %(limit)s
"""

TRACES = """
SELECT trace_id, root_name, toString(started_at) AS started, duration_ms, span_count, error_count, services
FROM forgeline.trace_summaries FINAL
WHERE project_id = %(project)s AND started_at >= now64(3) - toIntervalDay(%(days)s)
  AND (%(trace)s = '' OR trace_id = %(trace)s)
  AND (%(name)s = '' OR positionCaseInsensitive(root_name, %(name)s) > 0)
  AND duration_ms >= %(min_ms)s
ORDER BY started_at DESC
LIMIT %(limit)s OFFSET %(offset)s
"""

TRACE_SPANS = """
SELECT span_id, parent_span_id, name, kind, status, service, depth, duration_ms, self_time_ms, is_orphan,
       toUnixTimestamp64Milli(started_at) AS start_ms, toUnixTimestamp64Milli(ended_at) AS end_ms
FROM forgeline.span_tree FINAL
WHERE project_id = %(project)s AND trace_id = %(trace)s
ORDER BY started_at, depth
LIMIT 2000
"""

MONITORS = """
SELECT environment, slug, state, interval_seconds, last_status,
       toString(last_check_in_at) AS last_check_in, toString(deadline_at) AS deadline,
       toString(state_changed_at) AS changed
FROM forgeline.monitor_states FINAL
WHERE project_id = %(project)s
ORDER BY environment, slug
LIMIT %(limit)s OFFSET %(offset)s
"""

# A monitor's state changes in the window, oldest first (the timeline), plus the state it
# was in when the window opened.
MONITOR_CHANGES = """
SELECT previous_state, state, reason, toUnixTimestamp64Milli(changed_at) AS at_ms, toString(changed_at) AS at
FROM forgeline.monitor_state_changes FINAL
WHERE project_id = %(project)s AND environment = %(environment)s AND slug = %(slug)s
  AND changed_at >= now64(3) - toIntervalDay(%(days)s)
ORDER BY changed_at
LIMIT 1000
"""

DEPLOYMENTS = """
SELECT toString(deployment_id) AS id, environment, release, repository, commit_sha, branch,
       toString(deployed_at) AS deployed, release_url, compare_url, deployment_url
FROM forgeline.deployments FINAL
WHERE project_id = %(project)s AND deployed_at >= now64(3) - toIntervalDay(%(days)s)
ORDER BY deployed_at DESC
LIMIT %(limit)s OFFSET %(offset)s
"""

DEPLOYMENT = """
SELECT toString(deployment_id) AS id, environment, release, repository, commit_sha, branch,
       toString(deployed_at) AS deployed, deployed_at AS deployed_time, release_url, compare_url, deployment_url
FROM forgeline.deployments FINAL
WHERE project_id = %(project)s AND deployment_id = toUUIDOrZero(%(deployment)s)
LIMIT 1
"""

# Error groups first seen, or regressed and seen again, since a deployment (in its environment).
GROUPS_SINCE = """
SELECT group_id, title, status, regressed, event_count, toString(first_seen) AS first, toString(last_seen) AS last,
       if(first_seen >= parseDateTime64BestEffort(%(since)s, 3, 'UTC'), 'new', 'regressed') AS why
FROM forgeline.error_groups FINAL
WHERE project_id = %(project)s AND has(environments, %(environment)s)
  AND last_seen >= parseDateTime64BestEffort(%(since)s, 3, 'UTC')
  AND (first_seen >= parseDateTime64BestEffort(%(since)s, 3, 'UTC') OR regressed = 1)
ORDER BY last_seen DESC
LIMIT 50
"""

SESSIONS = """
SELECT toString(session_id) AS id, environment, version, platform, channel, player_external_id,
       toString(started_at) AS started
FROM forgeline.sessions FINAL
WHERE project_id = %(project)s AND started_at >= now64(3) - toIntervalDay(%(days)s)
  AND (%(player)s = '' OR player_external_id = %(player)s)
ORDER BY started_at DESC
LIMIT %(limit)s OFFSET %(offset)s
"""

SESSION = """
SELECT toString(session_id) AS id, environment, version, platform, channel, player_external_id, device_id,
       metadata, toString(started_at) AS started
FROM forgeline.sessions FINAL
WHERE project_id = %(project)s AND session_id = toUUIDOrZero(%(session)s)
LIMIT 1
"""

SESSION_EVENTS = """
SELECT type, severity, properties, toString(occurred_at) AS at
FROM forgeline.game_events FINAL
WHERE project_id = %(project)s AND session_id = toUUIDOrZero(%(session)s)
ORDER BY occurred_at, event_id
LIMIT %(limit)s OFFSET %(offset)s
"""

REPORTS = """
SELECT toString(report_id) AS id, toString(session_id) AS session, environment, title, severity, reporter_type,
       length(upload_ids) AS attachments, export_providers, toString(received_at) AS received
FROM forgeline.reports FINAL
WHERE project_id = %(project)s AND received_at >= now64(3) - toIntervalDay(%(days)s)
ORDER BY received_at DESC
LIMIT %(limit)s OFFSET %(offset)s
"""

REPORT = """
SELECT toString(report_id) AS id, toString(session_id) AS session, environment, title, description, severity,
       reporter_type, upload_ids, export_providers, metadata, toString(received_at) AS received
FROM forgeline.reports FINAL
WHERE project_id = %(project)s AND report_id = toUUIDOrZero(%(report)s)
LIMIT 1
"""

UPLOADS = """
SELECT toString(upload_id) AS id, attachment_type, filename, content_type, size_bytes, storage_key
FROM forgeline.uploads FINAL
WHERE project_id = %(project)s AND upload_id IN %(uploads)s
LIMIT 100
"""

UPLOAD = """
SELECT toString(upload_id) AS id, filename, content_type, storage_key
FROM forgeline.uploads FINAL
WHERE project_id = %(project)s AND upload_id = toUUIDOrZero(%(upload)s)
LIMIT 1
"""

FUNNEL = """
SELECT step_name, uniqExact(player_id) AS players, count() AS events, min(occurred_at) AS first_at
FROM forgeline.funnel_steps
WHERE project_id = %(project)s AND occurred_at >= now64(3) - toIntervalDay(%(days)s)
GROUP BY step_name
ORDER BY players DESC, first_at
LIMIT 50
"""

LEVELS = """
SELECT level_id, count() AS runs, sum(point_count) AS points
FROM forgeline.trajectories
WHERE project_id = %(project)s AND started_at >= now64(3) - toIntervalDay(%(days)s)
GROUP BY level_id
ORDER BY runs DESC
LIMIT 50
"""

# The newest model uploaded for a level (POST /api/models), by the level's name.
LEVEL_MODEL = """
SELECT filename, content_type, size_bytes, storage_key, toString(uploaded_at) AS uploaded
FROM forgeline.level_models FINAL
WHERE project_id = %(project)s AND level_name = %(level)s
ORDER BY uploaded_at DESC
LIMIT 1
"""

# A level's recorded paths (binned into the heatmap by the console); at most 2000 runs.
TRAJECTORIES = """
SELECT xs, ys, zs
FROM forgeline.trajectories
WHERE project_id = %(project)s AND level_id = %(level)s AND started_at >= now64(3) - toIntervalDay(%(days)s)
ORDER BY started_at DESC
LIMIT 2000
"""
