# Every change writes an event: its row kept six indexes, of which the participant's own (and
# its pattern-ops twin) repeat the first column of (participant, livemode, id), and the id's
# pattern-ops twin serves no query (nothing matches an id with LIKE).

import django.db.models.deletion
from django.db import migrations, models

ID_TWIN = "hub_event_id_f2290e3c_like"


def _drop_twin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {ID_TWIN}")


def _make_twin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {ID_TWIN} ON hub_event (id varchar_pattern_ops)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("hub", "0004_transparency"),
    ]

    operations = [
        migrations.AlterField(
            model_name="event",
            name="participant",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="hub.participant",
            ),
        ),
        migrations.RunPython(_drop_twin, _make_twin),
    ]
