"""Scores a site reports: AUC, and accuracy at the site's own operating point."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric
from torch.nn import functional as F

from flowerbed.datasets.base import ImageSet
from flowerbed.hospital_client.scoring import (
    SegmentationTally,
    dice_per_class,
    operating_point,
    score,
)
from flowerbed.hospital_client.training import predict
from flowerbed.models.factory import build_model
from flowerbed.protocol.model_spec import ModelSpec


def logits_for(positive_probabilities: list[float]) -> torch.Tensor:
    p = torch.tensor(positive_probabilities, dtype=torch.float64)
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))], dim=1)


def test_operating_point_separates_classes_a_skewed_model_scores_low():
    # A model trained on a site with few positives scores every case below 0.5.
    logits = logits_for([0.05, 0.1, 0.12, 0.2, 0.3, 0.35])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    threshold = operating_point(logits, labels)
    assert 0.12 < threshold <= 0.2
    assert score(logits, labels, 2).accuracy == pytest.approx(0.5)
    assert score(logits, labels, 2, threshold).accuracy == 1.0
    assert score(logits, labels, 2, threshold).auc == 1.0


def test_operating_point_takes_tied_scores_together_and_falls_back_on_one_class():
    logits = logits_for([0.4, 0.4, 0.4, 0.9])
    threshold = operating_point(logits, torch.tensor([0, 1, 0, 1]))
    assert threshold in (pytest.approx(0.4), pytest.approx(0.9))
    assert operating_point(logits, torch.tensor([1, 1, 1, 1])) == 0.5


def test_auc_is_not_made_up_for_a_one_class_split():
    scores = score(logits_for([0.2, 0.7]), torch.tensor([1, 1]), 2)
    assert math.isnan(scores.auc) and scores.accuracy == 0.5


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_predict_gives_the_models_own_logits_and_hands_it_back_as_it_was(spatial_dims):
    torch.manual_seed(0)
    model = build_model(ModelSpec("small-cnn", spatial_dims, 1, 2, (28,) * spatial_dims)).eval()
    shape = (5, 1, *[16] * spatial_dims)
    images = np.random.default_rng(0).random(shape, dtype=np.float32)
    data = ImageSet(images, np.arange(5) % 2)
    with torch.no_grad():
        expected = model(torch.from_numpy(images))
    (tally,) = predict(model, data, 2)
    labels = torch.tensor([0, 1, 0, 1, 0])
    torch.testing.assert_close(
        tally.losses(), F.cross_entropy(expected, labels, reduction="none"), rtol=1e-4, atol=1e-5
    )
    assert tally.scores().num_examples == 5
    assert all(p.is_contiguous() for p in model.parameters())


def masks_logits(predicted: torch.Tensor, classes: int) -> torch.Tensor:
    """Logits whose argmax is ``predicted`` (B, H, W)."""
    return F.one_hot(predicted, classes).movedim(-1, 1).float() * 10


def test_dice_is_one_for_a_perfect_mask_and_the_overlap_for_a_partial_one():
    truth = torch.zeros(2, 8, 8, dtype=torch.int64)
    truth[:, 2:6, 2:6] = 1  # 16 voxels of structure in each image
    half = truth.clone()
    half[1, 2:4, 2:6] = 0  # the second image finds 8 of 16: Dice 2*8/(8+16) = 2/3
    tally = SegmentationTally(2)
    tally.add(masks_logits(half, 2), truth)
    scores = tally.scores()
    assert scores.dice == pytest.approx((1 + 2 / 3) / 2)
    assert scores.accuracy == pytest.approx(1 - 8 / 128)
    assert math.isnan(scores.auc) and len(tally.losses()) == 2


def test_dice_is_the_mean_over_foreground_classes_and_skips_images_without_the_class():
    truth = torch.zeros(2, 4, 4, dtype=torch.int64)
    truth[0, :2] = 1  # image 0 shows class 1 only, image 1 class 2 only
    truth[1, 2:] = 2
    predicted = truth.clone()
    predicted[1, 2:] = 0  # class 2 missed entirely
    tally = SegmentationTally(3)
    tally.add(masks_logits(predicted, 3), truth)
    assert tally.scores().dice == pytest.approx((1.0 + 0.0) / 2)


@pytest.mark.parametrize("shape", [(12, 10), (6, 7, 5)])
def test_dice_counted_per_class_is_monais_dice_metric(shape):
    """The tally counts Dice directly; it must be exactly what MONAI's DiceMetric gives
    (background excluded, a class absent from a mask not counted for that image)."""
    generator = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 3, (8, *shape), generator=generator)
    masks[0][masks[0] == 2] = 0  # an image without class 2
    predicted = torch.randint(0, 3, (8, *shape), generator=generator)
    predicted[1] = masks[1]  # one perfect image
    one_hot = lambda labels: F.one_hot(labels, 3).movedim(-1, 1)  # noqa: E731
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
    expected = metric(one_hot(predicted), one_hot(masks))
    counted = dice_per_class(predicted, masks, 3)
    torch.testing.assert_close(counted.float(), expected.float(), equal_nan=True)
    assert torch.isnan(counted[0, 1]) and torch.equal(counted[1], torch.ones(2).double())
