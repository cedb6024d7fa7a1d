"""Measured privacy: how well a membership-inference attack tells training data apart.

The loss-threshold attack (Yeom et al. 2018) guesses "member" when a
model's loss on an example is low. Its ROC AUC over a site's own training
examples (members) against its held-out test examples (non-members) is the
leak measured in fact, beside the epsilon promised on paper: 0.5 means the
attacker learns nothing, 1.0 that it tells every member apart. The site
computes it on its own data; only the number leaves. An example's loss is
its cross-entropy; for a segmentation, the mean over its voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.metrics import compute_roc_auc

NAN = float("nan")


@dataclass(frozen=True)
class Leak:
    """What a site measures of its model's leak, beside the epsilon its accountant promises:
    the loss-threshold attack's AUC and its true-positive rate at 1 % and 0.1 % false
    positives (an attack that finds a few members for sure matters more than its average),
    and the canaries' empirical lower bound on epsilon (``canary_audit``; NaN unplanted)."""

    auc: float = NAN
    tpr_at_1pct: float = NAN
    tpr_at_01pct: float = NAN
    canary_epsilon: float = NAN


def measure_leak(members: torch.Tensor, non_members: torch.Tensor) -> Leak:
    """The attack's AUC and low-false-positive rates from members' and non-members' losses."""
    return Leak(
        loss_threshold_auc(members, non_members),
        tpr_at_fpr(members, non_members, 0.01),
        tpr_at_fpr(members, non_members, 0.001),
    )


def loss_threshold_auc(members: torch.Tensor, non_members: torch.Tensor) -> float:
    """Attack AUC from per-example losses of members and of non-members; NaN if either is empty."""
    if len(members) == 0 or len(non_members) == 0:
        return float("nan")
    losses = torch.cat([members, non_members])
    is_member = torch.cat([torch.ones(len(members)), torch.zeros(len(non_members))])
    return float(compute_roc_auc(-losses, is_member))


def tpr_at_fpr(members: torch.Tensor, non_members: torch.Tensor, fpr: float) -> float:
    """The attack's true-positive rate where at most ``fpr`` of non-members are called members.

    The threshold is the loss below which at most ``fpr`` of the non-members fall; with
    fewer than ``1 / fpr`` of them that is below every one, so the rate is of members whose
    loss is lower than any non-member's. NaN if either set is empty.
    """
    if len(members) == 0 or len(non_members) == 0:
        return float("nan")
    ordered = torch.sort(non_members).values
    allowed = int(fpr * len(ordered))  # non-members the threshold may let through
    threshold = ordered[allowed]
    return float((members < threshold).float().mean())
