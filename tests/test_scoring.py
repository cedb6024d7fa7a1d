"""Scores a site reports: AUC, and accuracy at the site's own operating point."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowerbed.datasets.base import ImageSet
from flowerbed.hospital_client.scoring import operating_point, score
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
    model = build_model(ModelSpec("small-cnn", spatial_dims, 1, 2)).eval()
    shape = (5, 1, *[16] * spatial_dims)
    images = np.random.default_rng(0).random(shape, dtype=np.float32)
    data = ImageSet(images, np.arange(5) % 2)
    with torch.no_grad():
        expected = model(torch.from_numpy(images))
    ((logits, labels),) = predict(model, data)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    assert labels.tolist() == [0, 1, 0, 1, 0]
    assert all(p.is_contiguous() for p in model.parameters())
