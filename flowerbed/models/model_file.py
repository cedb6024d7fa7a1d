"""A model as saved to disk: the spec to rebuild its network and its parameters.

The coordinator saves the global model of a server-side run
(``RUN_DIR/model.pt``), each gossip site its own (``home/model.pt``); the
same file loads anywhere with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from flowerbed.protocol.model_spec import ModelSpec

MODEL_FILE = "model.pt"


def save_model(path: Path, state: dict[str, torch.Tensor], spec: ModelSpec) -> None:
    """Write ``state`` and ``spec`` to ``path`` atomically: a crash never leaves half a model."""
    partial = path.with_name(path.name + ".tmp")
    torch.save({"spec": dataclasses.asdict(spec), "state_dict": state}, partial)
    partial.replace(path)


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """The parameters of a model saved by ``save_model``."""
    return torch.load(path, weights_only=True)["state_dict"]
