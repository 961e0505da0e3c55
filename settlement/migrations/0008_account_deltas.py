"""Hot accounts: moves that wait for no account lock (``AccountDelta``).

Every transfer locks both of its accounts until its commit, so transfers into one busy account
(the hub's fees account, a large merchant's) go one at a time, each holding the row through its
commit's flush. An account opened ``hot`` lifts that: when a statement names one, the trigger
locks, in id order and waiting, only the accounts whose flags could refuse the move (a debit to
an account that may not be overdrawn, a release of a hold, any move on an account that is not
hot); the others it takes with SKIP LOCKED. One it cannot take at once gets a delta row instead
of an update, and whoever next holds that account's lock folds its deltas into the columns
before changing them. What a move must pass is checked as before, by the account's CHECK
constraints, on the columns with every delta folded in. A statement that names no hot account
runs as before.

SQLite is unchanged: one writer at a time, so no deltas."""

import importlib
from typing import Any

from django.db import migrations, models

_TRIGGERS = importlib.import_module("settlement.migrations.0002_ledger_triggers")
_SPEED = importlib.import_module("settlement.migrations.0005_ledger_speed")

# The statement's moves, one row per account: its four columns' changes and how many transfers
# they sum.
MOVES = """(
    SELECT account_id, sum(dp) AS dp, sum(cp) AS cp, sum(dpe) AS dpe, sum(cpe) AS cpe,
           count(*) AS n
      FROM (
        SELECT debit_account_id AS account_id,
               CASE WHEN type IN ('single', 'post') THEN amount ELSE 0 END AS dp,
               0::bigint AS cp,
               CASE WHEN type = 'pending' THEN amount ELSE -coalesce(pending_amount, 0) END
                 AS dpe,
               0::bigint AS cpe
          FROM inserted
        UNION ALL
        SELECT credit_account_id,
               0::bigint,
               CASE WHEN type IN ('single', 'post') THEN amount ELSE 0 END,
               0::bigint,
               CASE WHEN type = 'pending' THEN amount ELSE -coalesce(pending_amount, 0) END
          FROM inserted
      ) moves
     GROUP BY account_id
)"""

APPLY = """
    CREATE OR REPLACE FUNCTION settlement_transfer_apply() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      offending text;
      any_unknown boolean;
      any_hot boolean;
      -- The statement's moves, one per account: its four columns' changes, how many transfers
      -- they sum, and whether the account's flags could refuse them.
      moves settlement_move[];
    BEGIN
      -- Both accounts exist, in the transfer's currency and mode: checked once per account
      -- named (with each currency and mode the statement gives it).
      SELECT bool_or(a.id IS NULL), bool_or(a.hot) INTO any_unknown, any_hot
        FROM (SELECT debit_account_id AS account_id, currency, livemode FROM inserted
              UNION SELECT credit_account_id, currency, livemode FROM inserted) named
        LEFT JOIN settlement_account a
          ON a.id = named.account_id AND a.currency = named.currency
         AND a.livemode = named.livemode;
      IF any_unknown THEN
        -- Refused: name a transfer that caused it.
        SELECT i.id INTO offending
          FROM inserted i
          LEFT JOIN settlement_account d
            ON d.id = i.debit_account_id AND d.currency = i.currency AND d.livemode = i.livemode
          LEFT JOIN settlement_account c
            ON c.id = i.credit_account_id AND c.currency = i.currency AND c.livemode = i.livemode
         WHERE d.id IS NULL OR c.id IS NULL
         LIMIT 1;
        RAISE EXCEPTION 'ledger:account_mismatch:%', offending USING ERRCODE = '23514';
      END IF;
      IF EXISTS (SELECT 1 FROM inserted WHERE pending_id IS NOT NULL) THEN
        SELECT i.id INTO offending
          FROM inserted i JOIN settlement_transfer p ON p.seq = i.pending_id
         WHERE p.type <> 'pending'
            OR p.debit_account_id <> i.debit_account_id
            OR p.credit_account_id <> i.credit_account_id
            OR p.amount <> i.pending_amount
            OR (i.type = 'post' AND p.expires_at IS NOT NULL AND p.expires_at <= i.created_at)
            OR (i.type = 'expire' AND (p.expires_at IS NULL OR p.expires_at > i.created_at))
         LIMIT 1;
        IF offending IS NOT NULL THEN
          RAISE EXCEPTION 'ledger:resolution_mismatch:%', offending USING ERRCODE = '23514';
        END IF;
      END IF;
      IF NOT coalesce(any_hot, false) THEN
        -- Checked first, locked last: an account's currency and mode never change, so the
        -- checks need no lock, and a busy account is held only for its update and the commit.
        PERFORM 1 FROM settlement_account a
         WHERE a.id IN (SELECT debit_account_id FROM inserted
                        UNION SELECT credit_account_id FROM inserted)
         ORDER BY a.id
         FOR NO KEY UPDATE;
        UPDATE settlement_account a
           SET debits_posted = a.debits_posted + d.dp,
               credits_posted = a.credits_posted + d.cp,
               debits_pending = a.debits_pending + d.dpe,
               credits_pending = a.credits_pending + d.cpe,
               version = a.version + d.n
          FROM {moves} d
         WHERE a.id = d.account_id;
        RETURN NULL;
      END IF;
      -- A hot account is among them: its moves, and whether its flags could refuse them.
      SELECT array_agg(ROW(s.account_id, s.dp, s.cp, s.dpe, s.cpe, s.n,
                           -- Free: nothing it changes can go below zero, and no flag bounds
                           -- what grows.
                           a.hot AND s.dp >= 0 AND s.cp >= 0 AND s.dpe >= 0 AND s.cpe >= 0
                           AND NOT (a.debits_must_not_exceed_credits AND s.dp + s.dpe > 0)
                           AND NOT (a.credits_must_not_exceed_debits AND s.cp + s.cpe > 0)
                          )::settlement_move)
        INTO moves
        FROM {moves} s
        JOIN settlement_account a ON a.id = s.account_id;
      PERFORM settlement_account_apply(moves);
      RETURN NULL;
    END
    $$
""".replace("{moves}", MOVES)

