"""flowerbed's simulation wall time against the plain Flower app, same invocation.

Usage: python bench/overhead.py [--sites 4] [--rounds 5] [--out bench/results/overhead.md]

Both run FedAvg without DP on the synthetic default with the small CNN and
the same optimiser (SGD, momentum 0.9), batch size, learning rate and rounds,
on Flower's simulation engine with one CPU per virtual SuperNode. The ratio is flowerbed / plain wall time.
Peak memory is the sum of resident memory of this process and its children
(Ray workers) sampled every 0.5 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path

from flwr.simulation import run_simulation
from plain_flower_app import make_apps
from report import write_table

from flowerbed.config import default_sites, load_federation
from flowerbed.simulation import backend_config, simulate

PLAIN_LEARNING_RATE = 0.01  # both apps: SGD with momentum 0.9 at this rate, batch 32


class PeakMemory:
    """Peak total RSS of this process tree, sampled in a thread (no psutil needed)."""

    def __enter__(self) -> PeakMemory:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))


def _tree_rss_bytes(root: int) -> int:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except OSError:
            continue
        total += pages * os.sysconf("SC_PAGE_SIZE")
    return total


def timed(run) -> tuple[float, float]:
    with PeakMemory() as memory:
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
    return elapsed, memory.peak / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/overhead.md"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("flwr").setLevel(logging.ERROR)

    server, client = make_apps(args.rounds, lr=PLAIN_LEARNING_RATE)
    plain_s, plain_gb = timed(
        lambda: run_simulation(
            server, client, num_supernodes=args.sites, backend_config=backend_config()
        )
    )
    federation = load_federation(
        None,
        {
            "run": {
                "rounds": args.rounds,
                "optimizer": "sgd",
                "learning_rate": PLAIN_LEARNING_RATE,
            },
            "privacy": {"enabled": False},
            "sites": default_sites(args.sites),
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        ours_s, ours_gb = timed(lambda: simulate(federation, Path(tmp) / "run"))
    write_table(
        args.out,
        f"Simulation wall time, FedAvg no DP, small CNN, synthetic, {args.sites} sites, "
        f"{args.rounds} rounds (`python bench/overhead.py --sites {args.sites} "
        f"--rounds {args.rounds} --out {args.out}`)",
        ["app", "wall s", "s per round (incl. start-up)", "peak RSS GB"],
        [
            f"| plain Flower | {plain_s:.1f} | {plain_s / args.rounds:.2f} | {plain_gb:.2f} |",
            f"| flowerbed | {ours_s:.1f} | {ours_s / args.rounds:.2f} | {ours_gb:.2f} |",
            f"| ratio | {ours_s / plain_s:.2f}x | | {ours_gb / plain_gb:.2f}x |",
        ],
    )


if __name__ == "__main__":
    main()
