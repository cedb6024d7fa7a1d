"""A model's answer to a public probe: what lets anyone holding the parameters check a claim.

Every train instruction carries a probe seed. The probe batch is derived
from it alone (uniform noise in the model's input shape: public, no
patient in it), and a site answers with the SHA-256 of its returned
model's outputs on the batch, rounded to ``DECIMALS`` so that the same
parameters give the same digest on another machine's floating point. Anyone
who holds the parameters can recompute the answer.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from flwr.app import ConfigRecord

from flowerbed.models.factory import reading_network
from flowerbed.protocol import records as R
from flowerbed.protocol.model_spec import ModelSpec

PROBE_SIZE = 8
DECIMALS = 2


def probe_batch(spec: ModelSpec, seed: int) -> torch.Tensor:
    """``PROBE_SIZE`` public inputs for ``spec``'s network, from ``seed`` alone, in the shape
    of the sites' images (``spec.input_shape``): the size the network is made for."""
    generator = torch.Generator().manual_seed(seed)
    shape = (PROBE_SIZE, spec.in_channels, *spec.input_shape)
    return torch.rand(shape, generator=generator)


@torch.no_grad()
def probe_digest(spec: ModelSpec, state: dict[str, torch.Tensor], seed: int) -> str:
    """The answer a model with parameters ``state`` gives to the probe of ``seed``."""
    model = reading_network(spec)
    model.load_state_dict(state)
    outputs = model(probe_batch(spec, seed)).numpy()
    rounded = np.round(outputs.astype(np.float64), DECIMALS) + 0.0  # -0.0 and 0.0 alike
    return hashlib.sha256(rounded.tobytes()).hexdigest()


def probe_answer(spec: ModelSpec, state: dict[str, torch.Tensor], seed: int) -> ConfigRecord:
    """The record a reply carries: the digest of ``state``'s answer to the probe of ``seed``."""
    return ConfigRecord({R.PROBE_DIGEST: probe_digest(spec, state, seed)})
