"""Settlement: the double-entry ledger, payins, payouts, settlement runs, bank statements and
their reconciliation."""
