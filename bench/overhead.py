"""flowerbed's simulation wall time against the plain Flower app, same invocation.

Usage: python bench/overhead.py [--sites 4] [--rounds 21] [--repeats 1]
                                [--out bench/results/overhead.md]

Both run FedAvg without DP on the synthetic default with the small CNN and
the same optimiser (SGD, momentum 0.9), batch size, learning rate and rounds,
on Flower's simulation engine with one CPU per virtual SuperNode. Each round
ends when its evaluation is aggregated; a round's time is the time between
two such ends, and each app's figure is the mean over its rounds after the
first (``--repeats`` alternates the apps and pools their rounds). Timing
rounds inside a run keeps a slow spell of this shared machine from moving a
whole figure: the difference of two whole runs, used before, put the plain
app's round at 1000 sites at 54 s one day and 91 s another. Not the
median: Flower's simulation grid polls for replies every 0.1 s, so a round
of half a second takes one of a few whole steps, and a median jumps between
them. Start-up is the time to the end of the first round less one round.
The ratio is flowerbed's round over plain Flower's.
Peak memory is the sum over this process and its children (Ray workers),
sampled every 0.5 s, of PSS (the target's measure; the ratio is of PSS) and
of RSS (which counts a page the workers share once per worker).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation
from plain_flower_app import make_apps
from report import write_table

from flowerbed.config import default_sites, load_federation
from flowerbed.simulation import backend_config, simulate

PLAIN_LEARNING_RATE = 0.01  # both apps: SGD with momentum 0.9 at this rate, batch 32


class PeakMemory:
    """Peak total PSS and RSS of this process tree, sampled in a thread (no psutil needed).

    PSS (proportional set size) is the target's measure: it splits each page
    shared by Ray's workers among them, where RSS counts it once per worker.
    """

    def __enter__(self) -> PeakMemory:
        self.peak_pss, self.peak_rss, self._stop = 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            pss, rss = _tree_memory_bytes(os.getpid())
            self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)


def _tree_memory_bytes(root: int) -> tuple[int, int]:
    """Summed PSS and RSS of ``root`` and its descendants, from ``/proc/PID/smaps_rollup``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    totals, todo = {"Pss:": 0, "Rss:": 0}, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            field_name, *value = line.split()
            if field_name in totals:
                totals[field_name] += int(value[0]) * 1024  # kB
    return totals["Pss:"], totals["Rss:"]


class RoundClock:
    """When each round of a run ends: its evaluation aggregated, timed in this process.

    Both apps aggregate with Flower's ``FedAvg`` (flowerbed's strategy mixes
    its site reporting in front and calls it), and the simulation runs the
    ServerApp in a thread of this process, so one patch times both alike.
    """

    def __enter__(self) -> RoundClock:
        self.start, self.ends = time.perf_counter(), []
        self._original = original = FedAvg.aggregate_evaluate

        def timed(strategy, *args, **kwargs):
            result = original(strategy, *args, **kwargs)
            self.ends.append(time.perf_counter())
            return result

        FedAvg.aggregate_evaluate = timed
        return self

    def __exit__(self, *exc) -> None:
        FedAvg.aggregate_evaluate = self._original

    def rounds(self) -> list[float]:
        """Seconds each round after the first took."""
        return [later - earlier for earlier, later in zip(self.ends, self.ends[1:], strict=False)]


@dataclass
class Timing:
    """One app's rounds (pooled over repeats), start-ups, whole-run walls and peak memory."""

    rounds: list[float] = field(default_factory=list)
    start_ups: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    peak_pss_gb: float = 0.0
    peak_rss_gb: float = 0.0

    def add(self, run) -> None:
        with PeakMemory() as memory, RoundClock() as clock:
            run()
            wall = time.perf_counter() - clock.start
        rounds = clock.rounds()
        self.rounds += rounds
        self.start_ups.append(clock.ends[0] - clock.start - statistics.mean(rounds))
        self.walls.append(wall)
        self.peak_pss_gb = max(self.peak_pss_gb, memory.peak_pss / 2**30)
        self.peak_rss_gb = max(self.peak_rss_gb, memory.peak_rss / 2**30)


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
    parser.add_argument("--rounds", type=int, default=21, help="at least 2")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/overhead.md"))
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: a round's time is between two round ends")
    warnings.filterwarnings("ignore")
    logging.getLogger("flwr").setLevel(logging.ERROR)
    timings = {"plain Flower": Timing(), "flowerbed": Timing()}
    for _ in range(args.repeats):
        for app, run in (("plain Flower", run_plain), ("flowerbed", run_flowerbed)):
            timings[app].add(partial(run, args.sites, args.rounds))
            print(f"{app}: rounds took {[round(r, 2) for r in timings[app].rounds]} s", flush=True)
    per_round = {app: statistics.mean(t.rounds) for app, t in timings.items()}
    rows = [
        f"| {app} | {statistics.median(t.walls):.1f} | {per_round[app]:.2f} | "
        f"{len(t.rounds)} | {statistics.median(t.start_ups):.1f} | "
        f"{t.peak_pss_gb:.2f} | {t.peak_rss_gb:.2f} |"
        for app, t in timings.items()
    ]
    ratio = per_round["flowerbed"] / per_round["plain Flower"]
    memory = timings["flowerbed"].peak_pss_gb / timings["plain Flower"].peak_pss_gb
    repeats = f" --repeats {args.repeats}" if args.repeats > 1 else ""
    write_table(
        args.out,
        f"Simulation, FedAvg no DP, small CNN, synthetic, {args.sites} sites, {args.rounds} "
        f"rounds (`python bench/overhead.py --sites {args.sites} --rounds {args.rounds}"
        f"{repeats} --out {args.out}`)",
        [
            "app",
            "wall s",
            "s per round",
            "rounds timed",
            "start-up s",
            "peak PSS GB",
            "peak RSS GB",
        ],
        [*rows, f"| ratio | | {ratio:.2f}x | | | {memory:.2f}x | |"],
    )


if __name__ == "__main__":
    main()
