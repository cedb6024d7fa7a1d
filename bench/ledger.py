"""Ledger append and verify rates, signing cost, and guard + ledger cost on a FedAvg round.

Usage: python bench/ledger.py [--entries 50000] [--rounds 5] [--out bench/results/ledger.md]

Each rate is set beside the raw primitive on the same bytes in the same run:
appends and verification against raw SHA-256 of the entries' canonical
bytes, head signing against raw Ed25519 signing. Appends fsync every entry
(crash safety); the rate without fsync is shown too. The round cost runs a
site's FedAvg training round (small CNN, synthetic data, no DP) through the
ClientApp with and without the ledger and egress guard mod, as a deployed
site (its ledger fsynced entry by entry).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from report import write_table

from flowerbed.audit.ledger import Ledger, canonical, head_message
from flowerbed.audit.verify import verify_run
from flowerbed.config import (
    PrivacySettings,
    SiteSettings,
    default_sites,
    load_federation,
    save_federation,
)
from flowerbed.hospital_client import app as client_app_module
from flowerbed.hospital_client.site_folder import SiteConfig, create_site_folder
from flowerbed.models.factory import build_model
from flowerbed.protocol import records as R
from flowerbed.protocol.model_spec import ModelSpec

ENTRY = {
    "direction": "out", "kind": "train", "run": 1, "round": 3, "peer": "coordinator",
    "peer_country": "DE", "bytes": 153_412, "sha256": "ab" * 32, "epsilon": 2.5,
    "carries": ["arrays", "metrics", "site"],
}  # fmt: skip


def per_second(count: int, seconds: float) -> float:
    return count / seconds


def timed(function, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        function()
    return time.perf_counter() - start


def append_rates(folder: Path, count: int) -> tuple[float, float, float]:
    """Entries/s with fsync, without fsync, and raw SHA-256 of the same bytes."""
    key = Ed25519PrivateKey.generate()
    synced = Ledger.open(folder / "synced.jsonl", "site", "DE", key)
    with_fsync = timed(lambda: synced.append(ENTRY), count)
    unsynced = Ledger.open(folder / "unsynced.jsonl", "site", "DE", key)
    with mock.patch.object(os, "fsync", lambda fd: None):
        without_fsync = timed(lambda: unsynced.append(ENTRY), count)
    body = canonical({**ENTRY, "index": 1, "prev": "00" * 32, "time": "2026-11-25T00:00:00"})
    raw = timed(lambda: hashlib.sha256(body).digest(), count)
    return per_second(count, with_fsync), per_second(count, without_fsync), per_second(count, raw)


def verify_rates(folder: Path, count: int) -> tuple[float, float]:
    """Entries/s of ``audit verify`` over one run folder, and raw SHA-256 of its lines."""
    run = folder / "run"
    (run / "ledgers").mkdir(parents=True)
    federation = load_federation(None, {"sites": default_sites(1)})
    save_federation(federation, run / "config.toml")
    key = Ed25519PrivateKey.generate()
    site = federation.sites[0]
    with mock.patch.object(os, "fsync", lambda fd: None):
        for party, country in ((site.name, site.country), ("coordinator", site.country)):
            ledger = Ledger.open(run / "ledgers" / f"{party}.jsonl", party, country, key)
            for index in range(count // 2):
                ledger.append({**ENTRY, "direction": "none"}, sign=index == count // 2 - 1)
    lines = b"".join(p.read_bytes() for p in (run / "ledgers").glob("*.jsonl")).splitlines()
    start = time.perf_counter()
    verdict = verify_run(run)
    seconds = time.perf_counter() - start
    assert verdict.ok, verdict.problems
    raw = timed(lambda: [hashlib.sha256(line).digest() for line in lines], 1)
    return per_second(len(lines), seconds), per_second(len(lines), raw)


def signing_rates(count: int) -> tuple[float, float]:
    key = Ed25519PrivateKey.generate()
    head = "ab" * 32
    ours = timed(lambda: key.sign(head_message("hospital-01", 12345, head)).hex(), count)
    raw = timed(lambda: key.sign(bytes.fromhex(head)), count)
    return per_second(count, ours), per_second(count, raw)


def round_times(folder: Path, rounds: int) -> tuple[float, float]:
    """Seconds per site training round through the ClientApp, with and without the mod.

    The site is a deployed one (its own site folder), so its ledger is
    fsynced entry by entry.
    """
    site = SiteConfig(
        site=SiteSettings(name="hospital-01", country="DE", data="synthetic"),
        privacy=PrivacySettings(enabled=False),
    )
    node_config = {"site": str(create_site_folder(folder / "site", site).site_file)}
    spec = ModelSpec("small-cnn", 2, 1, 2)
    config = ConfigRecord(
        {R.SERVER_ROUND: 1, R.NUM_ROUNDS: rounds, R.LOCAL_EPOCHS: 1, R.BATCH_SIZE: 32,
         R.LEARNING_RATE: 0.001, R.OPTIMIZER: "adam", R.SEED: 0, R.MODEL: spec.name,
         R.SPATIAL_DIMS: 2, R.IN_CHANNELS: 1, R.OUT_CHANNELS: 2}
    )  # fmt: skip
    arrays = ArrayRecord(build_model(spec).state_dict())
    guarded = client_app_module.make_client_app()
    with mock.patch.object(client_app_module, "make_audit_mod", lambda *a: lambda m, c, n: n(m, c)):
        bare = client_app_module.make_client_app()
    times: dict[str, list[float]] = {"bare": [], "guarded": []}
    for repeat in range(rounds):
        for name, app in (("bare", bare), ("guarded", guarded)):
            message = Message(
                RecordDict({R.CONFIG: ConfigRecord(dict(config)), R.ARRAYS: arrays}),
                dst_node_id=1,
                message_type="train",
            )
            context = Context(1, 1, node_config, RecordDict(), {})
            torch.manual_seed(repeat)
            start = time.perf_counter()
            app(message, context)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["bare"]), statistics.median(times["guarded"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ledger.md"))
    args = parser.parse_args()
    for attribute, value in (("_run_id", 1), ("_task_id", 1), ("_node_id", 0)):
        setattr(TaskIdentity, attribute, value)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        synced, unsynced, raw_hash = append_rates(folder, min(args.entries, 5_000))
        verified, raw_lines = verify_rates(folder, args.entries)
        signed, raw_signed = signing_rates(5_000)
        bare, guarded = round_times(folder, args.rounds)
    rows = [
        f"| append, fsync each entry | {synced:,.0f}/s | raw SHA-256 {raw_hash:,.0f}/s | "
        f"{synced / raw_hash:.4f} |",
        f"| append, no fsync | {unsynced:,.0f}/s | raw SHA-256 {raw_hash:,.0f}/s | "
        f"{unsynced / raw_hash:.3f} |",
        f"| audit verify ({args.entries:,} entries) | {verified:,.0f}/s | "
        f"raw SHA-256 {raw_lines:,.0f}/s | {verified / raw_lines:.3f} |",
        f"| sign a head | {signed:,.0f}/s | raw Ed25519 {raw_signed:,.0f}/s | "
        f"{signed / raw_signed:.3f} |",
        f"| site FedAvg round, guard + ledger | {guarded * 1e3:.1f} ms | "
        f"without {bare * 1e3:.1f} ms | {guarded / bare:.3f} |",
    ]
    write_table(
        args.out,
        f"Ledger and guard costs, 2 cores (`python bench/ledger.py --entries {args.entries} "
        f"--rounds {args.rounds}`)",
        ["operation", "flowerbed", "baseline, same run", "ratio"],
        rows,
    )
    print(json.dumps({"verify_per_s": round(verified), "round_overhead": guarded / bare - 1}))


if __name__ == "__main__":
    main()
