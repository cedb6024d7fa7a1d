"""Opacus's per-sample gradients of convolutions, for inputs in any memory layout.

Opacus 1.6 unfolds a convolution's input with ``as_strided`` and strides that
hold only for the default (contiguous) layout, so a channels-last input gives
wrong per-sample gradients (0.31 off for the small CNN), silently. The small
CNN's DP-SGD step runs channels-last because its max-pooling and convolutions
are faster so (``training.fast_layout``); this sampler hands Opacus's own
computation contiguous copies of what it reads, which is the same
computation where they already were contiguous.

Installing it (``install_layout_safe_conv_sampler``) replaces Opacus's own
sampler process-wide, for every ``GradSampleModule`` made after; training
under DP installs it, and importing this module alone changes nothing.
"""

from __future__ import annotations

import torch
from opacus.grad_sample.conv import compute_conv_grad_sample
from opacus.grad_sample.utils import register_grad_sampler
from torch import nn

CONVOLUTIONS = [nn.Conv1d, nn.Conv2d, nn.Conv3d]


def install_layout_safe_conv_sampler() -> None:
    """Make Opacus compute convolutions' per-sample gradients with ours (idempotent)."""
    register_grad_sampler(CONVOLUTIONS)(layout_safe_conv_grad_sample)


def layout_safe_conv_grad_sample(
    layer: nn.Conv1d | nn.Conv2d | nn.Conv3d,
    activations: list[torch.Tensor],
    backprops: torch.Tensor,
) -> dict[nn.Parameter, torch.Tensor]:
    """Opacus's ``compute_conv_grad_sample`` on contiguous activations and backprops."""
    contiguous = [activation.contiguous() for activation in activations]
    return compute_conv_grad_sample(layer, contiguous, backprops.contiguous())
