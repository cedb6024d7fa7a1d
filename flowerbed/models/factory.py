"""Build a network by name, in MONAI's words: spatial_dims, in_channels, out_channels.

A name is a built-in (``flowerbed.catalogue.MODELS``) or the hospital's own
network, ``package.module:function``: any importable callable
``(spatial_dims, in_channels, out_channels) -> nn.Module``. Both are made
DP-safe by the same fixes and pre-flighted the same way; an own network is
known by the sha256 of its source file, which every site must share.
"""

from __future__ import annotations

from functools import lru_cache

from monai.networks import nets
from torch import nn

from flowerbed.errors import ModelError
from flowerbed.models.dp_safe import make_dp_safe
from flowerbed.models.network_source import network_builder
from flowerbed.models.small_cnn import SmallCNN
from flowerbed.protocol.model_spec import ModelSpec

UNET_CHANNELS = (8, 16, 32, 64)  # four levels: input sides divisible by 8
UNET_STRIDES = (2, 2, 2)


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


def unet(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    """MONAI's UNet, residual units, instance norm: it trains under Opacus as built."""
    return nets.UNet(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
        channels=UNET_CHANNELS, strides=UNET_STRIDES, num_res_units=1,
    )  # fmt: skip


def segresnet(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    return nets.SegResNet(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
        init_filters=8,
    )  # fmt: skip


def build_model(spec: ModelSpec) -> nn.Module:
    """A fresh, DP-safe network for ``spec`` (same seed, same initial weights)."""
    built = network_builder(spec.name)(spec.spatial_dims, spec.in_channels, spec.out_channels)
    if not isinstance(built, nn.Module):
        raise ModelError(
            f"network {spec.name} returned a {type(built).__name__}, not a torch nn.Module"
        )
    return make_dp_safe(built)


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
