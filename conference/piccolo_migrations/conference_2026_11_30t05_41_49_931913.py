from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod
from piccolo.constraints import Check

ID = "2026-11-30T05:41:49:931913"
VERSION = "1.38.0"
DESCRIPTION = "LiveKit keys: meetings.room_sid, participants.participant_sid, analytics.webhook_event_id (unique, nullable)"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="conference", description=DESCRIPTION
    )

    manager.add_column(
        table_class_name="Meeting",
        tablename="meetings",
        column_name="room_sid",
        db_column_name="room_sid",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 255,
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": True,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Participant",
        tablename="participants",
        column_name="participant_sid",
        db_column_name="participant_sid",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 255,
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": True,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="AnalyticsEvent",
        tablename="analytics",
        column_name="webhook_event_id",
        db_column_name="webhook_event_id",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 255,
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": True,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Meeting",
        tablename="meetings",
        constraint_name="meetings_room_sid_not_blank",
        constraint_class=Check,
        params={"condition": "room_sid IS NULL OR btrim(room_sid) <> ''"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Participant",
        tablename="participants",
        constraint_name="participants_participant_sid_not_blank",
        constraint_class=Check,
        params={
            "condition": "participant_sid IS NULL OR btrim(participant_sid) <> ''"
        },
        schema=None,
    )

    manager.add_constraint(
        table_class_name="AnalyticsEvent",
        tablename="analytics",
        constraint_name="analytics_webhook_event_id_not_blank",
        constraint_class=Check,
        params={
            "condition": "webhook_event_id IS NULL OR btrim(webhook_event_id) <> ''"
        },
        schema=None,
    )

    return manager
