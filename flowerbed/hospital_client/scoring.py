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


def score(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int, threshold: float = 0.5
) -> Scores:
    """Mean cross-entropy, AUC (one-vs-rest macro for more than two classes), accuracy.

    For two classes, accuracy is taken at ``threshold`` on the positive
    class's probability (the site's operating point); for more, at argmax.
    AUC is NaN when the labels hold a single class: it is undefined there, and
    a site with a one-class test split must not report a made-up number.
    """
    if len(labels) == 0:
        return Scores(0, float("nan"), float("nan"), float("nan"))
    loss = F.cross_entropy(logits, labels).item()
    probs = torch.softmax(logits, dim=1)
    predicted = (probs[:, 1] >= threshold).long() if num_classes == 2 else probs.argmax(dim=1)
    accuracy = (predicted == labels).float().mean().item()
    if labels.unique().numel() < 2:
        auc = float("nan")
    elif num_classes == 2:
        auc = float(compute_roc_auc(probs[:, 1], labels))
    else:
        auc = float(compute_roc_auc(probs, F.one_hot(labels, num_classes)))
    return Scores(len(labels), loss, auc, accuracy)


def operating_point(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The threshold on the positive probability that maximises TPR - FPR (Youden's J).

    A site picks it on its own training data: J does not depend on the class
    balance, so it carries over to a test split whose balance differs (label
    skew between sites, or a hospital's case mix changing). Falls back to 0.5
    where the data hold one class only.
    """
    positive = torch.softmax(logits, dim=1)[:, 1]
    is_positive = labels == 1
    if is_positive.all() or not is_positive.any():
        return 0.5
    ranked, order = torch.sort(positive, descending=True)
    hits = is_positive[order].double()
    tpr = torch.cumsum(hits, 0) / hits.sum()
    fpr = torch.cumsum(1 - hits, 0) / (1 - hits).sum()
    gain = tpr - fpr
    gain[:-1][ranked[:-1] == ranked[1:]] = -1.0  # a threshold takes all tied scores or none
    return float(ranked[torch.argmax(gain)])
