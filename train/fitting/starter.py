"""``python -m train starter``: the validation sweep that made the bundled starter model.

Trains one ``fit`` per setting of a small grid (input size x learning rate) side by side on one GPU,
all on the same official split restricted to the images at hand (``--available-only``, same seed,
so the same validation patients), and picks the run whose best epoch has the highest validation
mean AUROC. The test split is never read here: the chosen weights are evaluated once, afterwards,
with ``python -m train evaluate``.

    python -m train prepare --data-dir NIH --cache-dir C512 --image-size 512 --available-only
    python -m train starter --data-dir NIH --cache-root C --out runs/starter     # caches C256, C384, C512
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from train.fitting.export import METRICS_LOG, read_metrics_log
from train.fitting.validation import score

# The grid and the settings every run shares. From scratch (no ImageNet weights can be fetched where the
# starter was made), so: long schedules on few images, warm-up, weight decay, the default augmentation.
SIZES = (256, 384, 512)
LEARNING_RATES = (1e-3, 3e-4)
SHARED = ["--no-pretrained", "--available-only", "--val-fraction", "0.2", "--seed", "0", "--warmup-epochs", "3"]
# The runs share one GPU, so each one's memory plan (which reads the free memory) is replaced by one micro-batch.
SHARED += ["--weight-decay", "0.05", "--accum-steps", "1", "--no-progress"]


def run_name(size: int, lr: float) -> str:
    """Folder name of one grid point, e.g. ``s512-lr0.001``."""
    return f"s{size}-lr{lr:g}"


def best_epoch(run: Path) -> dict[str, Any] | None:
    """The epoch record with the highest validation mean AUROC in a run's metrics log (None: no epoch)."""
    log = run / "weights" / METRICS_LOG
    if not log.is_file():
        return None
    # fit's own rule (validation.score), so the sweep ranks runs by the epoch each one exported.
    best = max(read_metrics_log(log), key=score, default=None)
    return best if best is not None and best["val_mean_auroc"] is not None else None


def choose(out: Path, names: list[str]) -> tuple[str | None, list[tuple[str, dict[str, Any] | None]]]:
    """The best run's name by validation mean AUROC, and every run's best epoch record."""
    results = [(name, best_epoch(out / name)) for name in names]
    finished = [(name, record) for name, record in results if record is not None]
    chosen = max(finished, key=lambda item: score(item[1]), default=(None, None))[0]
    return chosen, results


def main(argv: list[str]) -> int:
    """Run the grid in parallel, print a table, and write ``OUT/chosen.json``; exit 1 if no run finished."""
    parser = argparse.ArgumentParser(prog="python -m train starter", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="NIH root (metadata, the images at hand)")
    parser.add_argument("--cache-root", type=Path, required=True, help="prefix of the caches: ROOT256, ROOT512, ...")
    parser.add_argument("--out", type=Path, required=True, help="one run folder per grid point goes here")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="input sizes to try")
    parser.add_argument("--lrs", type=float, nargs="+", default=list(LEARNING_RATES), help="peak learning rates")
    parser.add_argument("--epochs", type=int, default=60, help="epochs per run (the best epoch is exported)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=3, help="DataLoader workers per run")
    parser.add_argument("fit_options", nargs="*", help="more `fit` options for every run (after --)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    names, processes = [], []
    for size, lr in itertools.product(args.sizes, args.lrs):
        name = run_name(size, lr)
        command = [sys.executable, "-m", "train", "fit", "--data-dir", str(args.data_dir), *SHARED]
        command += ["--cache-dir", f"{args.cache_root}{size}", "--out", str(args.out / name)]
        command += ["--image-size", str(size), "--lr", str(lr), "--epochs", str(args.epochs)]
        command += ["--batch-size", str(args.batch_size), "--workers", str(args.workers), *args.fit_options]
        log = open(args.out / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed after wait()
        processes.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
        names.append(name)
    for process, log in processes:
        process.wait()
        log.close()
    chosen, results = choose(args.out, names)
    print("| run | best epoch | validation mean AUROC |\n|---|---:|---:|")
    for name, record in results:
        cells = f"{record['epoch']} | {record['val_mean_auroc']:.4f}" if record else "– | failed (see its log)"
        print(f"| {name}{' (chosen)' if name == chosen else ''} | {cells} |")
    if chosen is None:
        return 1
    (args.out / "chosen.json").write_text(json.dumps({"run": chosen, "weights": str(args.out / chosen / "weights")}))
    return 0
