"""Contract: a last catch-up copy with the legacy table locked against
writes, then drop it (docs/migrations.md). One transaction: a process
still on the old code either committed before the lock (and is copied) or
fails after it (and its publisher retries); nothing accepted is lost.

Backwards (``migrate notifications 0003``) re-creates the legacy table and
copies every notification back into it, so the previous release runs on
all of them (docs/migrations.md "Rolling back").
"""

from typing import Any

from django.db import migrations

from notifications.legacy_copy import copy_back, finish_copy


def forwards(apps: Any, schema_editor: Any) -> None:
    finish_copy(schema_editor.connection)


def backwards(apps: Any, schema_editor: Any) -> None:
    # Runs after the reverse of DeleteModel below has re-created the table.
    copy_back(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0003_copy_legacy_rows")]

    operations = [
        migrations.RunPython(forwards, backwards, elidable=True),
        migrations.DeleteModel(name="LegacyNotification"),
    ]
