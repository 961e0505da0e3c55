"""Transparency log: an append-only Merkle tree of receipts with RFC 6962 / RFC 9162 proofs."""