# The deltas that ``where`` picks, deleted and added to their accounts' columns.
FOLD = """
    WITH folded AS (DELETE FROM settlement_accountdelta d {where} RETURNING d.*)
    UPDATE settlement_account a
       SET debits_posted = a.debits_posted + f.dp, credits_posted = a.credits_posted + f.cp,
           debits_pending = a.debits_pending + f.dpe, credits_pending = a.credits_pending + f.cpe,
           version = a.version + f.n
      FROM (SELECT account_id, sum(debits_posted) AS dp, sum(credits_posted) AS cp,
                   sum(debits_pending) AS dpe, sum(credits_pending) AS cpe, sum(transfers) AS n
              FROM folded GROUP BY account_id) f
     WHERE a.id = f.account_id
"""

# The moves of a statement that names a hot account, applied: called by the trigger (only its
# updates pass the accounts' guard). Its statements take arrays as parameters; generic plans are
# made once per connection, where custom ones would be made at every transfer.
APPLY_MOVES = """
    CREATE FUNCTION settlement_account_apply(moves settlement_move[]) RETURNS void
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
    DECLARE
      waited_ids text[];
      taken_ids text[];
      locked_ids text[];
    BEGIN
      -- Locked last, so that a busy account is held only from here to the commit. The
      -- waited-for accounts first, in id order: nothing taken without waiting is held while
      -- waiting, so no deadlock comes of it.
      SELECT array_agg(w.id) INTO waited_ids
        FROM (SELECT a.id FROM settlement_account a
               WHERE a.id IN (SELECT m.account_id FROM unnest(moves) m WHERE NOT m.free)
               ORDER BY a.id FOR NO KEY UPDATE) w;
      SELECT array_agg(f.id) INTO taken_ids
        FROM (SELECT a.id FROM settlement_account a
               WHERE a.id IN (SELECT m.account_id FROM unnest(moves) m WHERE m.free)
                 FOR NO KEY UPDATE SKIP LOCKED) f;
      locked_ids := coalesce(waited_ids, '{}') || coalesce(taken_ids, '{}');
      -- Fold what waits beside the accounts now held: the checks below then see all of it.
      IF EXISTS (SELECT 1 FROM settlement_accountdelta d WHERE d.account_id = ANY(locked_ids))
      THEN
        {fold_held};
      END IF;
      UPDATE settlement_account a
         SET debits_posted = a.debits_posted + m.dp,
             credits_posted = a.credits_posted + m.cp,
             debits_pending = a.debits_pending + m.dpe,
             credits_pending = a.credits_pending + m.cpe,
             version = a.version + m.n
        FROM unnest(moves) m LEFT JOIN unnest(taken_ids) t(id) ON t.id = m.account_id
       WHERE a.id = m.account_id AND (NOT m.free OR t.id IS NOT NULL);
      IF cardinality(locked_ids) < cardinality(moves) THEN
        INSERT INTO settlement_accountdelta
               (account_id, debits_posted, credits_posted, debits_pending, credits_pending,
                transfers)
        SELECT m.account_id, m.dp, m.cp, m.dpe, m.cpe, m.n
          FROM unnest(moves) m LEFT JOIN unnest(taken_ids) t(id) ON t.id = m.account_id
         WHERE m.free AND t.id IS NULL;
      END IF;
    END
    $$
""".replace("{fold_held}", FOLD.format(where="WHERE d.account_id = ANY(locked_ids)").strip())

# One account's moves in a statement, as the trigger passes them between its statements.
MOVE_TYPE = """
    CREATE TYPE settlement_move AS (
      account_id text, dp bigint, cp bigint, dpe bigint, cpe bigint, n bigint, free boolean
    )
"""

# Deltas come and go all day: vacuumed after every thousand rather than after a fifth of the
# table, so that the index the trigger probes at every transfer stays small.
STORAGE = """
    ALTER TABLE settlement_accountdelta SET (
      autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
      autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 1000
    )
"""

