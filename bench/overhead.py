"""flowerbed's simulation wall time against the plain Flower app, same invocation.

Usage: python bench/overhead.py [--sites 4] [--rounds 1 5] [--out bench/results/overhead.md]

Both run FedAvg without DP on the synthetic default with the small CNN and
the same optimiser (SGD, momentum 0.9), batch size, learning rate and rounds,
on Flower's simulation engine with one CPU per virtual SuperNode. Each app
runs twice, at two round counts; the difference is the time per round
(start-up cancels out, and is shown apart), and the ratio is flowerbed's per
round over plain Flower's.
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
from functools import partial
from pathlib import Path

from flwr.simulation import run_simulation
from plain_flower_app import make_apps
from report import per_round_and_start_up, write_table

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


def run_plain(sites: int, rounds: int) -> None:
    server, client = make_apps(rounds, lr=PLAIN_LEARNING_RATE)
    run_simulation(server, client, num_supernodes=sites, backend_config=backend_config())


def run_flowerbed(sites: int, rounds: int) -> None:
    federation = load_federation(
        None,
        {
            "run": {
                "rounds": rounds,
                "optimizer": "sgd",
                "learning_rate": PLAIN_LEARNING_RATE,
                "lr_schedule": "constant",
            },
            "privacy": {"enabled": False},
            "sites": default_sites(sites),
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        simulate(federation, Path(tmp) / "run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--rounds", type=int, nargs=2, default=[1, 5])
    parser.add_argument("--out", type=Path, default=Path("bench/results/overhead.md"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("flwr").setLevel(logging.ERROR)
    few, many = sorted(args.rounds)
    walls: dict[str, dict[int, float]] = {"plain Flower": {}, "flowerbed": {}}
    peaks: dict[str, float] = {}
    for app, run in (("plain Flower", run_plain), ("flowerbed", run_flowerbed)):
        for rounds in (few, many):
            walls[app][rounds], peak = timed(partial(run, args.sites, rounds))
            peaks[app] = max(peaks.get(app, 0.0), peak)
            print(f"{app}, {rounds} rounds: {walls[app][rounds]:.1f} s", flush=True)
    split = {app: per_round_and_start_up(w) for app, w in walls.items()}
    rows = [
        f"| {app} | {walls[app][few]:.1f} | {walls[app][many]:.1f} | {rate:.2f} | "
        f"{once:.1f} | {peaks[app]:.2f} |"
        for app, (rate, once) in split.items()
    ]
    ratio = split["flowerbed"][0] / split["plain Flower"][0]
    memory = peaks["flowerbed"] / peaks["plain Flower"]
    write_table(
        args.out,
        f"Simulation, FedAvg no DP, small CNN, synthetic, {args.sites} sites "
        f"(`python bench/overhead.py --sites {args.sites} --rounds {few} {many} "
        f"--out {args.out}`)",
        ["app", f"wall s, {few} round(s)", f"wall s, {many} rounds", "s per round",
         "start-up s", "peak RSS GB"],
        [*rows, f"| ratio | | | {ratio:.2f}x | | {memory:.2f}x |"],
    )  # fmt: skip


if __name__ == "__main__":
    main()
