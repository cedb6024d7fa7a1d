"""Build a network by name, in MONAI's words: spatial_dims, in_channels, out_channels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from monai.networks.nets import DenseNet121, resnet10, resnet18
from torch import nn

from flowerbed.models.dp_safe import make_dp_safe
from flowerbed.models.small_cnn import SmallCNN
from flowerbed.registry import Registry

NetworkBuilder = Callable[[int, int, int], nn.Module]
MODELS: Registry[NetworkBuilder] = Registry("model")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the same network on another machine."""

    name: str
    spatial_dims: int
    in_channels: int
    out_channels: int


@MODELS.register("small-cnn")
def _small_cnn(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    return SmallCNN(spatial_dims, in_channels, out_channels)


@MODELS.register("small-cnn-tanh")
def _small_cnn_tanh(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    return SmallCNN(spatial_dims, in_channels, out_channels, activation="tanh")


@MODELS.register("small-cnn-dp")
def _small_cnn_dp(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    return SmallCNN(spatial_dims, in_channels, out_channels, activation="tanh", hidden=0)


@MODELS.register("densenet121")
def _densenet121(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    return DenseNet121(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels
    )


@MODELS.register("resnet10")
def _resnet10(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    return resnet10(
        spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=out_channels
    )


@MODELS.register("resnet18")
def _resnet18(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    return resnet18(
        spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=out_channels
    )


def build_model(spec: ModelSpec) -> nn.Module:
    """A fresh, DP-safe network for ``spec`` (same seed, same initial weights)."""
    builder = MODELS.get(spec.name)
    return make_dp_safe(builder(spec.spatial_dims, spec.in_channels, spec.out_channels))


@lru_cache(maxsize=4)
def reading_network(spec: ModelSpec) -> nn.Module:
    """One network per spec and process, for work that only reads models; load a state first.

    Evaluation and probe answers run each received model once and never
    train it, so they load its state into this one instead of building a
    network per message: building the small CNN costs about as much as
    answering the probe (2 ms), and a site does both every round. Nothing
    may keep it across a call that loads another state.
    """
    return build_model(spec).eval()
