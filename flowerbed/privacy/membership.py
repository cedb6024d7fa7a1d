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

import torch
from monai.metrics import compute_roc_auc


def loss_threshold_auc(members: torch.Tensor, non_members: torch.Tensor) -> float:
    """Attack AUC from per-example losses of members and of non-members; NaN if either is empty."""
    if len(members) == 0 or len(non_members) == 0:
        return float("nan")
    losses = torch.cat([members, non_members])
    is_member = torch.cat([torch.ones(len(members)), torch.zeros(len(non_members))])
    return float(compute_roc_auc(-losses, is_member))
