"""Gossip on ring, exponential and one-peer exponential graphs against FedAvg, same invocation.

Usage: python bench/gossip.py [--sites 8 32] [--rounds 20] [--seeds 0] [--dp]
                              [--lr-schedule constant|cosine] [--runs fedavg exponential ...]
                              [--out bench/results/gossip.md]

PneumoniaMNIST split across N sites with Dirichlet(0.5) label skew, 1 local
epoch per round, small CNN, Flower's simulation engine. For each run: mean
over sites of the test AUC and accuracy after the last round (FedAvg: the
global model on each site's test split; gossip: each site's own model), the
mean bytes a site sends per round, wall time per round (after round 1, so
Ray's start-up is left out) and its ratio to FedAvg's, and the gap to
FedAvg's AUC in points: the mean over seeds of each seed's gap (both runs of
a seed share its partition and its sites' training seeds) with its standard
error, printed seed by seed too. The true consensus
distance per round (a simulation-only diagnostic) is plotted to
the ``.png`` beside the table (first seed). Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib
import pandas as pd
from report import write_table

from flowerbed.config import default_sites, load_federation
from flowerbed.simulation import CONSENSUS_FILE, simulate

matplotlib.use("Agg")
from matplotlib import pyplot as plt

DATA = Path(__file__).resolve().parents[2] / "shared/data/medmnist/pneumoniamnist.npz"
RUNS = [
    ("fedavg", None),
    ("gossip", "ring"),
    ("gossip", "exponential"),
    ("gossip", "one-peer-exponential"),
]
RUN_NAMES = [topology or strategy for strategy, topology in RUNS]  # what --runs names


def run(strategy: str, topology: str | None, sites: int, args, seed: int) -> dict:
    rounds = args.rounds
    run_settings = {
        "strategy": strategy,
        "rounds": rounds,
        "seed": seed,
        "lr_schedule": args.lr_schedule,
    }
    if topology:
        run_settings["topology"] = topology
    federation = load_federation(
        None,
        {
            "run": run_settings,
            "data": {"source": str(DATA), "partition": "dirichlet", "alpha": 0.5},
            "privacy": {"enabled": args.dp},
            "sites": default_sites(sites),
        },
    )
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        simulate(federation, out, on_round=lambda r, rows: stamps.append(time.perf_counter()))
        metrics = pd.read_csv(out / "metrics.csv")
        consensus = pd.read_csv(out / CONSENSUS_FILE).iloc[:, 1].tolist() if topology else []
    final = metrics[(metrics["round"] == rounds) & (metrics.split == "test")]
    trained = metrics[metrics.split == "train"]
    return {
        "auc": final.auc.mean(),
        "accuracy": final.accuracy.mean(),
        "bytes": trained.bytes_sent.mean(),
        "per_round": statistics.mean(b - a for a, b in itertools.pairwise(stamps)),
        "consensus": consensus,
    }


def gap_to(baseline: list[dict], seeded: list[dict], seeds: list[int], name: str) -> str:
    """FedAvg's AUC less this run's, in points: the mean of the per-seed gaps, with its
    standard error over seeds when there are several; each seed's gap is printed."""
    gaps = [100 * float(b["auc"] - r["auc"]) for b, r in zip(baseline, seeded, strict=True)]
    by_seed = ", ".join(f"{seed}: {gap:.2f}" for seed, gap in zip(seeds, gaps, strict=True))
    print(f"{name}: AUC points below FedAvg, by seed: {by_seed}", flush=True)
    if len(gaps) < 2:
        return f"{gaps[0]:.2f}"
    return f"{statistics.mean(gaps):.2f} +/- {statistics.stdev(gaps) / len(gaps) ** 0.5:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--dp", action="store_true", help="DP-SGD at epsilon 8 per site")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="mean over these")
    parser.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument(
        "--runs",
        nargs="+",
        default=RUN_NAMES,
        choices=RUN_NAMES,
        help="which of FedAvg and the gossip graphs to run (FedAvg, the baseline, always runs)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/gossip.md"))
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"{DATA} is absent; this benchmark needs ../shared/data")
    warnings.filterwarnings("ignore")
    rows = []
    figure = plt.figure(figsize=(5 * len(args.sites), 3.5))
    for axis, sites in zip(
        figure.subplots(1, len(args.sites), squeeze=False)[0], args.sites, strict=True
    ):
        baseline = None  # FedAvg's runs, one per seed
        for strategy, topology in RUNS:
            if strategy != "fedavg" and topology not in args.runs:
                continue
            seeded = [run(strategy, topology, sites, args, s) for s in args.seeds]
            result = {
                key: statistics.mean(r[key] for r in seeded)
                for key in ("auc", "accuracy", "bytes", "per_round")
            }
            baseline = baseline or seeded
            baseline_round = statistics.mean(r["per_round"] for r in baseline)
            name = f"gossip, {topology}" if topology else "FedAvg"
            gap = gap_to(baseline, seeded, args.seeds, name) if topology else ""
            rows.append(
                f"| {sites} | {name} | {result['auc']:.3f} | {result['accuracy']:.3f} | "
                f"{gap} | "
                f"{result['bytes'] / 1e3:.0f} kB | {result['per_round']:.2f} s | "
                f"{result['per_round'] / baseline_round:.2f}x |"
            )
            print(rows[-1], flush=True)
            if topology:
                axis.semilogy(range(1, args.rounds + 1), seeded[0]["consensus"], label=topology)
        axis.set(title=f"{sites} sites", xlabel="round", ylabel="consensus distance")
        axis.legend()
    figure.tight_layout()
    figure.savefig(args.out.with_suffix(".png"), dpi=120)
    sizes = " ".join(map(str, args.sites))
    seeds = " ".join(map(str, args.seeds))
    dp = "DP-SGD epsilon 8" if args.dp else "no DP"
    options = f"{' --dp' if args.dp else ''} --lr-schedule {args.lr_schedule}"
    if len(args.runs) < len(RUNS):
        options += f" --runs {' '.join(args.runs)}"
    write_table(
        args.out,
        f"PneumoniaMNIST, Dirichlet(0.5), {args.rounds} rounds x 1 epoch, small CNN, {dp}, "
        f"{args.lr_schedule} learning rate, mean of seeds {seeds} (`python bench/gossip.py "
        f"--sites {sizes} --rounds {args.rounds} --seeds {seeds}{options} --out {args.out}`)",
        ["sites", "run", "mean site test AUC", "accuracy", "AUC points below FedAvg",
         "sent per site per round", "wall per round", "vs FedAvg"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()
