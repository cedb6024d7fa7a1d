"""Test Dice on synthetic-seg or a real set: pooled, FedAvg, gossip, with and without DP.

Usage: python bench/segmentation.py [--data synthetic-seg|hippocampus] [--rounds 10]
       [--seeds 0 1 2] [--out bench/results/segmentation[_hippocampus].md]

4 sites, IID, 1 local epoch per round, the default network (MONAI UNet) and
optimiser (Adam at 0.01 without DP, SGD at 0.04 under DP-SGD), DP at epsilon
8 per site. Pooled trains one model on all training data for as many epochs
as the federation has rounds, in this same invocation, beside every
federated row. Every row is scored alike: Dice (mean over foreground
classes) on each site's own test split, then the mean over sites and seeds.
``--data hippocampus`` takes the MSD hippocampus volumes of ../shared/data
instead (195 MRI volumes, 3 labels, resized to 32 per axis; each site holds
out 20 % of its share).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import warnings
from pathlib import Path

import numpy as np
from accuracy import alone
from report import write_table

from flowerbed.config import Federation, load_federation
from flowerbed.datasets.base import ImageSet
from flowerbed.datasets.source import load_dataset, site_data
from flowerbed.simulation import simulate

HIPPOCAMPUS = Path(__file__).resolve().parents[2] / "shared/data/seg/msd_hippocampus/manifest.csv"
SOURCES = {"synthetic-seg": "synthetic-seg", "hippocampus": str(HIPPOCAMPUS)}


# (strategy, gossip topology). At 4 sites the exponential graph is complete: gossip's
# Metropolis-Hastings weights are then FedAvg's exact average; the ring is not.
SETUPS = [("fedavg", "exponential"), ("gossip", "exponential"), ("gossip", "ring")]


def federation(
    source: str, size: int, setup: tuple[str, str], dp: bool, rounds: int, seed: int
) -> Federation:
    strategy, topology = setup
    return load_federation(
        None,
        {
            "run": {"strategy": strategy, "topology": topology, "rounds": rounds, "seed": seed},
            "data": {"source": source, "image_size": size},
            "privacy": {"enabled": dp, "epsilon": 8.0},
        },
    )


def federated(fed: Federation) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        folder = simulate(fed, Path(tmp) / "run")
    return statistics.mean(folder.latest[site.name, "test"].dice for site in fed.sites)


def pooled(fed: Federation) -> float:
    """One model on every site's training data, scored on each site's own test split."""
    shards = [site_data(fed, site) for site in fed.sites]
    everything = load_dataset(fed.data.source, len(fed.sites), fed.run.seed, fed.data.image_size)
    tests = [shard.test for shard in shards]
    train = everything.train
    if everything.test is None:  # held out per site: pool what the sites train on
        train = _concatenated([shard.train for shard in shards])
    return alone(train, tests, fed, fed.run.rounds, fed.run.seed, everything.num_classes)[0]


def _concatenated(sets: list[ImageSet]) -> ImageSet:
    return ImageSet(
        np.concatenate([s.images for s in sets]), np.concatenate([s.labels for s in sets])
    )


def measure(source: str, size: int, rounds: int, seeds: list[int]) -> list[str]:
    """Per DP setting: pooled, then FedAvg and gossip beside it."""
    rows = []
    for dp in (False, True):
        base = [pooled(federation(source, size, SETUPS[0], dp, rounds, s)) for s in seeds]
        for setup in SETUPS:
            dice = [federated(federation(source, size, setup, dp, rounds, s)) for s in seeds]
            gap = statistics.mean(dice) - statistics.mean(base)
            name = setup[0] if setup[0] == "fedavg" else f"gossip ({setup[1]})"
            rows.append(
                f"| {Path(source).parent.name or source} | {name} | "
                f"{'epsilon 8' if dp else 'off'} | {_mean_sd(dice)} | {_mean_sd(base)} | "
                f"{gap:+.3f} |"
            )
            print(rows[-1], flush=True)
    return rows


def _mean_sd(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.3f}{spread}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(SOURCES), default="synthetic-seg")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.data == "hippocampus" and not HIPPOCAMPUS.is_file():
        raise SystemExit(f"{HIPPOCAMPUS} is absent; --data hippocampus needs ../shared/data")
    rows = measure(SOURCES[args.data], 32, args.rounds, args.seeds)
    seeds = " ".join(map(str, args.seeds))
    suffix = "" if args.data == "synthetic-seg" else f"_{args.data}"
    write_table(
        args.out or Path(f"bench/results/segmentation{suffix}.md"),
        f"Test Dice on {args.data} (mean over foreground classes, each site's own test split), "
        f"4 sites, IID, {args.rounds} rounds x 1 epoch, UNet at 32 per axis, seeds {seeds}, "
        "pooled trained in the same invocation "
        f"(`python bench/segmentation.py --data {args.data} --rounds {args.rounds} "
        f"--seeds {seeds}`)",
        ["data", "strategy", "DP", "federated Dice", "pooled Dice", "federated - pooled"],
        rows,
    )


if __name__ == "__main__":
    main()
