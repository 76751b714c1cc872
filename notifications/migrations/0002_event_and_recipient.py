"""Expand: the event and recipient tables beside the legacy one.

The legacy model is renamed in Django's state only (its table keeps its
name) so that 0003 can copy from it and 0004 drop it (docs/migrations.md).
On PostgreSQL the two tables are partitioned by day (notifications/
partitions.py has their DDL, which differs from the models' where the
partition key must be part of a unique index); elsewhere Django creates them
from the models.
"""

import uuid
from typing import Any

import django.db.models.deletion
from django.db import migrations, models

from notifications import partitions


def create_on_postgres(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        partitions.create_tables()


def drop_on_postgres(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for table in ("notify_recipient", "notify_event"):  # their partitions go too
            schema_editor.execute(f"DROP TABLE {table}")


class CreateModelUnlessPostgres(migrations.CreateModel):
    """The model's table as Django makes it, except on PostgreSQL
    (``create_on_postgres`` makes the partitioned one there)."""

    def database_forwards(self, app_label: str, schema_editor: Any, *args: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, *args)

    def database_backwards(self, app_label: str, schema_editor: Any, *args: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_backwards(app_label, schema_editor, *args)


STATE = [
    CreateModelUnlessPostgres(
        name="NotificationEvent",
        fields=[
            (
                "id",
                models.BigAutoField(
                    auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                ),
            ),
            ("event_id", models.UUIDField(default=uuid.uuid4, unique=True)),
            ("type", models.CharField(max_length=100)),
            ("title", models.CharField(blank=True, default="", max_length=200)),
            ("body", models.TextField(blank=True, default="")),
            ("data", models.JSONField(default=dict)),
            ("source", models.CharField(max_length=100)),
            ("created_at", models.DateTimeField()),
        ],
        options={
            "db_table": "notify_event",
            "indexes": [models.Index(fields=["created_at"], name="notify_event_created_idx")],
        },
    ),
    CreateModelUnlessPostgres(
        name="Notification",
        fields=[
            (
                "id",
                models.BigAutoField(
                    auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                ),
            ),
            ("user_id", models.CharField(max_length=128)),
            ("seq", models.BigIntegerField()),
            (
                "event",
                models.ForeignKey(
                    db_column="event_ref",
                    db_constraint=False,
                    db_index=False,
                    on_delete=django.db.models.deletion.DO_NOTHING,
                    related_name="recipients",
                    to="notifications.notificationevent",
                ),
            ),
            ("created_at", models.DateTimeField()),
            ("read_at", models.DateTimeField(blank=True, null=True)),
        ],
        options={
            "db_table": "notify_recipient",
            "indexes": [
                models.Index(
                    condition=models.Q(("read_at__isnull", True)),
                    fields=["user_id", "seq"],
                    name="notify_recipient_unread_idx",
                ),
                models.Index(fields=["created_at"], name="notify_recipient_created_idx"),
            ],
            "constraints": [
                models.UniqueConstraint(fields=("user_id", "seq"), name="notify_recipient_seq_uniq")
            ],
        },
    ),
]


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]

    operations = [
        migrations.RenameModel("Notification", "LegacyNotification"),
        *STATE,
        migrations.RunPython(create_on_postgres, drop_on_postgres),
    ]
