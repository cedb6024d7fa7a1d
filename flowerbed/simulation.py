"""Run a whole federation on one machine with Flower's simulation engine (Ray).

Not a separate implementation: the same ServerApp and ClientApp as in
deployment, each site a virtual SuperNode. Everything that can be checked
before Ray starts (config, every site's data, the network under Opacus) is
checked first, so a bad input costs a second, not a start-up.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from flwr.simulation import run_simulation

from flowerbed.audit.report import write_reports
from flowerbed.audit.roster import PUBLIC_FILE, build_roster, public_toml, write_roster
from flowerbed.config import Federation, save_federation
from flowerbed.datasets.source import forget_loaded_data, site_data
from flowerbed.errors import ConfigError, DataError
from flowerbed.faults import behave
from flowerbed.hospital_client.app import make_client_app
from flowerbed.hospital_client.site_folder import (
    KEYS_DIR,
    public_site,
    write_private,
    write_site_keys,
)
from flowerbed.models.dp_safe import check_fits, preflight
from flowerbed.models.factory import build_model
from flowerbed.models.model_file import MODEL_FILE, load_state
from flowerbed.protocol.model_spec import ModelSpec
from flowerbed.run_folder import RunFolder, check_new_run_folder, with_roster
from flowerbed.run_layout import ROSTER_FILE, SITES_DIR
from flowerbed.server_app import check_coordinator_residency, make_server_app
from flowerbed.strategies.gossip import plan_topology
from flowerbed.strategies.observer import SiteRow

MAX_SITES = 4096  # measured up to 1000 (docs/benchmarks.md); beyond this memory runs out first
CONSENSUS_FILE = "consensus.csv"


def backend_config() -> dict:
    """Ray sized for this machine: one CPU per virtual SuperNode, all cores used, quiet."""
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": os.cpu_count() or 1,
            "logging_level": "error",
            "log_to_driver": False,
        },
    }


def check_before_start(federation: Federation) -> tuple[ModelSpec, str]:
    """Load every site's data and pre-flight the network; raise the first problem found.

    Returns the network the run trains, as the roll call will find it, and the task.
    """
    if len(federation.sites) > MAX_SITES:
        raise ConfigError(
            f"{len(federation.sites)} sites: a simulation on one machine runs at most "
            f"{MAX_SITES} (1000 sites take 2.8 GB and 13 s a round on 2 cores); "
            "pass fewer sites, or deploy them as SuperNodes"
        )
    first = site_data(federation, federation.sites[0])
    for site in federation.sites[1:]:
        data = site_data(federation, site)
        kind = (data.task, data.sample_shape, data.num_classes)
        if kind != (first.task, first.sample_shape, first.num_classes):
            raise DataError(
                f"site {site.name}: {data.task} of images {data.sample_shape} with "
                f"{data.num_classes} classes differs from site {federation.sites[0].name}'s "
                f"{first.task} of {first.sample_shape} with {first.num_classes}; all sites "
                "must share one task"
            )
    spec = ModelSpec.for_images(
        federation.network_for(first.task), first.sample_shape, first.num_classes
    )
    model = build_model(spec)
    check_fits(model, spec, first.task)
    if federation.privacy.enabled:
        preflight(model, first.sample_shape)
    if federation.run.strategy == "gossip":
        plan_topology(federation)
    check_coordinator_residency(federation)
    return spec, first.task


def consensus_distance(states: list[dict[str, torch.Tensor]]) -> float:
    """Mean over sites of the mean squared distance of their parameters to the sites' average.

    A diagnostic only simulation can compute: it needs every site's model in
    one place, which in deployment no party ever has.
    """
    names = [n for n, t in states[0].items() if t.is_floating_point()]
    size = sum(states[0][n].numel() for n in names)
    total = 0.0
    for name in names:
        stacked = torch.stack([state[name].double() for state in states])
        total += float(((stacked - stacked.mean(dim=0)) ** 2).sum())
    return total / (len(states) * size)


def _with_consensus(
    federation: Federation, folder: RunFolder, then: Callable[[int, list[SiteRow]], None] | None
) -> Callable[[int, list[SiteRow]], None]:
    """Append each gossip round's true consensus distance to ``consensus.csv``, then ``then``.

    Over the sites that keep a model so far (one that failed from the start has none).
    """
    out = folder.path / CONSENSUS_FILE
    out.write_text("round,consensus_distance_simulation_diagnostic\n")

    def on_round(server_round: int, rows: list[SiteRow]) -> None:
        homes = [folder.path / SITES_DIR / site.name for site in federation.sites]
        states = [load_state(home / MODEL_FILE) for home in homes if (home / MODEL_FILE).exists()]
        with open(out, "a") as csv:
            csv.write(f"{server_round},{consensus_distance(states)!r}\n")
        if then is not None:
            then(server_round, rows)

    return on_round


def enrol_sites(federation: Federation, folder: RunFolder) -> None:
    """Keys for every simulated site in its home, and the federation's roster built from
    their public files as a coordinator builds it from real sites' (``RUN/roster.toml``,
    named in ``RUN/config.toml``): every site holds the relay to it, as deployed ones do."""
    public_files = []
    for site in federation.sites:
        home = folder.path / SITES_DIR / site.name
        write_site_keys(home / KEYS_DIR)
        public = public_site(site.name, site.country, home / KEYS_DIR)
        write_private(home / PUBLIC_FILE, public_toml(public))
        public_files.append(home / PUBLIC_FILE)
    roster = folder.path / ROSTER_FILE
    write_roster(build_roster(public_files, federation.coordinator_country), roster)
    save_federation(with_roster(federation, roster), folder.config_file)


def simulate(
    federation: Federation,
    out: Path,
    on_round: Callable[[int, list[SiteRow]], None] | None = None,
    on_start: Callable[[ModelSpec, str], None] | None = None,
    resume: bool = False,
) -> RunFolder:
    """Train ``federation`` in simulation, writing the run folder ``out``; with ``resume``,
    go on with the run in ``out`` from its last completed round (``RunFolder.resume``:
    ``federation`` is then the run's own, from its ``config.toml``).

    ``on_start(spec, task)`` is called with the network to train and the task once
    every check has passed, just before Ray starts (a progress display begun
    earlier would stand above a one-line input error); ``on_round(round, rows)``
    is called after each round (training and evaluation) with every site's rows
    of that round. A gossip run's sites
    keep their models under ``out/sites/<site>/``, and ``out/consensus.csv``
    gets the true consensus distance per round (a simulation-only diagnostic).
    Every party's ledger is under ``out/ledgers/``, and the audit report
    (``report.html``, ``.md``, ``.json``) is written at the end, also after
    a failure. Raises ``RunStopped`` if the run had to end early; the folder then still
    holds every finished round and the reason.
    """
    checkpoint = None
    if resume:
        folder, federation, checkpoint = RunFolder.resume(out, on_round=on_round)
    else:
        check_new_run_folder(Path(out).resolve())
    spec, task = check_before_start(federation)
    forget_loaded_data()  # the sites load their own; this process trains nothing
    if not resume:
        folder = RunFolder.create(out, federation, on_round=on_round)
        enrol_sites(federation, folder)
    if federation.run.strategy == "gossip":
        folder.on_round = _with_consensus(federation, folder, on_round)
    config_file = folder.config_file.resolve()
    if on_start is not None:
        on_start(spec, task)
    try:
        with _flower_logs_to(folder.log_file):
            run_simulation(
                server_app=make_server_app(config_file, folder, checkpoint),
                client_app=make_client_app(
                    str(config_file),
                    str(folder.path / SITES_DIR),
                    str(folder.ledgers),
                    str(folder.log_file),
                    act=behave,
                ),
                num_supernodes=len(federation.sites),
                backend_config=backend_config(),
            )
    finally:
        if any(folder.ledgers.glob("*.jsonl")):
            write_reports(folder.path)
    return folder


@contextmanager
def _flower_logs_to(log_file: Path):
    """Flower's log (every message exchange, every error) to ``log_file``, not the console.

    Our progress display and one-line errors replace it on the console; the
    sites' tracebacks join it there (``hospital_client.site_errors``).
    """
    logger = logging.getLogger("flwr")
    level, console_levels = logger.level, [(h, h.level) for h in logger.handlers]
    to_file = logging.FileHandler(log_file)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    propagate, logger.propagate = logger.propagate, False
    logger.setLevel(logging.INFO)
    for handler, _ in console_levels:
        handler.setLevel(logging.CRITICAL + 1)
    logger.addHandler(to_file)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.removeHandler(to_file)
        to_file.close()
        logger.setLevel(level)
        logger.propagate = propagate
        for handler, console_level in console_levels:
            handler.setLevel(console_level)
