"""DP-SGD with Opacus, privacy accounting and per-site budgets."""

from flowerbed.privacy.accounting import BudgetExhausted, PrivacyAccount, plan_noise
from flowerbed.privacy.per_sample import layout_safe_conv_grad_sample

__all__ = ["BudgetExhausted", "PrivacyAccount", "layout_safe_conv_grad_sample", "plan_noise"]