# Only the ledger's triggers write deltas (one level down, or two from a fold's delete); and an
# account's hot flag and overdraft flags, which decide what may wait beside it, never change.
GUARDS = """
    CREATE FUNCTION settlement_accountdelta_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'ledger:delta_written_directly' USING ERRCODE = '23514';
    END
    $$;
    CREATE TRIGGER settlement_accountdelta_guard
      BEFORE INSERT OR UPDATE OR DELETE ON settlement_accountdelta
      FOR EACH ROW WHEN (pg_trigger_depth() = 0)
      EXECUTE FUNCTION settlement_accountdelta_guard();
    CREATE OR REPLACE FUNCTION settlement_account_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF (NEW.currency, NEW.livemode, NEW.kind, NEW.owner_id)
         IS DISTINCT FROM (OLD.currency, OLD.livemode, OLD.kind, OLD.owner_id) THEN
        RAISE EXCEPTION 'ledger:account_identity_immutable' USING ERRCODE = '23514';
      END IF;
      IF (NEW.hot, NEW.debits_must_not_exceed_credits, NEW.credits_must_not_exceed_debits)
         IS DISTINCT FROM
         (OLD.hot, OLD.debits_must_not_exceed_credits, OLD.credits_must_not_exceed_debits) THEN
        RAISE EXCEPTION 'ledger:account_flags_immutable' USING ERRCODE = '23514';
      END IF;
      IF pg_trigger_depth() < 2 AND
         (NEW.debits_posted, NEW.credits_posted, NEW.debits_pending, NEW.credits_pending,
          NEW.version)
         IS DISTINCT FROM
         (OLD.debits_posted, OLD.credits_posted, OLD.debits_pending, OLD.credits_pending,
          OLD.version) THEN
        RAISE EXCEPTION 'ledger:balance_written_directly' USING ERRCODE = '23514';
      END IF;
      RETURN NEW;
    END
    $$
"""

# The guard as 0002 made it.
GUARD_BEFORE = next(
    sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    for sql in _TRIGGERS.PG_FORWARD
    if "FUNCTION settlement_account_guard()" in sql
)

# Back to 0005: what waits is folded first (past the guard, which lets only triggers write
# balances).
FOLD_ALL = """
    ALTER TABLE settlement_account DISABLE TRIGGER settlement_account_guard;
    ALTER TABLE settlement_accountdelta DISABLE TRIGGER settlement_accountdelta_guard;
    {fold_all};
    ALTER TABLE settlement_account ENABLE TRIGGER settlement_account_guard;
    DROP TRIGGER settlement_accountdelta_guard ON settlement_accountdelta;
    DROP FUNCTION settlement_accountdelta_guard();
""".replace("{fold_all}", FOLD.format(where="").strip())


def _forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(STORAGE, params=None)
        schema_editor.execute(MOVE_TYPE, params=None)
        schema_editor.execute(APPLY_MOVES, params=None)
        schema_editor.execute(APPLY, params=None)
        schema_editor.execute(GUARDS, params=None)


def _backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_SPEED.APPLY, params=None)
        schema_editor.execute("DROP FUNCTION settlement_account_apply", params=None)
        schema_editor.execute("DROP TYPE settlement_move", params=None)
        schema_editor.execute(FOLD_ALL, params=None)
        schema_editor.execute(GUARD_BEFORE, params=None)


# Added in place on both databases: altering the table through the ORM would make SQLite
# rebuild it under the ledger's triggers.
ADD_HOT = "ALTER TABLE settlement_account ADD COLUMN hot boolean NOT NULL DEFAULT false"


def _add_hot(apps: Any, schema_editor: Any) -> None:
    schema_editor.execute(ADD_HOT, params=None)


def _drop_hot(apps: Any, schema_editor: Any) -> None:
    schema_editor.execute("ALTER TABLE settlement_account DROP COLUMN hot", params=None)


class Migration(migrations.Migration):
    dependencies = [("settlement", "0007_account_lean_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="account",
                    name="hot",
                    field=models.BooleanField(default=False),
                ),
            ],
            database_operations=[migrations.RunPython(_add_hot, _drop_hot)],
        ),
        migrations.CreateModel(
            name="AccountDelta",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "account",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=models.deletion.PROTECT,
                        related_name="+",
                        to="settlement.account",
                    ),
                ),
                ("debits_posted", models.BigIntegerField()),
                ("credits_posted", models.BigIntegerField()),
                ("debits_pending", models.BigIntegerField()),
                ("credits_pending", models.BigIntegerField()),
                ("transfers", models.BigIntegerField()),
            ],
            options={
                "indexes": [models.Index(fields=["account"], name="account_delta_account")],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("debits_posted__gte", 0),
                            ("credits_posted__gte", 0),
                            ("debits_pending__gte", 0),
                            ("credits_pending__gte", 0),
                            ("transfers__gt", 0),
                        ),
                        name="account_delta_not_negative",
                    )
                ],
            },
        ),
        migrations.RunPython(_forward, _backward),
    ]
