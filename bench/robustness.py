"""One hostile site among eight: robust aggregation, clipped gossip, honesty checks, leaks.

Usage: python bench/robustness.py [--sites 8] [--rounds 10]
           [--attacks sign-flip scale label-flip noise free-ride]
           [--out bench/results/robustness.md]

PneumoniaMNIST split across the sites with Dirichlet(0.5) label skew, no DP,
1 local epoch a round, small CNN, Flower's simulation engine. The last site
is hostile in every round. Three tables:

1. the mean test AUC of the honest sites after the last round, per
   aggregation and attack; the "clean" column is the same federation with
   no hostile site, so every cell reads as a drop from it;
2. the honesty checks: in how many rounds the hostile site was flagged, and
   how many flags fell on honest sites (FedAvg: by the coordinator; gossip:
   by the neighbours and the relay);
3. the membership-inference attack AUC on the sites' final models (clean
   FedAvg), without DP and at epsilon 8.

Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from report import markdown_table, write_table

from flowerbed.audit.report import build_report
from flowerbed.config import default_sites, load_federation
from flowerbed.simulation import simulate

DATA = Path(__file__).resolve().parents[2] / "shared/data/medmnist/pneumoniamnist.npz"
DEFENCES = [  # (label, strategy, mixing)
    ("fedavg", "fedavg", "average"),
    ("krum", "krum", "average"),
    ("multi-krum", "multi-krum", "average"),
    ("median", "median", "average"),
    ("trimmed-mean", "trimmed-mean", "average"),
    ("gossip", "gossip", "average"),
    ("clipped gossip", "gossip", "clipped"),
]
CHECKED = ("fedavg", "gossip", "clipped gossip")  # where the honesty-check table looks


@dataclass(frozen=True)
class Outcome:
    honest_auc: float
    hostile_flagged_rounds: int
    honest_flags: int
    membership_auc: float


def run(strategy: str, mixing: str, attack: str | None, args, dp: bool = False) -> Outcome:
    names = default_sites(args.sites)
    hostile = names[-1]["name"]
    federation = load_federation(
        None,
        {
            "run": {"strategy": strategy, "rounds": args.rounds, "mixing": mixing},
            "data": {"source": str(DATA), "partition": "dirichlet", "alpha": 0.5},
            "privacy": {"enabled": dp, "epsilon": 8.0},
            "sites": names,
            "faults": {hostile: {"kind": attack}} if attack else {},
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        simulate(federation, out)
        metrics = pd.read_csv(out / "metrics.csv")
        flagged = build_report(out).flagged
    final = metrics[(metrics["round"] == args.rounds) & (metrics.split == "test")]
    honest = final[final.site != hostile]
    return Outcome(
        honest_auc=float(honest.auc.mean()),
        hostile_flagged_rounds=len({f["round"] for f in flagged if f["site"] == hostile}),
        honest_flags=sum(f["site"] != hostile for f in flagged),
        membership_auc=float(honest.membership_auc.mean()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--attacks", nargs="+", default=["sign-flip", "scale", "label-flip", "noise", "free-ride"]
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/robustness.md"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    columns: list[str | None] = [None, *args.attacks]
    outcomes: dict[tuple[str, str | None], Outcome] = {}
    for label, strategy, mixing in DEFENCES:
        for attack in columns:
            outcomes[label, attack] = run(strategy, mixing, attack, args)
            print(f"{label}, {attack or 'clean'}: {outcomes[label, attack]}", flush=True)
    private = run("fedavg", "average", None, args, dp=True)
    command = (
        f"`python bench/robustness.py --sites {args.sites} --rounds {args.rounds} "
        f"--attacks {' '.join(args.attacks)}`"
    )
    detection = [
        f"| {label} | "
        + " | ".join(
            f"{outcomes[label, a].hostile_flagged_rounds}/{args.rounds}, "
            f"{outcomes[label, a].honest_flags}"
            for a in columns
        )
        + " |"
        for label in CHECKED
    ]
    leaks = [
        f"| membership-inference AUC, mean over honest sites | "
        f"{outcomes['fedavg', None].membership_auc:.3f} | {private.membership_auc:.3f} |",
        f"| test AUC | {outcomes['fedavg', None].honest_auc:.3f} | {private.honest_auc:.3f} |",
    ]
    write_table(
        args.out,
        f"Honest sites' mean test AUC, PneumoniaMNIST, {args.sites} sites (the last one "
        f"hostile), Dirichlet(0.5), {args.rounds} rounds, no DP ({command})",
        ["aggregation", "clean", *args.attacks],
        [
            f"| {label} | "
            + " | ".join(f"{outcomes[label, a].honest_auc:.3f}" for a in columns)
            + " |"
            for label, _, _ in DEFENCES
        ],
        after=[
            markdown_table(
                "Honesty checks, same runs: rounds in which the hostile site was flagged, "
                "flags on honest sites",
                ["strategy", "clean", *args.attacks],
                detection,
            ),
            markdown_table(
                "Clean FedAvg, final models: privacy measured in fact",
                ["", "no DP", "epsilon 8"],
                leaks,
            ),
        ],
    )


if __name__ == "__main__":
    main()
