"""Test AUC and accuracy on PneumoniaMNIST: pooled, local-only, FedAvg, FedProx, +/- DP.

Usage: python bench/accuracy.py [--rounds 20] [--seeds 0 1 2] [--out bench/results/accuracy.md]

4 sites, Dirichlet(0.5) label skew, 1 local epoch per round, the default model
(small-cnn; small-cnn-dp under DP) and optimiser, DP
at epsilon 8 per site. Pooled trains one model on all training data for as
many epochs as the federation has rounds; local-only trains each site alone
on its shard. Every row is scored alike: the mean over the sites' own test
splits (slices of the official test set; the pooled model on each of them),
then over seeds. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import warnings
from pathlib import Path

import torch
from report import write_table

from flowerbed.catalogue import SEGMENTATION
from flowerbed.config import Federation, load_federation
from flowerbed.datasets.source import load_dataset, site_data
from flowerbed.hospital_client.dp_plan import steps_per_epoch
from flowerbed.hospital_client.training import (
    DPPlan,
    TrainPlan,
    evaluate,
    scheduled_learning_rate,
    train,
)
from flowerbed.models.factory import build_model
from flowerbed.privacy.accounting import PrivacyAccount, plan_noise
from flowerbed.protocol.model_spec import ModelSpec
from flowerbed.simulation import simulate

DATA = Path(__file__).resolve().parents[2] / "shared/data/medmnist/pneumoniamnist.npz"


def federation(strategy: str, dp: bool, rounds: int, seed: int) -> Federation:
    return load_federation(
        None,
        {
            "run": {"strategy": strategy, "rounds": rounds, "seed": seed},
            "data": {"source": str(DATA), "partition": "dirichlet", "alpha": 0.5},
            "privacy": {"enabled": dp, "epsilon": 8.0},
        },
    )


def federated(strategy: str, dp: bool, rounds: int, seed: int) -> tuple[float, float]:
    fed = federation(strategy, dp, rounds, seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = simulate(fed, Path(tmp) / "run")
    rows = [folder.latest[site.name, "test"] for site in fed.sites]
    return statistics.mean(r.auc for r in rows), statistics.mean(r.accuracy for r in rows)


def alone(
    train_set, test_sets: list, fed: Federation, epochs: int, seed: int, classes: int = 2
) -> tuple[float, float]:
    """One model trained on ``train_set`` only, the way a site would without a federation;
    its mean test AUC (Dice for segmentation) and accuracy over ``test_sets``, each at its
    operating point chosen on ``train_set``."""
    torch.manual_seed(seed)
    task = train_set.task
    spec = ModelSpec.for_images(fed.network_for(task), train_set.sample_shape, classes)
    model = build_model(spec)  # the federation's own default
    steps = steps_per_epoch(len(train_set), fed.run.batch_size)
    dp = None
    if fed.privacy.enabled:
        noise = plan_noise(fed.privacy.epsilon, fed.privacy.delta, 1 / steps, steps * epochs)
        dp = DPPlan(noise, fed.privacy.max_grad_norm)
    account = PrivacyAccount()
    for epoch in range(epochs):
        # each epoch stands for a round: the same learning-rate schedule as the federation
        rate = scheduled_learning_rate(
            fed.learning_rate_for(task), fed.run.lr_schedule, epoch + 1, epochs
        )
        plan = TrainPlan(1, fed.run.batch_size, rate, optimizer=fed.run.optimizer, dp=dp)
        train(model, train_set, classes, plan, account, seed * 1000 + epoch)
    scores = [evaluate(model, test, classes, calibration=train_set)[0] for test in test_sets]
    main_score = [s.dice if task == SEGMENTATION else s.auc for s in scores]
    return statistics.mean(main_score), statistics.mean(s.accuracy for s in scores)


def pooled(dp: bool, rounds: int, seed: int) -> tuple[float, float]:
    fed = federation("fedavg", dp, rounds, seed)
    tests = [site_data(fed, site).test for site in fed.sites]
    return alone(load_dataset(str(DATA)).train, tests, fed, rounds, seed)


def local_only(dp: bool, rounds: int, seed: int) -> tuple[float, float]:
    fed = federation("fedavg", dp, rounds, seed)
    scores = [
        alone(shard.train, [shard.test], fed, rounds, seed)
        for shard in (site_data(fed, site) for site in fed.sites)
    ]
    return statistics.mean(s[0] for s in scores), statistics.mean(s[1] for s in scores)


SETUPS = {
    "pooled": pooled,
    "local-only": local_only,
    "fedavg": lambda dp, rounds, seed: federated("fedavg", dp, rounds, seed),
    "fedprox": lambda dp, rounds, seed: federated("fedprox", dp, rounds, seed),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("bench/results/accuracy.md"))
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"{DATA} is absent; this benchmark needs ../shared/data")
    warnings.filterwarnings("ignore")
    rows = []
    for name, run in SETUPS.items():
        for dp in (False, True):
            results = [run(dp, args.rounds, seed) for seed in args.seeds]
            auc = statistics.mean(r[0] for r in results)
            acc = statistics.mean(r[1] for r in results)
            rows.append(f"| {name} | {'epsilon 8' if dp else 'off'} | {auc:.3f} | {acc:.3f} |")
            print(rows[-1], flush=True)
    seeds = " ".join(map(str, args.seeds))
    write_table(
        args.out,
        f"PneumoniaMNIST, 4 sites, Dirichlet(0.5), {args.rounds} rounds x 1 epoch, default model "
        "(small-cnn; small-cnn-dp under DP), "
        f"seeds {seeds} (`python bench/accuracy.py --rounds {args.rounds} --seeds {seeds}`)",
        ["setup", "DP", "test AUC", "test accuracy"],
        rows,
    )


if __name__ == "__main__":
    main()
