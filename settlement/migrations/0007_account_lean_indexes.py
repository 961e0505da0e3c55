# Every account write kept five indexes: the owner's own (and its pattern-ops twin) repeat the
# first column of (owner, currency), and the id's pattern-ops twin serves no query (nothing
# matches an account id with LIKE). A balance update that cannot stay on its page (a busy
# account) writes a new entry into each. The indexes are dropped by name: altering the field
# would make SQLite rebuild the table under the ledger's triggers.

import django.db.models.deletion
from django.db import migrations, models

DROPPED = {
    "settlement_account_owner_id_3a5cd535": "owner_id",
    "settlement_account_owner_id_3a5cd535_like": "owner_id varchar_pattern_ops",
    "settlement_account_id_54f56fba_like": "id varchar_pattern_ops",
}


def _drop(apps, schema_editor):
    for name in DROPPED:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def _make(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    for name, columns in DROPPED.items():
        if postgresql or "varchar_pattern_ops" not in columns:
            schema_editor.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON settlement_account ({columns})"
            )


class Migration(migrations.Migration):
    dependencies = [
        ("hub", "0005_event_lean_indexes"),
        ("settlement", "0006_payins"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="account",
                    name="owner",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="accounts",
                        to="hub.participant",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(_drop, _make)],
        ),
    ]
