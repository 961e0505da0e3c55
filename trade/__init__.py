"""Trade documents: orders, payment records, waybills, customs declarations, B2B contracts and
invoices, one at a time or in bulk files."""
