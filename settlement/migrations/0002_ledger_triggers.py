"""The ledger's rules inside the database (PostgreSQL in production, SQLite for the embedded
default): balances move only with transfers, transfers never change, both accounts of a transfer
exist with its currency and mode, a resolution matches the pending transfer it resolves, and
accounts are never deleted (on SQLite, whose test runner empties tables with DELETE, only the
rest)."""

from typing import Any

from django.db import migrations

# --- PostgreSQL ---------------------------------------------------------------------------------

PG_FORWARD = [
    # Balance updates change no indexed column: with room left on each page they stay on it
    # (HOT updates), and a busy account's index entries are not rewritten with every transfer.
    "ALTER TABLE settlement_account SET (fillfactor = 70)",
    # One statement of inserted transfers (one row or a COPY of thousands): check the accounts
    # and the resolutions against their pending transfers, lock the accounts in id order (no
    # deadlocks), then one update per account with the statement's sums. CHECK constraints on
    # the account refuse an overdraft.
    """
    CREATE FUNCTION settlement_transfer_apply() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      offending text;
    BEGIN
      -- Both accounts exist, in the transfer's currency and mode (one join for the statement).
      SELECT i.id INTO offending
        FROM inserted i
        LEFT JOIN settlement_account d
          ON d.id = i.debit_account_id AND d.currency = i.currency AND d.livemode = i.livemode
        LEFT JOIN settlement_account c
          ON c.id = i.credit_account_id AND c.currency = i.currency AND c.livemode = i.livemode
       WHERE d.id IS NULL OR c.id IS NULL
       LIMIT 1;
      IF offending IS NOT NULL THEN
        RAISE EXCEPTION 'ledger:account_mismatch:%', offending USING ERRCODE = '23514';
      END IF;
      -- Most statements resolve nothing: skip the join to the (large) transfer table then.
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
      -- Checked first, locked last: an account's currency and mode never change, so the checks
      -- need no lock, and a busy account is held only for its update and the commit.
      PERFORM 1 FROM settlement_account a
       WHERE a.id IN (SELECT debit_account_id FROM inserted
                      UNION SELECT credit_account_id FROM inserted)
       ORDER BY a.id
       FOR NO KEY UPDATE;
      UPDATE settlement_account a
         SET debits_posted = a.debits_posted + d.debits_posted,
             credits_posted = a.credits_posted + d.credits_posted,
             debits_pending = a.debits_pending + d.debits_pending,
             credits_pending = a.credits_pending + d.credits_pending,
             version = a.version + d.transfers
        FROM (
          SELECT account_id,
                 sum(debits_posted) AS debits_posted, sum(credits_posted) AS credits_posted,
                 sum(debits_pending) AS debits_pending, sum(credits_pending) AS credits_pending,
                 count(*) AS transfers
            FROM (
              SELECT debit_account_id AS account_id,
                     CASE WHEN type IN ('single', 'post') THEN amount ELSE 0 END AS debits_posted,
                     0::bigint AS credits_posted,
                     CASE WHEN type = 'pending' THEN amount ELSE -coalesce(pending_amount, 0) END
                       AS debits_pending,
                     0::bigint AS credits_pending
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
        ) d
       WHERE a.id = d.account_id;
      RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER settlement_transfer_apply
      AFTER INSERT ON settlement_transfer
      REFERENCING NEW TABLE AS inserted
      FOR EACH STATEMENT EXECUTE FUNCTION settlement_transfer_apply()
    """,
    # Transfers are facts: never updated, never deleted (TRUNCATE, used only to reset a test
    # database, fires no row trigger).
    """
    CREATE FUNCTION settlement_transfer_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'ledger:transfer_immutable' USING ERRCODE = '23514';
    END
    $$
    """,
    """
    CREATE TRIGGER settlement_transfer_immutable
      BEFORE UPDATE OR DELETE ON settlement_transfer
      FOR EACH ROW EXECUTE FUNCTION settlement_transfer_immutable()
    """,
    # Balances change only through the transfer trigger (one level down); an account's currency,
    # mode and kind never change.
    """
    CREATE FUNCTION settlement_account_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF (NEW.currency, NEW.livemode, NEW.kind, NEW.owner_id)
         IS DISTINCT FROM (OLD.currency, OLD.livemode, OLD.kind, OLD.owner_id) THEN
        RAISE EXCEPTION 'ledger:account_identity_immutable' USING ERRCODE = '23514';
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
    """,
    # The ledger's own updates (from the transfer trigger, one level down) change no identity
    # column, and skip the function altogether.
    """
    CREATE TRIGGER settlement_account_guard
      BEFORE UPDATE ON settlement_account
      FOR EACH ROW
      WHEN (pg_trigger_depth() = 0
            OR (NEW.currency, NEW.livemode, NEW.kind, NEW.owner_id)
               IS DISTINCT FROM (OLD.currency, OLD.livemode, OLD.kind, OLD.owner_id))
      EXECUTE FUNCTION settlement_account_guard()
    """,
    # Transfers name their accounts without a foreign key: accounts are never deleted.
    """
    CREATE FUNCTION settlement_account_kept() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'ledger:account_kept' USING ERRCODE = '23514';
    END
    $$
    """,
    """
    CREATE TRIGGER settlement_account_kept
      BEFORE DELETE ON settlement_account
      FOR EACH ROW EXECUTE FUNCTION settlement_account_kept()
    """,
]

