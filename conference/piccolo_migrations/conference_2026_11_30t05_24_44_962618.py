from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from enum import Enum
from piccolo.columns.base import OnDelete
from piccolo.columns.base import OnUpdate
from piccolo.columns.column_types import BigInt
from piccolo.columns.column_types import DoublePrecision
from piccolo.columns.column_types import ForeignKey
from piccolo.columns.column_types import JSONB
from piccolo.columns.column_types import Text
from piccolo.columns.column_types import Timestamptz
from piccolo.columns.column_types import UUID
from piccolo.columns.column_types import Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod
from piccolo.constraints import Check
from piccolo.table import Table


class Meeting(Table, tablename="meetings", schema=None):
    id = UUID(
        default=UUID4(),
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name=None,
        secret=False,
    )


class Participant(Table, tablename="participants", schema=None):
    id = UUID(
        default=UUID4(),
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name=None,
        secret=False,
    )


ID = "2026-11-30T05:24:44:962618"
VERSION = "1.38.0"
DESCRIPTION = "initial schema"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="conference", description=DESCRIPTION
    )

    manager.add_table(
        class_name="Participant",
        tablename="participants",
        schema=None,
        columns=None,
    )

    manager.add_table(
        class_name="AnalyticsEvent",
        tablename="analytics",
        schema=None,
        columns=None,
    )

    manager.add_table(
        class_name="Meeting", tablename="meetings", schema=None, columns=None
    )

    manager.add_table(
        class_name="Recording", tablename="recordings", schema=None, columns=None
    )

    manager.add_column(
        table_class_name="Participant",
        tablename="participants",
        column_name="id",
        db_column_name="id",
        column_class_name="UUID",
        column_class=UUID,
        params={
            "default": UUID4(),
            "null": False,
            "primary_key": True,
            "unique": False,
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
        column_name="meeting_id",
        db_column_name="meeting_id",
        column_class_name="ForeignKey",
        column_class=ForeignKey,
        params={
            "references": Meeting,
            "on_delete": OnDelete.cascade,
            "on_update": OnUpdate.cascade,
            "target_column": None,
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": True,
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
        column_name="identity",
        db_column_name="identity",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 255,
            "default": None,
            "null": False,
            "primary_key": False,
            "unique": False,
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
        column_name="joined_at",
        db_column_name="joined_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": TimestamptzNow(),
            "null": False,
            "primary_key": False,
            "unique": False,
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
        column_name="left_at",
        db_column_name="left_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
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
        column_name="metadata",
        db_column_name="metadata",
        column_class_name="JSONB",
        column_class=JSONB,
        params={
            "default": "{}",
            "null": False,
            "primary_key": False,
            "unique": False,
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
        column_name="id",
        db_column_name="id",
        column_class_name="UUID",
        column_class=UUID,
        params={
            "default": UUID4(),
            "null": False,
            "primary_key": True,
            "unique": False,
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
        column_name="meeting_id",
        db_column_name="meeting_id",
        column_class_name="ForeignKey",
        column_class=ForeignKey,
        params={
            "references": Meeting,
            "on_delete": OnDelete.cascade,
            "on_update": OnUpdate.cascade,
            "target_column": None,
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": True,
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
        column_name="participant_id",
        db_column_name="participant_id",
        column_class_name="ForeignKey",
        column_class=ForeignKey,
        params={
            "references": Participant,
            "on_delete": OnDelete.cascade,
            "on_update": OnUpdate.cascade,
            "target_column": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": True,
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
        column_name="event_type",
        db_column_name="event_type",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 64,
            "default": None,
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": True,
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
        column_name="event_data",
        db_column_name="event_data",
        column_class_name="JSONB",
        column_class=JSONB,
        params={
            "default": "{}",
            "null": False,
            "primary_key": False,
            "unique": False,
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
        column_name="created_at",
        db_column_name="created_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": TimestamptzNow(),
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Meeting",
        tablename="meetings",
        column_name="id",
        db_column_name="id",
        column_class_name="UUID",
        column_class=UUID,
        params={
            "default": UUID4(),
            "null": False,
            "primary_key": True,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Meeting",
        tablename="meetings",
        column_name="room_name",
        db_column_name="room_name",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 255,
            "default": None,
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": True,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Meeting",
        tablename="meetings",
        column_name="created_at",
        db_column_name="created_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": TimestamptzNow(),
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": True,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Meeting",
        tablename="meetings",
        column_name="ended_at",
        db_column_name="ended_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Meeting",
        tablename="meetings",
        column_name="metadata",
        db_column_name="metadata",
        column_class_name="JSONB",
        column_class=JSONB,
        params={
            "default": "{}",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Recording",
        tablename="recordings",
        column_name="id",
        db_column_name="id",
        column_class_name="UUID",
        column_class=UUID,
        params={
            "default": UUID4(),
            "null": False,
            "primary_key": True,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Recording",
        tablename="recordings",
        column_name="meeting_id",
        db_column_name="meeting_id",
        column_class_name="ForeignKey",
        column_class=ForeignKey,
        params={
            "references": Meeting,
            "on_delete": OnDelete.cascade,
            "on_update": OnUpdate.cascade,
            "target_column": None,
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": True,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Recording",
        tablename="recordings",
        column_name="egress_id",
        db_column_name="egress_id",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 255,
            "default": None,
            "null": False,
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
        table_class_name="Recording",
        tablename="recordings",
        column_name="storage_path",
        db_column_name="storage_path",
        column_class_name="Text",
        column_class=Text,
        params={
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Recording",
        tablename="recordings",
        column_name="status",
        db_column_name="status",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 32,
            "default": "starting",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": True,
            "index_method": IndexMethod.btree,
            "choices": Enum(
                "RecordingStatus",
                {
                    "starting": "starting",
                    "active": "active",
                    "ending": "ending",
                    "complete": "complete",
                    "failed": "failed",
                    "aborted": "aborted",
                    "limit_reached": "limit_reached",
                },
            ),
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Recording",
        tablename="recordings",
        column_name="started_at",
        db_column_name="started_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Recording",
        tablename="recordings",
        column_name="completed_at",
        db_column_name="completed_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Recording",
        tablename="recordings",
        column_name="file_size",
        db_column_name="file_size",
        column_class_name="BigInt",
        column_class=BigInt,
        params={
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Recording",
        tablename="recordings",
        column_name="duration",
        db_column_name="duration",
        column_class_name="DoublePrecision",
        column_class=DoublePrecision,
        params={
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Recording",
        tablename="recordings",
        column_name="metadata",
        db_column_name="metadata",
        column_class_name="JSONB",
        column_class=JSONB,
        params={
            "default": "{}",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Participant",
        tablename="participants",
        constraint_name="participants_identity_not_blank",
        constraint_class=Check,
        params={"condition": "btrim(identity) <> ''"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Participant",
        tablename="participants",
        constraint_name="participants_left_after_joined",
        constraint_class=Check,
        params={"condition": "left_at IS NULL OR left_at >= joined_at"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Participant",
        tablename="participants",
        constraint_name="participants_metadata_is_object",
        constraint_class=Check,
        params={"condition": "jsonb_typeof(metadata) = 'object'"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="AnalyticsEvent",
        tablename="analytics",
        constraint_name="analytics_event_type_not_blank",
        constraint_class=Check,
        params={"condition": "btrim(event_type) <> ''"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="AnalyticsEvent",
        tablename="analytics",
        constraint_name="analytics_event_data_is_object",
        constraint_class=Check,
        params={"condition": "jsonb_typeof(event_data) = 'object'"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Meeting",
        tablename="meetings",
        constraint_name="meetings_room_name_not_blank",
        constraint_class=Check,
        params={"condition": "btrim(room_name) <> ''"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Meeting",
        tablename="meetings",
        constraint_name="meetings_ended_after_created",
        constraint_class=Check,
        params={"condition": "ended_at IS NULL OR ended_at >= created_at"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Meeting",
        tablename="meetings",
        constraint_name="meetings_metadata_is_object",
        constraint_class=Check,
        params={"condition": "jsonb_typeof(metadata) = 'object'"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Recording",
        tablename="recordings",
        constraint_name="recordings_egress_id_not_blank",
        constraint_class=Check,
        params={"condition": "btrim(egress_id) <> ''"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Recording",
        tablename="recordings",
        constraint_name="recordings_status_is_known",
        constraint_class=Check,
        params={
            "condition": "status IN ('starting', 'active', 'ending', 'complete', 'failed', 'aborted', 'limit_reached')"
        },
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Recording",
        tablename="recordings",
        constraint_name="recordings_completed_after_started",
        constraint_class=Check,
        params={
            "condition": "completed_at IS NULL OR started_at IS NULL OR completed_at >= started_at"
        },
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Recording",
        tablename="recordings",
        constraint_name="recordings_file_size_not_negative",
        constraint_class=Check,
        params={"condition": "file_size IS NULL OR file_size >= 0"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Recording",
        tablename="recordings",
        constraint_name="recordings_duration_not_negative",
        constraint_class=Check,
        params={"condition": "duration IS NULL OR duration >= 0"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Recording",
        tablename="recordings",
        constraint_name="recordings_metadata_is_object",
        constraint_class=Check,
        params={"condition": "jsonb_typeof(metadata) = 'object'"},
        schema=None,
    )

    return manager
