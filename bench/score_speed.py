"""Images/s of `python -m cxr score` against `python -m cxr predict` on the same images, in one run.

    python -m bench.score_speed [--images 480] [--rounds 2] [--weights cxr/starter] [--ray]

Two sets of real NIH radiographs: the shared copies at 512 px (../shared/data/nih-cxr14/images) and NIH's
originals as distributed, 1024 px PNGs (../shared/data/samples/nih, each linked under several names to make
up the count: the files are read, hashed and decoded anew every time). Every command runs as its own process
(the backend each picks by default, ``auto``) over the first half of a set and over all of it, round-robin so
that machine noise hits them alike. Steady-state images/s = half the images / (median wall time over all −
median over half): start-up (imports, weights, the backend's export and probe, worker start) cancels out and is
reported apart. ``score`` writes a fresh Parquet file each time (no resume).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.predict_speed import _cpu_name

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
Command = Callable[[list[str], str], list[str]]  # (images, a fresh output name) -> argv
REFERENCE = "cxr predict (batch 8)"
SCORE = "cxr score (batch 16; on the CPU decoding in the main process)"
# What the issue measured before predict batched and had backends; ~8x slower, so it runs on fewer images.
BASELINE = "cxr predict --backend torch --batch-size 1"
BASELINE_SHARE = 8


def image_sets(count: int, folder: Path) -> dict[str, list[str]]:
    """The two sets of ``count`` paths; the originals are hard-linked into ``folder`` under distinct names."""
    shared = [str(p) for p in sorted((SHARED / "nih-cxr14" / "images").glob("*.png"))[:count]]
    originals = sorted((SHARED / "samples" / "nih").glob("*.png"))
    linked = []
    for i in range(count):
        source = originals[i % len(originals)]
        target = folder / f"{source.stem}-{i // len(originals)}.png"
        os.link(source, target)
        linked.append(str(target))
    return {"shared NIH images, 512 px": shared, "NIH originals, 1024 px PNG": linked}


def run_count(name: str, images: list[str]) -> int:
    """How many of a set's images ``name`` runs over (the slow baseline, a share of them)."""
    return len(images) // (BASELINE_SHARE if name == BASELINE else 1)


def commands(weights: str, tmp: str) -> dict[str, Command]:
    base = [sys.executable, "-m", "cxr"]
    score = [*base, "score", "--weights", weights, "--no-progress"]
    return {
        BASELINE: lambda images, _: [
            *base, "predict", *images, "--weights", weights, "--backend", "torch", "--batch-size", "1"
        ],
        REFERENCE: lambda images, _: [*base, "predict", *images, "--weights", weights],
        SCORE: lambda images, out: [*score, *images, "--out", f"{tmp}/{out}"],
        "cxr score --workers 1 (1 decoding process)": lambda images, out: [
            *score, *images, "--out", f"{tmp}/{out}", "--workers", "1"
        ],
        "cxr score --workers 2": lambda images, out: [*score, *images, "--out", f"{tmp}/{out}", "--workers", "2"],
    }  # fmt: skip


def wall_seconds(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=480, help="per set (at most 738 for the shared set)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--weights", default=str(ROOT / "cxr" / "starter"))
    parser.add_argument("--ray", action="store_true", help="also `--engine ray --workers 1` (a local cluster per run)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        sets = image_sets(args.images, Path(tmp))
        variants = commands(args.weights, tmp)
        if args.ray:
            variants["cxr score --engine ray --workers 1"] = lambda images, out: [
                *variants[SCORE](images, out), "--engine", "ray", "--workers", "1"
            ]  # fmt: skip
        seconds: dict[tuple[str, str, int], list[float]] = {}
        runs = itertools.count()  # every score run writes a file of its own: none resumes another's
        for _ in range(args.rounds):
            for set_name, images in sets.items():
                for half in (True, False):
                    for name, command in variants.items():
                        count = run_count(name, images)
                        chosen = images[: count // 2] if half else images[:count]
                        argv = command(chosen, f"run-{next(runs)}.parquet")
                        seconds.setdefault((set_name, name, len(chosen)), []).append(wall_seconds(argv, env))
    print(f"\n{_cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}; weights {Path(args.weights).name}; ")
    print(f"median wall times of {args.rounds} interleaved rounds per command and count\n")
    print("| images | command | start-up | steady images/s | × predict |\n| --- | --- | ---: | ---: | ---: |")
    for set_name, images in sets.items():
        rows = {}  # name -> (images run, start-up s, steady images/s)
        for name in variants:
            whole = run_count(name, images)
            half = whole // 2
            t_half = statistics.median(seconds[(set_name, name, half)])
            rate = (whole - half) / (statistics.median(seconds[(set_name, name, whole)]) - t_half)
            rows[name] = (whole, t_half - half / rate, rate)
        for name, (count, start_up, rate) in rows.items():
            ratio = rate / rows[REFERENCE][2]
            print(f"| {set_name} ({count}) | {name} | {start_up:.1f} s | {rate:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