PG_REVERSE = [
    "DROP TRIGGER settlement_account_kept ON settlement_account",
    "DROP FUNCTION settlement_account_kept()",
    "DROP TRIGGER settlement_account_guard ON settlement_account",
    "DROP FUNCTION settlement_account_guard()",
    "DROP TRIGGER settlement_transfer_immutable ON settlement_transfer",
    "DROP FUNCTION settlement_transfer_immutable()",
    "DROP TRIGGER settlement_transfer_apply ON settlement_transfer",
    "DROP FUNCTION settlement_transfer_apply()",
    "ALTER TABLE settlement_account RESET (fillfactor)",
]

# --- SQLite (row triggers: it has no statement triggers with transition tables) ----------------

SQLITE_FORWARD = [
    """
    CREATE TRIGGER settlement_transfer_check BEFORE INSERT ON settlement_transfer
    BEGIN
      SELECT RAISE(ABORT, 'ledger:account_mismatch')
       WHERE NOT EXISTS (SELECT 1 FROM settlement_account
                          WHERE id = NEW.debit_account_id AND currency = NEW.currency
                            AND livemode = NEW.livemode)
          OR NOT EXISTS (SELECT 1 FROM settlement_account
                          WHERE id = NEW.credit_account_id AND currency = NEW.currency
                            AND livemode = NEW.livemode);
      SELECT RAISE(ABORT, 'ledger:resolution_mismatch')
       WHERE NEW.pending_id IS NOT NULL AND NOT EXISTS (
         SELECT 1 FROM settlement_transfer p
          WHERE p.seq = NEW.pending_id AND p.type = 'pending'
            AND p.debit_account_id = NEW.debit_account_id
            AND p.credit_account_id = NEW.credit_account_id
            AND p.amount = NEW.pending_amount
            AND (NEW.type <> 'post' OR p.expires_at IS NULL OR p.expires_at > NEW.created_at)
            AND (NEW.type <> 'expire'
                 OR (p.expires_at IS NOT NULL AND p.expires_at <= NEW.created_at)));
    END
    """,
    """
    CREATE TRIGGER settlement_transfer_apply AFTER INSERT ON settlement_transfer
    BEGIN
      UPDATE settlement_account
         SET debits_posted = debits_posted
               + CASE WHEN NEW.type IN ('single', 'post') THEN NEW.amount ELSE 0 END,
             debits_pending = debits_pending
               + CASE WHEN NEW.type = 'pending' THEN NEW.amount
                      ELSE -coalesce(NEW.pending_amount, 0) END,
             version = version + 1
       WHERE id = NEW.debit_account_id;
      UPDATE settlement_account
         SET credits_posted = credits_posted
               + CASE WHEN NEW.type IN ('single', 'post') THEN NEW.amount ELSE 0 END,
             credits_pending = credits_pending
               + CASE WHEN NEW.type = 'pending' THEN NEW.amount
                      ELSE -coalesce(NEW.pending_amount, 0) END,
             version = version + 1
       WHERE id = NEW.credit_account_id;
    END
    """,
    # Updates only: the test runner resets an SQLite database with DELETE.
    """
    CREATE TRIGGER settlement_transfer_immutable BEFORE UPDATE ON settlement_transfer
    BEGIN
      SELECT RAISE(ABORT, 'ledger:transfer_immutable');
    END
    """,
    """
    CREATE TRIGGER settlement_account_guard BEFORE UPDATE ON settlement_account
    WHEN NEW.currency <> OLD.currency OR NEW.livemode <> OLD.livemode OR NEW.kind <> OLD.kind
         OR NEW.owner_id <> OLD.owner_id
    BEGIN
      SELECT RAISE(ABORT, 'ledger:account_identity_immutable');
    END
    """,
]

SQLITE_REVERSE = [
    "DROP TRIGGER settlement_account_guard",
    "DROP TRIGGER settlement_transfer_immutable",
    "DROP TRIGGER settlement_transfer_apply",
    "DROP TRIGGER settlement_transfer_check",
]


def _run(statements: dict[str, list[str]]) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        for sql in statements[schema_editor.connection.vendor]:
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("settlement", "0001_ledger")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": PG_FORWARD, "sqlite": SQLITE_FORWARD}),
            _run({"postgresql": PG_REVERSE, "sqlite": SQLITE_REVERSE}),
        )
    ]
