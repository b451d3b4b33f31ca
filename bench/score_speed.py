"""Images/s of `python -m cxr score` against `python -m cxr predict` on the same images, in one run.

    python -m bench.score_speed [--images 24] [--rounds 2] [--weights cxr/starter] [--ray]

Each command runs as its own process over the same real NIH images (../shared/data/nih-cxr14/images), start-up
and weights loading included, round-robin so machine noise hits them alike; medians of the wall times are reported
with ratios to `cxr predict`. `score` writes a fresh Parquet file each round (no resume).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.predict_speed import _cpu_name

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "data" / "nih-cxr14" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--weights", default=str(ROOT / "cxr" / "starter"))
    parser.add_argument("--ray", action="store_true", help="also `--engine ray --workers 1` (a local cluster per run)")
    args = parser.parse_args()
    images = [str(p) for p in sorted(IMAGES.glob("*.png"))[: args.images]]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    base = [sys.executable, "-m", "cxr"]
    with tempfile.TemporaryDirectory() as tmp:
        variants = {
            "cxr predict (fp32, batch 8)": lambda r: [*base, "predict", *images, "--weights", args.weights],
            "cxr score (fp32, batch 16, 1 decoding worker)": lambda r: [
                *base, "score", *images, "--out", f"{tmp}/a{r}.parquet", "--weights", args.weights, "--no-progress"
            ],
            "cxr score (fp32, batch 8, decoding in the main process)": lambda r: [
                *base, "score", *images, "--out", f"{tmp}/c{r}.parquet", "--weights", args.weights, "--no-progress",
                "--workers", "0", "--batch-size", "8",
            ],
            "cxr score --precision bf16 --channels-last": lambda r: [
                *base, "score", *images, "--out", f"{tmp}/b{r}.parquet", "--weights", args.weights, "--no-progress",
                "--precision", "bf16", "--channels-last",
            ],
        }  # fmt: skip
        if args.ray:
            variants["cxr score --engine ray --workers 1"] = lambda r: [
                *base, "score", *images, "--out", f"{tmp}/r{r}.parquet", "--weights", args.weights, "--no-progress",
                "--engine", "ray", "--workers", "1",
            ]  # fmt: skip
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(args.rounds):
            for name, command in variants.items():
                start = time.perf_counter()
                subprocess.run(command(r), env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                seconds[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    reference = medians["cxr predict (fp32, batch 8)"]
    print(f"\n{_cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}; {len(images)} NIH images at 512 px, ")
    print(f"weights {Path(args.weights).name}; median wall time of {args.rounds} interleaved rounds per command\n")
    print("| command | seconds | images/s | × predict |\n| --- | ---: | ---: | ---: |")
    for name, s in medians.items():
        print(f"| {name} | {s:.1f} | {len(images) / s:.2f} | {reference / s:.2f} |")


if __name__ == "__main__":
    main()
