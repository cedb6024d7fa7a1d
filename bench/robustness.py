"""One hostile site among eight: robust aggregation and clipped gossip against FedAvg.

Usage: python bench/robustness.py [--sites 8] [--rounds 10] [--attacks sign-flip label-flip]
                                  [--out bench/results/robustness.md]

PneumoniaMNIST split across the sites with Dirichlet(0.5) label skew, no DP,
1 local epoch a round, small CNN, Flower's simulation engine. The last site
is hostile in every round. Each cell is the mean test AUC of the honest
sites after the last round; the first row is the same federation with no
hostile site, so every cell reads as a drop from it. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import pandas as pd
from report import write_table

from flowerbed.config import default_sites, load_federation
from flowerbed.simulation import simulate

DATA = Path(__file__).resolve().parents[2] / "shared/data/medmnist/pneumoniamnist.npz"
DEFENCES = [  # (label, strategy, mixing)
    ("fedavg", "fedavg", "average"),
    ("krum", "krum", "average"),
    ("median", "median", "average"),
    ("trimmed-mean", "trimmed-mean", "average"),
    ("gossip", "gossip", "average"),
    ("clipped gossip", "gossip", "clipped"),
]


def honest_auc(strategy: str, mixing: str, attack: str | None, sites: int, rounds: int) -> float:
    names = default_sites(sites)
    hostile = names[-1]["name"]
    federation = load_federation(
        None,
        {
            "run": {"strategy": strategy, "rounds": rounds, "mixing": mixing},
            "data": {"source": str(DATA), "partition": "dirichlet", "alpha": 0.5},
            "privacy": {"enabled": False},
            "sites": names,
            "faults": {hostile: {"kind": attack}} if attack else {},
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        simulate(federation, Path(tmp) / "run")
        metrics = pd.read_csv(Path(tmp) / "run" / "metrics.csv")
    final = metrics[(metrics["round"] == rounds) & (metrics.split == "test")]
    return float(final[final.site != hostile].auc.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--attacks", nargs="+", default=["sign-flip", "label-flip"])
    parser.add_argument("--out", type=Path, default=Path("bench/results/robustness.md"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    columns: list[str | None] = [None, *args.attacks]
    table: dict[str, list[float]] = {}
    for label, strategy, mixing in DEFENCES:
        table[label] = []
        for attack in columns:
            auc = honest_auc(strategy, mixing, attack, args.sites, args.rounds)
            table[label].append(auc)
            print(f"{label}, {attack or 'clean'}: honest AUC {auc:.3f}", flush=True)
    write_table(
        args.out,
        f"Honest sites' mean test AUC, PneumoniaMNIST, {args.sites} sites (one hostile), "
        f"Dirichlet(0.5), {args.rounds} rounds, no DP (`python bench/robustness.py --sites "
        f"{args.sites} --rounds {args.rounds} --attacks {' '.join(args.attacks)}`)",
        ["aggregation", "clean", *args.attacks],
        [
            f"| {label} | " + " | ".join(f"{auc:.3f}" for auc in aucs) + " |"
            for label, aucs in table.items()
        ],
    )


if __name__ == "__main__":
    main()
