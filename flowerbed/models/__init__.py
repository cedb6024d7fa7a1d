"""MONAI networks made safe for Opacus DP-SGD, built by name."""

from flowerbed.models.dp_safe import make_dp_safe, preflight
from flowerbed.models.factory import MODELS, ModelSpec, build_model, reading_network

__all__ = ["MODELS", "ModelSpec", "build_model", "make_dp_safe", "preflight", "reading_network"]
