"""Data beyond memory: one site's epoch over 20,000 PNGs of 128x128 (1.3 GB as float32).

Usage: python bench/data_scale.py [--images 20000] [--folder DIR]
       [--out bench/results/data_scale.md]

Writes the PNGs and their manifest (``--folder``, default a temporary one;
kept there if given, and reused on a later run), then, each in a fresh
process so that its peak memory is its own: flowerbed opening the manifest
(``load_dataset``: the checks read every image once) and training one epoch
of the small CNN on it at 128 px without DP, and a plain MONAI loop over the
same files (``Dataset`` with ``LoadImaged``, ``EnsureChannelFirstd``,
``ScaleIntensityd``, a shuffling ``DataLoader``, the same network and
optimiser). It prints the epoch times, their ratio and each process's peak
resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityd
from PIL import Image
from report import write_table
from torch.nn import functional as F

from flowerbed.datasets.source import load_dataset
from flowerbed.hospital_client.training import TrainPlan, train
from flowerbed.models.factory import build_model
from flowerbed.privacy.accounting import PrivacyAccount
from flowerbed.protocol.model_spec import ModelSpec

SIDE = 128
BATCH = 32


def write_pngs(folder: Path, count: int) -> Path:
    """``count`` noisy PNGs, class 1 brighter in its left half; the manifest beside them."""
    manifest = folder / "manifest.csv"
    if manifest.exists() and len(manifest.read_text().splitlines()) == count + 1:
        return manifest
    rng = np.random.default_rng(0)
    rows = ["path,label"]
    for i in range(count):
        label = i % 2
        pixels = rng.integers(0, 160, size=(SIDE, SIDE))
        pixels[:, : SIDE // 2] += 60 * label
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:05d}.png")
        rows.append(f"{i:05d}.png,{label}")
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def flowerbed_epoch(manifest: str) -> dict:
    torch.manual_seed(0)
    start = time.perf_counter()
    data = load_dataset(manifest, 1, 0, SIDE).train
    opened = time.perf_counter() - start
    model = build_model(ModelSpec.for_images("small-cnn", data.sample_shape, 2))
    start = time.perf_counter()
    train(model, data, 2, TrainPlan(1, BATCH, 0.05), PrivacyAccount(), seed=0)
    epoch = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    return {"kind": type(data).__name__, "open_s": opened, "epoch_s": epoch, "peak_mb": peak}


def monai_epoch(manifest: str) -> dict:
    torch.manual_seed(0)
    table = pd.read_csv(manifest)
    folder = Path(manifest).parent
    pairs = zip(table.path, table.label, strict=True)
    items = [{"image": str(folder / path), "label": int(label)} for path, label in pairs]
    transform = Compose(
        [LoadImaged("image"), EnsureChannelFirstd("image"), ScaleIntensityd("image")]
    )
    loader = DataLoader(Dataset(items, transform), batch_size=BATCH, shuffle=True)
    model = build_model(ModelSpec.for_images("small-cnn", (1, SIDE, SIDE), 2)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    start = time.perf_counter()
    for batch in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(batch["image"].as_tensor()), batch["label"]).backward()
        optimizer.step()
    epoch = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    return {"epoch_s": epoch, "peak_mb": peak}


def in_fresh_process(way: str, manifest: Path) -> dict:
    command = [sys.executable, __file__, "--measure", way, str(manifest)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("bench/results/data_scale.md"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.measure:
        way, manifest = args.measure
        print(json.dumps({"flowerbed": flowerbed_epoch, "monai": monai_epoch}[way](manifest)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = write_pngs(folder, args.images)
        ours, plain = in_fresh_process("flowerbed", manifest), in_fresh_process("monai", manifest)
    size_gb = args.images * SIDE * SIDE * 4 / 1e9
    rows = [
        f"| flowerbed ({ours['kind']}) | {ours['open_s']:.1f} | {ours['epoch_s']:.1f} "
        f"| {ours['epoch_s'] / plain['epoch_s']:.2f}x | {ours['peak_mb']:.0f} |",
        f"| plain MONAI Dataset + DataLoader | - | {plain['epoch_s']:.1f} | 1.00x "
        f"| {plain['peak_mb']:.0f} |",
    ]
    write_table(
        args.out,
        f"One site, {args.images:,} PNGs of {SIDE}x{SIDE} ({size_gb:.2f} GB as float32), small "
        f"CNN, batch {BATCH}, no DP, one epoch, each in a fresh process "
        f"(`python bench/data_scale.py --images {args.images}`)",
        ["loop", "open and check (s)", "epoch (s)", "epoch / plain", "peak RSS (MB)"],
        rows,
    )


if __name__ == "__main__":
    main()
