"""The backend table: model time and agreement with torch fp32 of every backend, measured in one run.

    python -m bench.backends [--weights cxr/starter] [--threads 2] [--repeats 15] [--images DIR] [--limit N]

Times ``Predictor.features`` (the one model run) on one preprocessed 1024 px NIH PNG, the backends interleaved
round by round so a busy spell of the shared machine hits all alike, and reports p50 ms and the speed-up over
torch fp32. Then predicts every image in ``--images`` (default: the 738 shared NIH images) with each backend and
compares with torch fp32: max |Δp| over all (image, label) pairs, the share of pairs whose ▲ decision
(probability at or above the label's threshold) is the same, and the lowest and median per-image PSNR of the
[0, 1] heatmaps (all labels, at the network's map resolution). It also times those predictions (batches of 8,
decoding excluded): the mean model time per image over those images.

``--int8 N`` adds OpenVINO int8 (NNCF post-training quantization of the trunk, the transition conv kept in
float like the head; calibrated on the first N images of the weights' own training split) if ``nncf`` imports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from cxr.backends import OpenVINOBackend, cached_export, map_psnr, openvino_core
from cxr.io import load_image
from cxr.predictor import Predictor
from cxr.preprocess import preprocess
from cxr.weights import state_sha256

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "00000001_000.png"
SHARED_IMAGES = ROOT.parent / "shared" / "data" / "nih-cxr14" / "images"


def int8_predictor(weights: Path, calibration: list[Path], threads: int) -> Predictor:
    """A predictor whose model run is the OpenVINO export quantized to int8 by NNCF (transition conv in float)."""
    import nncf

    predictor = Predictor.from_pretrained(weights, device="cpu")
    path, _ = cached_export(predictor.model, state_sha256(predictor.model))
    core = openvino_core()
    graph = core.read_model(path)
    samples = [preprocess([load_image(f)], predictor.config).numpy() for f in calibration]
    quantized = nncf.quantize(
        graph,
        nncf.Dataset(samples),
        subset_size=len(samples),
        ignored_scope=nncf.IgnoredScope(patterns=[".*transition.*"]),  # Grad-CAM's layer stays float
    )
    compiled = core.compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    predictor.backend = OpenVINOBackend(compiled, "openvino-int8")
    return predictor


def machine() -> str:
    """CPU model, usable cores and the load average: the context every number here needs."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    flags = Path("/proc/cpuinfo").read_text()
    extras = [f for f in ("avx512_bf16", "amx_bf16", "avx512_vnni") if f in flags]
    return (
        f"{model}, {len(os.sched_getaffinity(0))} cores, {', '.join(extras) or 'no bf16/vnni'}; load {os.getloadavg()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "cxr" / "starter")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15, help="timing rounds (each runs every backend once)")
    parser.add_argument("--images", type=Path, default=SHARED_IMAGES)
    parser.add_argument("--limit", type=int, default=None, help="compare on the first N images only")
    parser.add_argument(
        "--compare", nargs="+", default=None, metavar="BACKEND",
        help="compare only these backends (table names, e.g. 'OpenVINO bf16') over the images (default: all)",
    )  # fmt: skip
    parser.add_argument("--int8", type=int, default=0, metavar="N", help="add OpenVINO int8 calibrated on N images")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; {args.threads} threads", flush=True)

    predictors = {
        "torch fp32 (reference)": Predictor.from_pretrained(args.weights, device="cpu"),
        "torch bf16 + channels_last": Predictor.from_pretrained(
            args.weights, device="cpu", precision="bf16", channels_last=True
        ),
        "OpenVINO fp32": Predictor.from_pretrained(args.weights, device="cpu", backend="openvino"),
        "OpenVINO bf16": Predictor.from_pretrained(args.weights, device="cpu", backend="openvino-bf16"),
    }
    files = sorted(args.images.glob("*.png"))[: args.limit]
    if args.int8:
        try:
            split = json.loads((args.weights / "split.json").read_text())
            calibration = [args.images / name for name in split["train"][: args.int8]]
            predictors["OpenVINO int8 (trunk; NNCF)"] = int8_predictor(args.weights, calibration, args.threads)
            calibrated = {f.name for f in calibration}
        except ImportError:
            print("nncf is not installed: no int8 row")
    reference = predictors["torch fp32 (reference)"]

    x = preprocess([load_image(IMAGE)], reference.config)
    seconds: dict[str, list[float]] = {name: [] for name in predictors}
    with torch.inference_mode():
        for predictor in predictors.values():
            predictor.features(x)  # warm-up: first-call allocations and kernel choices
        for _ in range(args.repeats):
            for name, predictor in predictors.items():
                start = time.perf_counter()
                predictor.features(x)
                seconds[name].append(time.perf_counter() - start)
    base = statistics.median(seconds["torch fp32 (reference)"])
    print(
        f"timed: {args.repeats} interleaved rounds, one {reference.config.image_size} px image; load {os.getloadavg()}"
    )

    for name, values in seconds.items():
        print(f"  {name}: {statistics.median(values) * 1000:.0f} ms p50, {base / statistics.median(values):.2f}×")
    compared = {name: p for name, p in predictors.items() if args.compare is None or name in args.compare}
    thresholds = reference.config.thresholds
    results: dict[str, dict[str, list]] = {name: {"dp": [], "same": [], "psnr": [], "held": []} for name in compared}
    busy = dict.fromkeys(compared, 0.0)  # seconds predicting the compared images, per backend
    for start in range(0, len(files), 8):
        if start % 80 == 0:
            print(f"  compared {start} of {len(files)} images; load {os.getloadavg()}", flush=True)
        chunk = [load_image(f) for f in files[start : start + 8]]
        names = [f.name for f in files[start : start + 8]]
        start = time.perf_counter()
        expected = reference.predict_batch(chunk)
        busy["torch fp32 (reference)"] = busy.get("torch fp32 (reference)", 0.0) + time.perf_counter() - start
        for name, predictor in compared.items():
            start = time.perf_counter()
            answers = expected if predictor is reference else predictor.predict_batch(chunk)
            busy[name] += 0.0 if predictor is reference else time.perf_counter() - start
            for want, got, image_name in zip(expected, answers, names, strict=True):
                row = results[name]
                row["dp"].append(float(np.abs(want.probabilities - got.probabilities).max()))
                row["same"] += list((want.probabilities >= thresholds) == (got.probabilities >= thresholds))
                row["psnr"].append(map_psnr(want.maps, got.maps))
                row["held"].append(not args.int8 or image_name not in calibrated)
    print(f"compared on {len(files)} images from {args.images}\n")
    print(
        "| backend | ms (p50) | speed-up | mean ms over the images | speed-up | max \\|Δp\\| | ▲ same "
        "| heatmap PSNR min / median (dB) | images < 35 dB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    mean_base = busy["torch fp32 (reference)"] / len(files)
    for name, row in results.items():
        ms = statistics.median(seconds[name]) * 1000
        psnr = row["psnr"]
        mean = busy[name] / len(files)
        print(
            f"| {name} | {ms:.0f} | {base * 1000 / ms:.2f}× | {mean * 1000:.0f} | {mean_base / mean:.2f}× | "
            f"{max(row['dp']):.4f} | {np.mean(row['same']):.2%} | "
            f"{_db(min(psnr))} / {_db(statistics.median(psnr))} | {sum(p < 35 for p in psnr)} of {len(psnr)} |"
        )
    if args.int8 and "OpenVINO int8 (trunk; NNCF)" in results:
        row = results["OpenVINO int8 (trunk; NNCF)"]
        held = [dp for dp, keep in zip(row["dp"], row["held"], strict=True) if keep]
        print(f"\nint8 on the {len(held)} images not used for calibration: max |Δp| {max(held):.4f}")
    print(f"\nload at the end {os.getloadavg()}")


def _db(value: float) -> str:
    return "identical" if value == float("inf") else f"{value:.1f}"


if __name__ == "__main__":
    main()
