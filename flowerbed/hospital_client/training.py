"""Local training and evaluation on a site's own data, with or without DP-SGD.

DP-SGD is Opacus's, unmodified: Poisson sampling, per-sample clipping to
``max_grad_norm``, Gaussian noise. The FedProx proximal term is applied as a
separate step after each optimiser step (``w -= lr * mu * (w - w_global)``):
Opacus builds the update only from per-sample gradients of the loss, so a
proximal term added to the loss would be silently dropped under DP. The
separate step depends only on the already-private model and the public global
weights, so it costs no privacy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from monai.losses import DiceCELoss
from opacus import PrivacyEngine
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from flowerbed.catalogue import SEGMENTATION
from flowerbed.datasets.augment import augmenter
from flowerbed.datasets.base import Canaries, Images
from flowerbed.errors import TrainingDiverged
from flowerbed.hospital_client.scoring import Scores, Tally, tally_for
from flowerbed.privacy.accounting import PrivacyAccount
from flowerbed.privacy.canary_audit import epsilon_lower_bound
from flowerbed.privacy.membership import Leak, measure_leak
from flowerbed.privacy.per_sample import install_layout_safe_conv_sampler

EVAL_BATCH = 256
CALIBRATION_EXAMPLES = 256  # training examples a site scores to set its threshold
CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}  # by batch dimensions


@dataclass(frozen=True)
class DPPlan:
    noise_multiplier: float
    max_grad_norm: float


@dataclass(frozen=True)
class TrainPlan:
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str = "sgd"
    proximal_mu: float = 0.0
    dp: DPPlan | None = None
    augment: bool = False  # MONAI's random flips, rotations and intensity jitter per image


def scheduled_learning_rate(peak: float, schedule: str, server_round: int, rounds: int) -> float:
    """The learning rate of round ``server_round`` of ``rounds`` under ``schedule``.

    ``cosine`` starts at ``peak`` and falls to nearly nothing in the last
    round: small late steps let sites that train apart settle, since a
    gossip site's own training pulls it away from its neighbours by about
    its step size. It is not the default because it is no better overall
    (PneumoniaMNIST, Dirichlet(0.5), 20 rounds, see docs/benchmarks.md): gossip on the
    exponential graph trails FedAvg by 0.9 AUC points at 8 sites instead of
    1.1, but by 2.2 at 32 sites instead of 1.3, where the smaller steps
    leave the small sites under-trained; DP FedAvg at 4 sites is unchanged
    within seed noise (0.894 against 0.898).
    """
    if schedule == "constant":
        return peak
    return peak * 0.5 * (1 + math.cos(math.pi * (min(server_round, rounds) - 1) / rounds))


def train(
    model: nn.Module,
    data: Images,
    num_classes: int,
    plan: TrainPlan,
    account: PrivacyAccount,
    seed: int,
) -> Scores:
    """Train ``model`` in place; return scores of its predictions seen while training.

    Classification trains on cross-entropy, segmentation on MONAI's DiceCE
    (Dice and cross-entropy, per image, mean over the batch: a mean of
    per-sample terms, as Opacus's per-sample clipping assumes). Under DP the
    steps taken are appended to ``account``. The scores cost no
    extra pass: they come from the logits each training batch produced.
    The small CNN trains channels-last (``fast_layout``): without DP its
    epoch on 400 images, one thread, 129 -> 96 ms; under DP too, with the
    layout-safe per-sample gradients of ``flowerbed.privacy.per_sample``.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = _optimizer(model, plan)
    anchor = [p.detach().clone() for p in model.parameters()] if plan.proximal_mu else None
    engine = None
    trainee = model
    model.train()
    if plan.dp is not None:
        install_layout_safe_conv_sampler()
        engine = PrivacyEngine(accountant="rdp")
        loader = DataLoader(
            data.as_torch(), batch_size=plan.batch_size, shuffle=True, generator=generator
        )  # Opacus replaces the sampler with Poisson sampling of indices; then it reads them
        trainee, optimizer, loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=plan.dp.noise_multiplier,
            max_grad_norm=plan.dp.max_grad_norm,
            poisson_sampling=True,
        )

        def epoch() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
            return loader

    else:

        def epoch() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
            return shuffled_batches(data, plan.batch_size, generator)

    seen = tally_for(data.task, num_classes)
    loss_of = training_loss(data.task)
    augment = augmenter(data.task, seed) if plan.augment else None
    empty = 0  # Poisson batches that drew nobody (probability about e^-batch_size)
    with fast_layout(model, len(data.sample_shape) + 1) as layout:
        for done in range(plan.epochs):
            for images, labels in epoch():
                if len(labels) == 0:  # a network cannot run on it; the step is still spent
                    empty += 1
                    continue
                if augment is not None:
                    images, labels = augment(images, labels)
                optimizer.zero_grad(set_to_none=True)
                logits = trainee(images.contiguous(memory_format=layout))
                loss = loss_of(logits, labels)
                if not torch.isfinite(loss):  # a NaN step would send a NaN model
                    raise TrainingDiverged(
                        f"training diverged in local epoch {done + 1}: the loss became "
                        f"{float(loss)}; nothing was sent; lower the learning rate or check "
                        "the data"
                    )
                loss.backward()
                optimizer.step()
                if anchor is not None:
                    _proximal_step(model, anchor, plan.learning_rate * plan.proximal_mu)
                seen.add(logits, labels)
    if engine is not None:
        for noise, rate, steps in engine.accountant.history:
            account.record(noise, rate, steps)
        if empty:
            account.record(plan.dp.noise_multiplier, 1 / len(loader), empty)
        trainee._close()
    scores = seen.scores()
    # Report the site's size, not the Poisson-sampled count: FedAvg weights by it.
    return dataclasses.replace(scores, num_examples=len(data))


