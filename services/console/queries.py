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
