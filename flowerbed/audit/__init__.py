"""Residency policy, ledgers, the coordinator's ledgered Grid, verification and reports."""
