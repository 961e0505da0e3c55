# Every account write kept five indexes: the owner's own (and its pattern-ops twin) repeat the
# first column of (owner, currency), and the id's pattern-ops twin serves no query (nothing
# matches an account id with LIKE). A balance update that cannot stay on its page (a busy
# account) writes a new entry into each.

import django.db.models.deletion
from django.db import migrations, models

ID_TWIN = "settlement_account_id_54f56fba_like"


def _drop_twin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {ID_TWIN}")


def _make_twin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {ID_TWIN} ON settlement_account (id varchar_pattern_ops)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("hub", "0005_event_lean_indexes"),
        ("settlement", "0006_payins"),
    ]

    operations = [
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
        migrations.RunPython(_drop_twin, _make_twin),
    ]
