"""Residency policy (and, as the audit grows, ledgers, verification and reports)."""

from flowerbed.audit.residency import ResidencyPolicy

__all__ = ["ResidencyPolicy"]
