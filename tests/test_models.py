import copy

import pytest
import torch
from monai.networks.nets import resnet10
from opacus import GradSampleModule
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from flowerbed.catalogue import CLASSIFICATION, MODELS
from flowerbed.config import DEFAULT_MODEL
from flowerbed.datasets.base import ImageSet
from flowerbed.errors import ModelError
from flowerbed.hospital_client import training
from flowerbed.hospital_client.training import DPPlan, TrainPlan, train
from flowerbed.models.dp_safe import make_dp_safe, preflight
from flowerbed.models.factory import build_model
from flowerbed.privacy.accounting import PrivacyAccount
from flowerbed.privacy.per_sample import install_layout_safe_conv_sampler
from flowerbed.protocol.model_spec import ModelSpec

SEGMENTATION_NETWORKS = ("unet", "segresnet")


def sample_shape(name: str, spatial_dims: int) -> tuple[int, ...]:
    """Small inputs, but DenseNet121's four poolings need 32 pixels per axis."""
    size = 32 if name == "densenet121" or spatial_dims == 2 else 16
    return (1,) + (size,) * spatial_dims


def per_sample_autograd(model: nn.Module, images, labels) -> dict[str, torch.Tensor]:
    """Each example's gradient of its own loss, through one batched forward as DP-SGD runs it.

    Not a forward of each example alone: that rounds differently and can flip
    a max-pooling near-tie, moving a gradient to the neighbouring pixel
    (seen in 3D: 3 % off, from plain autograd alone, no Opacus involved).
    """
    grads: dict[str, list[torch.Tensor]] = {}
    losses = F.cross_entropy(model(images), labels, reduction="none").reshape(len(labels), -1)
    losses = losses.mean(dim=1)  # a segmentation's loss: the mean over its voxels
    for loss in losses:
        model.zero_grad()
        loss.backward(retain_graph=True)
        for name, param in model.named_parameters():
            grads.setdefault(name, []).append(param.grad.detach().clone())
    return {name: torch.stack(values) for name, values in grads.items()}


def assert_per_sample_gradients_match_autograd(
    name: str, spatial_dims: int, layout: torch.memory_format
) -> None:
    """Opacus's per-sample gradients of ``name`` with model and inputs in ``layout``,
    against autograd's in the default layout."""
    torch.manual_seed(0)
    shape = sample_shape(name, spatial_dims)
    model = build_model(ModelSpec(name, spatial_dims, 1, 3, shape[1:])).train()
    images, labels = torch.randn(2, *shape), torch.tensor([0, 2])
    if name in SEGMENTATION_NETWORKS:
        labels = torch.randint(0, 3, (2, *shape[1:]), generator=torch.Generator().manual_seed(0))
    expected = per_sample_autograd(model, images, labels)
    wrapped = GradSampleModule(model.to(memory_format=layout))
    wrapped.zero_grad()
    F.cross_entropy(wrapped(images.contiguous(memory_format=layout)), labels).backward()
    for param_name, param in model.named_parameters():
        torch.testing.assert_close(
            param.grad_sample, expected[param_name], atol=1e-4, rtol=1e-3, msg=param_name
        )
    wrapped._close()


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", MODELS.names())
def test_per_sample_gradients_match_autograd(name, spatial_dims):
    assert_per_sample_gradients_match_autograd(name, spatial_dims, torch.contiguous_format)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", ["small-cnn", "small-cnn-tanh", "small-cnn-dp"])
def test_per_sample_gradients_match_autograd_channels_last(name, spatial_dims):
    """The small CNNs train under DP channels-last, where Opacus 1.6's own sampler
    for 2D convolutions is wrong (0.31 off for the small CNN): flowerbed's
    layout-safe sampler must give every example its own gradient there too."""
    install_layout_safe_conv_sampler()  # as training under DP does
    layout = training.CHANNELS_LAST[2 + spatial_dims]
    assert_per_sample_gradients_match_autograd(name, spatial_dims, layout)


@pytest.fixture
def double_precision():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("dp", [None, DPPlan(noise_multiplier=1.0, max_grad_norm=0.5)])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_training_runs_channels_last_to_the_model_the_default_layout_gives(
    spatial_dims, dp, monkeypatch, double_precision
):
    """A site trains channels-last for speed, with and without DP-SGD: the model it
    sends must be the one the default layout gives, handed back in the default layout.
    In double precision, so that only a different computation could tell them apart
    (float32 rounding alone differs by 2e-4 after five steps). Under DP the same seed
    draws the same batches and noise in both layouts; without the layout-safe
    per-sample gradients (``flowerbed.privacy.per_sample``) the clipping differs."""
    images = torch.rand(40, 1, *[16] * spatial_dims, generator=torch.Generator().manual_seed(0))
    data = ImageSet(images.numpy(), (torch.arange(40) % 2).numpy())
    plan = TrainPlan(epochs=1, batch_size=8, learning_rate=0.05, dp=dp)
    torch.manual_seed(0)
    start = build_model(ModelSpec("small-cnn", spatial_dims, 1, 2, (28,) * spatial_dims))

    def trained() -> nn.Module:
        model = copy.deepcopy(start)
        train(model, data, 2, plan, PrivacyAccount(), seed=3)
        return model

    fast = trained()
    monkeypatch.setattr(training, "CHANNELS_LAST", {})
    default = trained()
    assert all(p.is_contiguous() for p in fast.parameters())
    for name, tensor in fast.state_dict().items():
        torch.testing.assert_close(tensor, default.state_dict()[name], atol=1e-12, rtol=1e-9)
        assert name.endswith("num_batches_tracked") or not torch.equal(
            tensor, start.state_dict()[name]
        )


