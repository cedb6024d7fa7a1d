"""DP-SGD cost per factory model: flowerbed's DP step and raw Opacus's, each over plain.

Usage: python bench/dp_cost.py [--batch 32] [--repeats 3] [--out bench/results/dp_cost.md]

Each classifier trains on random 2D images (1 x 32 x 32, 2 classes), each
segmentation network on random images with random two-label masks (UNet 2D
at 64 x 64 and 3D at 32 per axis, SegResNet 2D at 64 x 64, on DiceCE like
flowerbed's own training), through a bare PyTorch loop (plain: the network,
SGD, nothing else), through flowerbed's own ``train`` with and without DP,
and through a bare Opacus loop (PrivacyEngine.make_private, nothing of
flowerbed but the network), all in this one invocation so machine noise hits
every column alike. Times are per step of ``--batch`` examples
(``per_step``). Each figure is the median of ``--repeats`` timings, taken in
turn: one timing of one model moved its ratio by 0.4x between runs on this
machine. flowerbed runs the small CNNs channels-last with and without DP
(see ``training.train``); every ratio is taken over the bare loop's default
layout, as raw Opacus's is.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from opacus import PrivacyEngine
from report import write_table
from torch.utils.data import DataLoader

from flowerbed.datasets.base import ImageSet
from flowerbed.hospital_client.training import DPPlan, TrainPlan, train, training_loss
from flowerbed.models.factory import build_model
from flowerbed.privacy.accounting import PrivacyAccount
from flowerbed.protocol.model_spec import ModelSpec

# (network, one image's spatial shape, whether it segments): steps timed per repeat
CASES = {
    ("small-cnn", (32, 32), False): 60,
    ("small-cnn-tanh", (32, 32), False): 60,
    ("small-cnn-dp", (32, 32), False): 60,
    ("resnet10", (32, 32), False): 12,
    ("resnet18", (32, 32), False): 8,
    ("densenet121", (32, 32), False): 6,
    ("unet", (64, 64), True): 12,
    ("unet", (32, 32, 32), True): 6,
    ("segresnet", (64, 64), True): 6,
}
Case = tuple[str, tuple[int, ...], bool]


def images(case: Case, count: int) -> ImageSet:
    _, shape, segments = case
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (count, *shape) if segments else count)
    return ImageSet(rng.random((count, 1, *shape), dtype=np.float32), labels.astype(np.int64))


def network(case: Case) -> torch.nn.Module:
    name, shape, _ = case
    return build_model(ModelSpec.for_images(name, (1, *shape), 2))


def flowerbed_step(case: Case, data: ImageSet, batch: int, dp: bool) -> float:
    model = network(case)
    seen = examples_seen(model)
    plan = TrainPlan(1, batch, 0.05, dp=DPPlan(1.0, 1.0) if dp else None)
    start = time.perf_counter()
    train(model, data, 2, plan, PrivacyAccount(), seed=0)
    return per_step(time.perf_counter() - start, seen, batch)


def bare_loop(case: Case, data: ImageSet, batch: int) -> tuple:
    """The network, SGD and a shuffling loader: nothing of flowerbed's training."""
    model = network(case)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return model, optimizer, DataLoader(data.as_torch(), batch_size=batch, shuffle=True)


def plain_step(case: Case, data: ImageSet, batch: int) -> float:
    model, optimizer, loader = bare_loop(case, data, batch)
    seen = examples_seen(model)
    start = time.perf_counter()
    _epoch(model, optimizer, loader, data.task)
    return per_step(time.perf_counter() - start, seen, batch)


def raw_opacus_step(case: Case, data: ImageSet, batch: int) -> float:
    """Timed from ``make_private`` on: flowerbed's ``train`` makes its model private in
    every round too, and its timing includes that."""
    model, optimizer, loader = bare_loop(case, data, batch)
    seen = examples_seen(model)
    start = time.perf_counter()
    model, optimizer, loader = PrivacyEngine().make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
    )
    _epoch(model, optimizer, loader, data.task)
    return per_step(time.perf_counter() - start, seen, batch)


def _epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader, task: str) -> None:
    loss = training_loss(task)  # the loss flowerbed trains the task on, so the work is the same
    for x, y in loader:
        if len(y) == 0:  # an empty Poisson batch: flowerbed skips it too
            continue
        optimizer.zero_grad()
        loss(model(x), y).backward()
        optimizer.step()


def examples_seen(model: torch.nn.Module) -> list[int]:
    """The batch sizes ``model`` will be run on from now on (it keeps counting when wrapped)."""
    seen: list[int] = []
    model.register_forward_pre_hook(lambda _, inputs: seen.append(len(inputs[0])))
    return seen


def per_step(seconds: float, seen: list[int], batch: int) -> float:
    """Seconds per step of ``batch`` examples.

    Not per step taken: DP-SGD's Poisson sampling draws batches of random
    size, and with fixed seeds flowerbed's 12 resnet10 batches held 432
    examples against raw Opacus's 366, all of a 1.18x gap measured per step.
    """
    return seconds / sum(seen) * batch


def median_steps(case: Case, batch: int, repeats: int) -> dict[str, float]:
    """Median seconds per step of ``batch`` examples of each way of training ``case``, the
    ways timed in turn."""
    data = images(case, CASES[case] * batch)
    flowerbed_step(case, images(case, 2 * batch), batch, dp=True)  # warm-up
    ways = {
        "plain": lambda: plain_step(case, data, batch),
        "flowerbed plain": lambda: flowerbed_step(case, data, batch, dp=False),
        "flowerbed DP": lambda: flowerbed_step(case, data, batch, dp=True),
        "raw Opacus": lambda: raw_opacus_step(case, data, batch),
    }
    timings: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(repeats):
        for way, step in ways.items():
            timings[way].append(step())
    return {way: statistics.median(times) for way, times in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/dp_cost.md"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    rows = []
    for case in CASES:
        step = median_steps(case, args.batch, args.repeats)
        plain, ours, raw = step["plain"], step["flowerbed DP"], step["raw Opacus"]
        name, shape, segments = case
        rows.append(
            f"| {name} | {'x'.join(map(str, shape))} | "
            f"{'segmentation' if segments else 'classification'} | {plain * 1e3:.1f} "
            f"| {step['flowerbed plain'] * 1e3:.1f} "
            f"| {ours * 1e3:.1f} | {ours / plain:.2f}x "
            f"| {raw * 1e3:.1f} | {raw / plain:.2f}x | {ours / raw:.2f} |"
        )
        print(rows[-1], flush=True)
    write_table(
        args.out,
        f"DP-SGD step cost, batch {args.batch}, one channel, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} "
        f"(`python bench/dp_cost.py --repeats {args.repeats}`)",
        [
            "model",
            "image",
            "task",
            "plain ms/step",
            "flowerbed plain ms/step",
            "flowerbed DP ms/step",
            "flowerbed DP / plain",
            "raw Opacus ms/step",
            "raw Opacus / plain",
            "flowerbed / raw",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
