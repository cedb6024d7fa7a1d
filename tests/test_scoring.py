"""Scores a site reports: AUC, and accuracy at the site's own operating point."""

from __future__ import annotations

import math

import pytest
import torch

from flowerbed.hospital_client.scoring import operating_point, score


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
