# A conversion's row had twelve indexes, each written by every conversion: the merchant's and the
# accounts' (with their pattern-ops twins), never read, go; so do the pattern-ops twins of the id
# and the quote (no query matches them with LIKE). The account links lose their database
# foreign keys, checked at each commit: the ledger keeps every account (a trigger refuses a
# delete), and PROTECT still holds in the ORM.

import django.db.models.deletion
from django.db import migrations, models

PATTERN_TWINS = {
    "fx_fxconversion_id_4819d553_like": "id",
    "fx_fxconversion_quote_id_5aab8418_like": "quote_id",
}


def _drop_twins(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in PATTERN_TWINS:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def _make_twins(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, column in PATTERN_TWINS.items():
            schema_editor.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON fx_fxconversion "
                f"({column} varchar_pattern_ops)"
            )


class Migration(migrations.Migration):
    dependencies = [
        ("fx", "0005_receipts_claim_index"),
        ("hub", "0004_transparency"),
        ("settlement", "0006_payins"),
    ]

    operations = [
        migrations.AlterField(
            model_name="fxconversion",
            name="buy_account",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="settlement.account",
            ),
        ),
        migrations.AlterField(
            model_name="fxconversion",
            name="merchant",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="hub.participant",
            ),
        ),
        migrations.AlterField(
            model_name="fxconversion",
            name="sell_account",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="settlement.account",
            ),
        ),
        migrations.RunPython(_drop_twins, _make_twins),
    ]
