"""DP-SGD with Opacus, privacy accounting and per-site budgets."""

from flowerbed.privacy.accounting import BudgetExhausted, PrivacyAccount, plan_noise

__all__ = ["BudgetExhausted", "PrivacyAccount", "plan_noise"]