def training_loss(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss a task trains on: cross-entropy for classes, DiceCE for masks."""
    if task != SEGMENTATION:
        return F.cross_entropy
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
    return lambda logits, masks: dice_ce(logits, masks.unsqueeze(1))


def shuffled_batches(
    data: Images, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch in shuffled batches, drawn from ``generator`` as ``DataLoader`` draws them.

    Whole batches (``Images.batch``: slices of arrays, or one read of a batch
    of files) instead of fetching and collating one example at a time: 4 ms a
    site-round at 400 examples, a seventh of the small CNN's epoch. The draws
    are the loader's (``shuffle=True``, one process): its iterator's base
    seed, the order, then the sampler's empty remainder, so a seed trains as
    it did through the loader (``tests/test_models``).
    """
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    order = torch.randperm(len(data), generator=generator)
    for batch in order.split(batch_size):
        yield data.batch(batch.numpy())
    torch.randperm(len(data), generator=generator)


def _optimizer(model: nn.Module, plan: TrainPlan) -> torch.optim.Optimizer:
    if plan.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=plan.learning_rate)
    return torch.optim.SGD(model.parameters(), lr=plan.learning_rate, momentum=0.9)


@torch.no_grad()
def _proximal_step(model: nn.Module, anchor: list[torch.Tensor], rate: float) -> None:
    for param, start in zip(model.parameters(), anchor, strict=True):
        param.add_(param - start, alpha=-rate)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Images,
    num_classes: int,
    calibration: Images | None = None,
    canaries: Canaries | None = None,
    delta: float = 1e-5,
) -> tuple[Scores, Leak]:
    """Scores of ``model`` on ``data`` (the site's held-out test split), and its leak.

    With ``calibration`` (the site's training data) a two-class model's
    accuracy is taken at the site's own operating point, chosen there; the
    threshold never leaves the site. Without it, at 0.5. The leak is the
    membership-inference attack's, training data against ``data`` (unmeasured
    without ``calibration``), and with ``canaries`` their lower bound on
    epsilon at ``delta``. The attack uses the same seeded sample of at most
    ``CALIBRATION_EXAMPLES`` training examples every round: a pass over all
    of a large site's training data would cost a third of its training epoch.
    """
    if calibration is None:
        return predict(model, data, num_classes)[0].scores(), Leak()
    planted = [] if canaries is None else [canaries.images]
    test, seen, *scored = predict(
        model, data, num_classes, _sample(calibration, CALIBRATION_EXAMPLES), *planted
    )
    leak = measure_leak(seen.losses(), test.losses())
    if canaries is not None:
        bound = epsilon_lower_bound(scored[0].losses().numpy(), canaries.members, delta)
        leak = dataclasses.replace(leak, canary_epsilon=bound)
    return test.scores(seen.operating_point()), leak


def _sample(data: Images, size: int) -> Images:
    if len(data) <= size:
        return data
    chosen = np.random.default_rng(0).choice(len(data), size, replace=False)
    return data.subset(np.sort(chosen))


@torch.no_grad()
def predict(model: nn.Module, data: Images, num_classes: int, *more: Images) -> list[Tally]:
    """A tally of ``model``'s outputs on every example of ``data`` and of each of ``more``.

    Runs channels-last where that is faster (``fast_layout``): evaluation
    passes over a site's test and training data every round. Batches are
    whole (``Images.batch``), not a ``DataLoader``'s per-example fetches.
    """
    model.eval()
    with fast_layout(model, len(data.sample_shape) + 1) as layout:
        return [_tally(model, each, num_classes, layout) for each in (data, *more)]


def _tally(model: nn.Module, data: Images, num_classes: int, layout: torch.memory_format) -> Tally:
    tally = tally_for(data.task, num_classes)
    for start in range(0, len(data), EVAL_BATCH):
        images, labels = data.batch(np.arange(start, min(start + EVAL_BATCH, len(data))))
        tally.add(model(images.contiguous(memory_format=layout)), labels)
    return tally


@contextmanager
def fast_layout(model: nn.Module, ndim: int) -> Iterator[torch.memory_format]:
    """Run ``model`` channels-last if it runs faster so (``runs_faster_channels_last``).

    The small CNN does, by 2-3x; MONAI's ResNets, whose GroupNorms are slower
    that way, run 10-20 % slower, so they keep the default layout. Yields
    the layout the inputs must take. The model is handed back in the default
    layout, the one its caller and any other DP-SGD library expect.
    """
    faster = getattr(model, "runs_faster_channels_last", False)
    layout = CHANNELS_LAST.get(ndim, torch.contiguous_format) if faster else torch.contiguous_format
    model.to(memory_format=layout)
    try:
        yield layout
    finally:
        model.to(memory_format=torch.contiguous_format)
