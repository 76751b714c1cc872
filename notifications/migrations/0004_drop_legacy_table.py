"""Contract: a last catch-up copy with the legacy table locked against
writes, then drop it (docs/migrations.md). One transaction: a process
still on the old code either committed before the lock (and is copied) or
fails after it (and its publisher retries); nothing accepted is lost.
"""

from typing import Any

from django.db import migrations

from notifications.legacy_copy import finish_copy


def forwards(apps: Any, schema_editor: Any) -> None:
    finish_copy(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0003_copy_legacy_rows")]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop, elidable=True),
        migrations.DeleteModel(name="LegacyNotification"),
    ]
