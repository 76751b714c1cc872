"""The user key on PostgreSQL: ``notify_user_sequence.key``, a 4-byte
integer per user for the compact recipient layout (docs/scaling.md).

Non-atomic: each step of ``user_keys.add_key_column`` commits alone, none
holds an exclusive lock for longer than a catalog change, and a re-run
resumes an interrupted one (docs/migrations.md, "0005"). SQLite keeps the
simple schema: its recipient rows carry the user id, so it has no key.
The models do not declare the column: only publishing's counter upsert
(pg_writes) writes it, and the column's default keys rows made otherwise.
"""

from typing import Any

from django.db import migrations

from notifications import user_keys


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        user_keys.add_key_column(schema_editor.connection)


def backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {user_keys.TABLE} DROP COLUMN IF EXISTS key")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("notifications", "0004_drop_legacy_table")]

    operations = [migrations.RunPython(forwards, backwards)]
