"""The compact recipient table on PostgreSQL (notifications/
recipient_layout.py): rows keyed by the 4-byte user key, partitioned by
day, 97.5 bytes a row with its indexes where the previous layout took 142
(docs/scaling.md). The copy holds the old table's lock while it runs:
docs/migrations.md, "0006", says when that is fine and what a large live
table takes. SQLite keeps its table.

Both databases get ``notify_recipient_view``, the admin's view of the rows
(models.NotificationRow): the user id beside each row and an object id of
``user_id:seq``.
"""

from typing import Any

from django.db import migrations, models

from notifications import recipient_layout

_VIEW_POSTGRES = (
    "CREATE VIEW notify_recipient_view AS "
    "SELECT s.user_id || ':' || r.seq AS id, s.user_id, r.seq, r.event_ref, r.day, r.read_at "
    "FROM notify_recipient r JOIN notify_user_sequence s ON s.key = r.user_key"
)
_VIEW_SQLITE = (
    "CREATE VIEW notify_recipient_view AS "
    "SELECT user_id || ':' || seq AS id, user_id, seq, event_ref, date(created_at) AS day, "
    "read_at FROM notify_recipient"
)


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        recipient_layout.convert(schema_editor.connection)
        schema_editor.execute(_VIEW_POSTGRES)
    else:
        schema_editor.execute(_VIEW_SQLITE)


def backwards(apps: Any, schema_editor: Any) -> None:
    schema_editor.execute("DROP VIEW IF EXISTS notify_recipient_view")
    if schema_editor.connection.vendor == "postgresql":
        recipient_layout.revert(schema_editor.connection)


class Migration(migrations.Migration):
    atomic = False  # recipient_layout commits its own transaction

    dependencies = [("notifications", "0005_user_key")]

    operations = [
        migrations.RunPython(forwards, backwards),
        migrations.CreateModel(
            name="NotificationRow",
            fields=[
                ("id", models.CharField(max_length=160, primary_key=True, serialize=False)),
                ("user_id", models.CharField(max_length=128)),
                ("seq", models.BigIntegerField()),
                (
                    "event",
                    models.ForeignKey(
                        db_column="event_ref",
                        db_constraint=False,
                        on_delete=models.deletion.DO_NOTHING,
                        related_name="+",
                        to="notifications.notificationevent",
                    ),
                ),
                ("day", models.DateField()),
                ("read_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "verbose_name": "notification",
                "db_table": "notify_recipient_view",
                "managed": False,
            },
        ),
    ]
