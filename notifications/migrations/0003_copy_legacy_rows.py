"""Backfill: copy the legacy rows, one committed batch at a time.

Non-atomic, so no transaction spans the copy: each batch of legacy ids
commits alone (notifications/legacy_copy.py). On a large table, run
``manage.py notify_backfill`` first (docs/migrations.md); this then finds
every row already copied and is quick.
"""

from typing import Any

from django.db import migrations

from notifications.legacy_copy import copy_legacy, legacy_table_exists


def forwards(apps: Any, schema_editor: Any) -> None:
    if legacy_table_exists(schema_editor.connection):
        copy_legacy(schema_editor.connection)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("notifications", "0002_event_and_recipient")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop, elidable=True)]
