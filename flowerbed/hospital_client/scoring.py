"""Loss and scores from a model's outputs: AUC and accuracy for classes, Dice for masks.

Outputs arrive batch by batch (while training, while evaluating); a tally
keeps what its task's scores need and no more. A classification tally keeps
the logits (AUC ranks all of them at once; they are a few numbers per
image); a segmentation tally keeps per-image numbers only, since a batch of
per-voxel logits is the size of the images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from monai.metrics import compute_roc_auc
from torch.nn import functional as F

from flowerbed.catalogue import SEGMENTATION

NAN = float("nan")


@dataclass(frozen=True)
class Scores:
    num_examples: int
    loss: float
    auc: float
    accuracy: float
    dice: float = NAN


class ClassificationTally:
    """Logits and labels of every example seen: mean cross-entropy, AUC, accuracy.

    Kept as Python numbers, not as a tensor per batch: a small tensor kept from
    every batch pins the heap between the batches' large freed buffers, and a
    site's resident memory grew by a batch's images every step (1.3 GB more in
    one epoch over 20,000 images of 128x128, ``bench/data_scale.py``).
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._logits: list[list[float]] = []
        self._labels: list[int] = []

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self._logits.extend(logits.detach().tolist())
        self._labels.extend(labels.tolist())

    def _all(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._labels:
            return torch.empty(0, self.num_classes), torch.empty(0, dtype=torch.int64)
        return torch.tensor(self._logits), torch.tensor(self._labels, dtype=torch.int64)

    def losses(self) -> torch.Tensor:
        """Each example's cross-entropy: what a membership attack thresholds."""
        return F.cross_entropy(*self._all(), reduction="none")

    def operating_point(self) -> float:
        return operating_point(*self._all()) if self.num_classes == 2 else 0.5

    def scores(self, threshold: float = 0.5) -> Scores:
        return score(*self._all(), self.num_classes, threshold)


@dataclass
class SegmentationTally:
    """Per image: cross-entropy over its voxels, Dice per foreground class; voxel accuracy.

    Dice is MONAI's ``DiceMetric(include_background=False, ignore_empty=True)`` on
    the argmax prediction: an image whose mask lacks a class does not count for
    that class. It is counted here from the prediction's and the mask's
    per-class voxels rather than through ``DiceMetric`` itself, whose one-hot
    pass cost 4 % of a UNet's DP-SGD step at 64x64 (a training tally scores
    every batch); ``tests/test_scoring.py`` holds the two equal. The score is
    the mean over foreground classes of each class's mean over images.
    """

    num_classes: int
    _losses: list[float] = field(default_factory=list)
    _dice: list[list[float]] = field(default_factory=list)
    _correct: int = 0
    _voxels: int = 0

    def add(self, logits: torch.Tensor, masks: torch.Tensor) -> None:
        """Python numbers only are kept, as in ``ClassificationTally``."""
        logits = logits.detach()
        per_voxel = F.cross_entropy(logits, masks, reduction="none")
        self._losses.extend(per_voxel.reshape(len(masks), -1).mean(dim=1).tolist())
        # max(...).indices, not argmax: the same first maximum, 10x faster over the channel
        # axis of (B, C, H, W[, D]) logits (64x64 batch of 32: 0.9 against 9.6 ms)
        predicted = logits.max(dim=1).indices
        self._correct += int((predicted == masks).sum())
        self._voxels += masks.numel()
        self._dice.extend(dice_per_class(predicted, masks, self.num_classes).tolist())

    def losses(self) -> torch.Tensor:
        return torch.tensor(self._losses)

    def operating_point(self) -> float:
        return 0.5  # a voxel's class is its argmax; there is no threshold to choose

    def scores(self, threshold: float = 0.5) -> Scores:
        losses = self.losses()
        if len(losses) == 0:
            return Scores(0, NAN, NAN, NAN, NAN)
        per_class = torch.nanmean(torch.tensor(self._dice, dtype=torch.float64), dim=0)
        dice = float(torch.nanmean(per_class)) if not per_class.isnan().all() else NAN
        accuracy = self._correct / self._voxels
        return Scores(len(losses), float(losses.mean()), NAN, accuracy, dice)


def dice_per_class(predicted: torch.Tensor, masks: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, classes - 1) Dice of each image and foreground class; NaN where the mask lacks it."""
    per_image = []
    for label in range(1, classes):
        shown, found = (masks == label).flatten(1), (predicted == label).flatten(1)
        overlap = (shown & found).sum(dim=1).double()
        size = (shown.sum(dim=1) + found.sum(dim=1)).double()
        dice = 2 * overlap / size
        per_image.append(torch.where(shown.any(dim=1), dice, torch.nan))
    return torch.stack(per_image, dim=1)


Tally = ClassificationTally | SegmentationTally


def tally_for(task: str, num_classes: int) -> Tally:
    if task == SEGMENTATION:
        return SegmentationTally(num_classes)
    return ClassificationTally(num_classes)


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
        return Scores(0, NAN, NAN, NAN)
    loss = F.cross_entropy(logits, labels).item()
    probs = torch.softmax(logits, dim=1)
    predicted = (probs[:, 1] >= threshold).long() if num_classes == 2 else probs.argmax(dim=1)
    accuracy = (predicted == labels).float().mean().item()
    if labels.unique().numel() < 2:
        auc = NAN
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
