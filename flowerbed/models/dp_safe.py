"""Make a MONAI network safe for Opacus, or refuse it with the reason.

Opacus computes per-sample gradients from hooks on each layer; three things
in stock MONAI networks break that, two of them only at run time:

* BatchNorm mixes samples in a batch: ``ModuleValidator.fix`` swaps it for GroupNorm.
* In-place activations (``ReLU(inplace=True)``) overwrite the activations a hook
  saved: every ``inplace`` flag is switched off.
* MONAI's ResNet blocks and SegResNet's ``ResBlock`` add the residual in place
  (``out += residual``; the ResNet's constructor does not even pass
  ``act``/``norm`` down): the blocks are swapped for subclasses whose forward
  adds out of place.

``preflight`` then runs one real per-sample-gradient pass on two random
samples, so anything else that breaks is reported before training starts.
"""

from __future__ import annotations

import copy

import torch
from monai.networks.blocks.segresnet_block import ResBlock
from monai.networks.nets.resnet import ResNetBlock, ResNetBottleneck
from opacus import GradSampleModule
from opacus.validators import ModuleValidator
from torch import nn

from flowerbed.catalogue import SEGMENTATION
from flowerbed.errors import ModelError
from flowerbed.protocol.model_spec import ModelSpec


class _OutOfPlaceResNetBlock(ResNetBlock):
    """MONAI's basic block, residual added out of place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.act(out + residual)


class _OutOfPlaceResNetBottleneck(ResNetBottleneck):
    """MONAI's bottleneck block, residual added out of place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.act(out + residual)


class _OutOfPlaceSegResBlock(ResBlock):
    """SegResNet's residual block, residual added out of place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act(self.norm1(x)))
        out = self.conv2(self.act(self.norm2(out)))
        return out + x


_OUT_OF_PLACE: dict[type[nn.Module], type[nn.Module]] = {
    ResNetBlock: _OutOfPlaceResNetBlock,
    ResNetBottleneck: _OutOfPlaceResNetBottleneck,
    ResBlock: _OutOfPlaceSegResBlock,
}


def make_dp_safe(model: nn.Module) -> nn.Module:
    """Return ``model`` fixed for Opacus (GroupNorm, no in-place ops), or raise ``ModelError``.

    Opacus's ``fix`` clones the whole module (a ``torch.save`` round trip) even
    when there is nothing to replace; a model that already validates (the
    small CNN) skips it: that clone was 5 ms of every site's every message.
    """
    fixed = ModuleValidator.fix(model) if ModuleValidator.validate(model, strict=False) else model
    for module in fixed.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
        safe_class = _OUT_OF_PLACE.get(type(module))
        if safe_class is not None:
            module.__class__ = safe_class
    problems = ModuleValidator.validate(fixed, strict=False)
    if problems:
        reasons = "; ".join(str(problem) for problem in problems)
        raise ModelError(f"{type(model).__name__} cannot train with DP-SGD: {reasons}")
    return fixed


def preflight(model: nn.Module, sample_shape: tuple[int, ...]) -> None:
    """Check that Opacus yields a per-sample gradient for every trainable parameter.

    Runs a copy of ``model`` on two random samples of ``sample_shape`` (channels
    first, no batch axis) under ``GradSampleModule``. Raises ``ModelError`` with
    the reason if the pass fails or a parameter gets no per-sample gradient.
    """
    try:
        probe = GradSampleModule(copy.deepcopy(model))
        probe(torch.randn(2, *sample_shape, requires_grad=True)).sum().backward()
    except (RuntimeError, NotImplementedError, ValueError) as err:
        first = err.args[0] if err.args and isinstance(err.args[0], list) else err
        reason = str(first).splitlines()[0]
        raise ModelError(
            f"{type(model).__name__} fails under Opacus per-sample gradients: {reason}"
        ) from None
    missing = [
        name
        for name, param in probe.named_parameters()
        if param.requires_grad and getattr(param, "grad_sample", None) is None
    ]
    probe._close()
    if missing:
        raise ModelError(
            f"{type(model).__name__}: Opacus computes no per-sample gradient for "
            f"{', '.join(missing[:3])}; freeze these parameters or use another network"
        )


@torch.no_grad()
def check_fits(model: nn.Module, spec: ModelSpec, task: str) -> None:
    """``ModelError`` unless ``model`` maps ``spec``'s images to what ``task`` scores.

    A classifier gives (batch, classes); a segmentation network (batch, classes,
    *the image's own grid*). A network of the wrong kind would otherwise fail in
    every site's first round with a shape error deep in the loss.
    """
    sample = torch.rand(2, spec.in_channels, *spec.input_shape)
    expected = (2, spec.out_channels) + (spec.input_shape if task == SEGMENTATION else ())
    try:
        shape = tuple(model.eval()(sample).shape)
    except (RuntimeError, ValueError) as err:
        reason = str(err).splitlines()[0][:200]
        raise ModelError(
            f"network {spec.name} cannot run on images of shape {list(sample.shape[1:])} "
            f"({reason}); pick another network or --image-size"
        ) from None
    finally:
        model.train()
    if shape != expected:
        kind = "a segmentation network such as unet" if task == SEGMENTATION else "a classifier"
        raise ModelError(
            f"network {spec.name} gives outputs of shape {list(shape)} but {task} of these "
            f"images needs {list(expected)}; use {kind}"
        )
