"""Prepaid money: recharges, the ledger, the command log (cuts and restores), tariffs and policy."""