def test_plain_training_takes_the_batches_a_shuffling_dataloader_takes():
    """A seed trains without DP as it did through ``DataLoader``: same batches, same draws."""
    images, labels = torch.rand(70, 1, 4, 4), torch.arange(70) % 2
    loader_draws = torch.Generator().manual_seed(5)
    loader = DataLoader(
        TensorDataset(images, labels), batch_size=32, shuffle=True, generator=loader_draws
    )
    ours = torch.Generator().manual_seed(5)
    for _ in range(3):  # epochs: the generator must be left where the loader leaves it
        batches = list(
            training.shuffled_batches(ImageSet(images.numpy(), labels.numpy()), 32, ours)
        )
        expected = list(loader)
        assert len(batches) == len(expected) == 3
        for (x, y), (want_x, want_y) in zip(batches, expected, strict=True):
            assert torch.equal(x, want_x) and torch.equal(y, want_y)
    assert torch.equal(ours.get_state(), loader_draws.get_state())


def test_plain_training_over_epochs_is_the_dataloader_loop(monkeypatch, double_precision):
    """Every epoch passes over all the data, in the batches a seeded ``DataLoader`` gives."""
    images = torch.rand(40, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(40) % 2
    plan = TrainPlan(epochs=3, batch_size=16, learning_rate=0.05)
    monkeypatch.setattr(training, "CHANNELS_LAST", {})  # the same computation as the loop
    torch.manual_seed(0)
    start = build_model(ModelSpec("small-cnn", 2, 1, 2, (28, 28)))
    ours = copy.deepcopy(start)
    train(ours, ImageSet(images.numpy(), labels.numpy()), 2, plan, PrivacyAccount(), seed=3)
    loop = copy.deepcopy(start)
    torch.manual_seed(3)
    optimizer = torch.optim.SGD(loop.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(
        TensorDataset(images, labels),
        batch_size=16,
        shuffle=True,
        generator=torch.Generator().manual_seed(3),
    )
    loop.train()
    for _ in range(3):
        for x, y in loader:
            optimizer.zero_grad()
            F.cross_entropy(loop(x), y).backward()
            optimizer.step()
    for name, tensor in ours.state_dict().items():
        torch.testing.assert_close(tensor, loop.state_dict()[name], atol=1e-12, rtol=1e-9)


def test_stock_monai_resnet_breaks_under_opacus_and_ours_does_not():
    with pytest.raises(ModelError):
        preflight(resnet10(spatial_dims=2, n_input_channels=1, num_classes=2), (1, 32, 32))
    preflight(
        make_dp_safe(resnet10(spatial_dims=2, n_input_channels=1, num_classes=2)), (1, 32, 32)
    )


def test_fixed_networks_have_no_batchnorm_and_no_inplace_ops():
    for name in MODELS.names():
        model = build_model(ModelSpec(name, 2, 1, 2, (28, 28)))
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        assert not any(getattr(m, "inplace", False) for m in model.modules())


class ReluInPlaceInForward(nn.Module):
    """An in-place op in ``forward`` itself: no flag to switch off, so it cannot be fixed."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.linear(x.flatten(1))
        hidden.relu_()
        return self.head(hidden)


def test_preflight_refuses_a_network_it_cannot_train_with_a_reason():
    with pytest.raises(ModelError, match="ReluInPlaceInForward fails under Opacus") as caught:
        preflight(make_dp_safe(ReluInPlaceInForward()), (1, 2, 2))
    assert "\n" not in str(caught.value)


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(Exception, match="choose one of: densenet121"):
        build_model(ModelSpec("vgg16", 2, 1, 2, (28, 28)))


def test_dp_default_keeps_few_weights_for_dp_sgd_to_noise():
    """DP-SGD noises every weight alike, so the default model under DP drops the head's
    hidden layer: the plain default's convolutions with a fifth of its weights, 2D and 3D."""
    for spatial_dims in (2, 3):
        plain, dp = (
            build_model(
                ModelSpec(
                    DEFAULT_MODEL[CLASSIFICATION][dp_on], spatial_dims, 1, 2, (28,) * spatial_dims
                )
            )
            for dp_on in (False, True)
        )
        weights = [sum(p.numel() for p in model.parameters()) for model in (plain, dp)]
        assert weights[1] < weights[0] / 5
        convolutions = [
            [m.weight.shape for m in model if isinstance(m, nn.modules.conv._ConvNd)]
            for model in (plain, dp)
        ]
        assert convolutions[0] == convolutions[1]
        assert isinstance(dp[-1], torch.nn.Linear) and isinstance(dp[-2], torch.nn.Flatten)


def test_a_seed_gives_every_small_cnn_the_same_start_whatever_its_head():
    """Seeded runs repeat across releases only if a model's layers draw their initial
    weights in the same order: the head is made after the convolutions, so adding or
    dropping its hidden layer leaves every earlier layer's start as it was."""
    starts = []
    for name in ("small-cnn", "small-cnn-tanh", "small-cnn-dp"):
        torch.manual_seed(0)
        starts.append(build_model(ModelSpec(name, 2, 1, 2, (28, 28))).state_dict())
    torch.manual_seed(0)
    first = nn.Conv2d(1, 16, kernel_size=3, padding=1)
    torch.testing.assert_close(starts[0]["0.weight"], first.weight.detach(), rtol=0, atol=0)
    for other in starts[1:]:
        for key in ("0.weight", "4.weight", "4.bias"):
            torch.testing.assert_close(other[key], starts[0][key], rtol=0, atol=0)
