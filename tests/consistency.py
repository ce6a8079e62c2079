"""
The rules real conference data obeys beyond the schema's CHECK constraints,
as SQL: each query counts the rows that break its rule. The seed and the
synthetic data generator must both leave every count at zero.
"""

from __future__ import annotations

import asyncpg

from conference.devdata.target import table_names
from conference.tables import RecordingStatus

FINISHED_STATUSES = ", ".join(
    f"'{status.value}'"
    for status in RecordingStatus
    if status not in (RecordingStatus.starting, RecordingStatus.active, RecordingStatus.ending)
)

RULES: dict[str, str] = {
    "a participant leaves after joining": """
        SELECT count(*) FROM participants WHERE left_at < joined_at
    """,
    "a participant joins after the meeting started": """
        SELECT count(*) FROM participants p JOIN meetings m ON m.id = p.meeting_id
        WHERE p.joined_at < m.created_at
    """,
    "everyone in an ended meeting left before it ended": """
        SELECT count(*) FROM participants p JOIN meetings m ON m.id = p.meeting_id
        WHERE m.ended_at IS NOT NULL AND (p.left_at IS NULL OR p.left_at > m.ended_at)
    """,
    "a recording lies inside its meeting": """
        SELECT count(*) FROM recordings r JOIN meetings m ON m.id = r.meeting_id
        WHERE r.started_at IS NULL OR r.started_at < m.created_at
           OR r.completed_at > m.ended_at
           OR (m.ended_at IS NOT NULL AND r.completed_at IS NULL)
    """,
    "a recording has completed_at exactly when it is finished": f"""
        SELECT count(*) FROM recordings
        WHERE (status IN ({FINISHED_STATUSES})) <> (completed_at IS NOT NULL)
    """,
    "a complete recording has its file, size and duration, within its run": """
        SELECT count(*) FROM recordings
        WHERE status = 'complete'
          AND (storage_path IS NULL OR file_size IS NULL OR file_size = 0
               OR duration IS NULL OR duration = 0
               OR duration > extract(epoch FROM completed_at - started_at) + 0.001)
    """,
    "an event lies inside its meeting": """
        SELECT count(*) FROM analytics a JOIN meetings m ON m.id = a.meeting_id
        WHERE a.created_at < m.created_at OR a.created_at > m.ended_at
    """,
    "a participant's event is in its meeting and inside its session": """
        SELECT count(*) FROM analytics a JOIN participants p ON p.id = a.participant_id
        WHERE a.meeting_id <> p.meeting_id
           OR a.created_at < p.joined_at OR a.created_at > p.left_at
    """,
    "participant and track events name their participant, others none": """
        SELECT count(*) FROM analytics
        WHERE (event_type LIKE 'participant\\_%' OR event_type LIKE 'track\\_%')
              <> (participant_id IS NOT NULL)
    """,
    "every participant has one join event, at the join": """
        SELECT count(*) FROM participants p
        WHERE (SELECT count(*) FROM analytics a
               WHERE a.participant_id = p.id AND a.event_type = 'participant_joined'
                 AND a.created_at = p.joined_at) <> 1
           OR (SELECT count(*) FROM analytics a
               WHERE a.participant_id = p.id AND a.event_type = 'participant_joined') <> 1
    """,
    "a participant who left has one leave event, at the leave; others none": """
        SELECT count(*) FROM participants p
        WHERE (SELECT count(*) FROM analytics a
               WHERE a.participant_id = p.id AND a.event_type = 'participant_left'
                 AND a.created_at IS NOT DISTINCT FROM p.left_at)
              <> (CASE WHEN p.left_at IS NULL THEN 0 ELSE 1 END)
           OR (SELECT count(*) FROM analytics a
               WHERE a.participant_id = p.id AND a.event_type = 'participant_left')
              <> (CASE WHEN p.left_at IS NULL THEN 0 ELSE 1 END)
    """,
    "every meeting has room_started at its start, and room_finished at its end if ended": """
        SELECT count(*) FROM meetings m
        WHERE NOT EXISTS (SELECT 1 FROM analytics a WHERE a.meeting_id = m.id
                          AND a.event_type = 'room_started' AND a.created_at = m.created_at)
           OR (SELECT count(*) FROM analytics a WHERE a.meeting_id = m.id
               AND a.event_type = 'room_finished' AND a.created_at = m.ended_at)
              <> (CASE WHEN m.ended_at IS NULL THEN 0 ELSE 1 END)
    """,
    "an egress event names a recording of its meeting": """
        SELECT count(*) FROM analytics a
        WHERE a.event_type LIKE 'egress\\_%'
          AND NOT EXISTS (SELECT 1 FROM recordings r WHERE r.meeting_id = a.meeting_id
                          AND r.egress_id = a.event_data -> 'egressInfo' ->> 'egressId')
    """,
    "a finished recording has egress_started and egress_ended events": """
        SELECT count(*) FROM recordings r
        WHERE NOT EXISTS (SELECT 1 FROM analytics a WHERE a.meeting_id = r.meeting_id
                          AND a.event_type = 'egress_started' AND a.created_at = r.started_at
                          AND a.event_data -> 'egressInfo' ->> 'egressId' = r.egress_id)
           OR (r.completed_at IS NOT NULL AND NOT EXISTS (
                  SELECT 1 FROM analytics a WHERE a.meeting_id = r.meeting_id
                  AND a.event_type = 'egress_ended' AND a.created_at = r.completed_at
                  AND a.event_data -> 'egressInfo' ->> 'egressId' = r.egress_id))
    """,
    "an event's body is the webhook of its row": """
        SELECT count(*) FROM analytics
        WHERE event_data ->> 'event' IS DISTINCT FROM event_type
           OR event_data ->> 'id' IS DISTINCT FROM webhook_event_id
           OR (event_data ->> 'createdAt')::bigint <> floor(extract(epoch FROM created_at))
    """,
    "a participant's events carry its sid": """
        SELECT count(*) FROM analytics a JOIN participants p ON p.id = a.participant_id
        WHERE a.event_data -> 'participant' ->> 'sid' IS DISTINCT FROM p.participant_sid
           OR a.event_data -> 'participant' ->> 'identity' IS DISTINCT FROM p.identity
    """,
}


async def broken_rules(connection: asyncpg.Connection) -> dict[str, int]:
    """The rules some rows break, with how many rows; ``{}`` when all hold."""
    broken = {}
    for rule, sql in RULES.items():
        count = await connection.fetchval(sql)
        if count:
            broken[rule] = count
    return broken


async def latest_time(connection: asyncpg.Connection) -> object:
    """The latest moment any conference row mentions."""
    return await connection.fetchval(
        """
        SELECT max(t) FROM (
            SELECT max(greatest(created_at, ended_at)) FROM meetings
            UNION ALL SELECT max(greatest(joined_at, left_at)) FROM participants
            UNION ALL SELECT max(greatest(started_at, completed_at)) FROM recordings
            UNION ALL SELECT max(created_at) FROM analytics
        ) AS times(t)
        """
    )


async def table_dump(connection: asyncpg.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the conference tables (``tables.TABLES``), in id order."""
    dump = {}
    for table in table_names():
        rows = await connection.fetch(f"SELECT * FROM {table} ORDER BY id")
        dump[table] = [tuple(row) for row in rows]
    return dump
