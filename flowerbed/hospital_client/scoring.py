"""Loss, ROC AUC and accuracy from a model's logits, for any number of classes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.metrics import compute_roc_auc
from torch.nn import functional as F


@dataclass(frozen=True)
class Scores:
    num_examples: int
    loss: float
    auc: float
    accuracy: float


def score(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> Scores:
    """Mean cross-entropy, AUC (one-vs-rest macro for more than two classes), accuracy.

    AUC is NaN when the labels hold a single class: it is undefined there, and
    a site with a one-class test split must not report a made-up number.
    """
    if len(labels) == 0:
        return Scores(0, float("nan"), float("nan"), float("nan"))
    loss = F.cross_entropy(logits, labels).item()
    probs = torch.softmax(logits, dim=1)
    accuracy = (probs.argmax(dim=1) == labels).float().mean().item()
    if labels.unique().numel() < 2:
        auc = float("nan")
    elif num_classes == 2:
        auc = float(compute_roc_auc(probs[:, 1], labels))
    else:
        auc = float(compute_roc_auc(probs, F.one_hot(labels, num_classes)))
    return Scores(len(labels), loss, auc, accuracy)
