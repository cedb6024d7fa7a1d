"""Build a network by name, in MONAI's words: spatial_dims, in_channels, out_channels."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from monai.networks import nets
from torch import nn

from flowerbed.catalogue import MODELS
from flowerbed.models.dp_safe import make_dp_safe
from flowerbed.models.small_cnn import SmallCNN
from flowerbed.protocol.model_spec import ModelSpec

NetworkBuilder = Callable[[int, int, int], nn.Module]


def small_cnn(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    return SmallCNN(spatial_dims, in_channels, out_channels)


def small_cnn_tanh(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    return SmallCNN(spatial_dims, in_channels, out_channels, activation="tanh")


def small_cnn_dp(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    return SmallCNN(spatial_dims, in_channels, out_channels, activation="tanh", hidden=0)


def densenet121(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    return nets.DenseNet121(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels
    )


def resnet10(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    return nets.resnet10(
        spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=out_channels
    )


def resnet18(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    return nets.resnet18(
        spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=out_channels
    )


def build_model(spec: ModelSpec) -> nn.Module:
    """A fresh, DP-safe network for ``spec`` (same seed, same initial weights)."""
    builder: NetworkBuilder = MODELS.get(spec.name)
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
