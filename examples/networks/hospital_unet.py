"""A hospital's own network, as flowerbed takes it: ``--model hospital_unet:build``.

Any importable callable ``(spatial_dims, in_channels, out_channels) -> nn.Module``
will do; flowerbed makes it DP-safe, pre-flights it under Opacus, and every site
must hold this same file (its sha256 is compared at the roll call).
"""

from monai.networks.nets import UNet
from torch import nn


def build(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    """A wider, shallower UNet than flowerbed's built-in one."""
    return UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=(16, 32, 64),
        strides=(2, 2),
        num_res_units=2,
    )
