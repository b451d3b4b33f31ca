"""Inference speed at 512 x 512, batch 1, on this machine: forward vs full predict vs pytorch-grad-cam.

    python -m bench.predict_speed [--repeats 7] [--trunk resnet50]

Variants run round-robin, so machine noise hits them alike; medians are reported with ratios to the
fp32 bare forward of the same run. Also checks whether channels-last and bf16 keep probabilities
within 0.01 of fp32 on every real sample image available.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from cxr.config import ModelConfig
from cxr.io import load_image
from cxr.model import CXRNet
from cxr.predictor import Predictor, precision_context
from cxr.preprocess import preprocess

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "00000001_000.png"  # a real 1024 x 1024 NIH radiograph
SAMPLE_GLOBS = [
    "examples/*.png",
    "tests/data/*.png",
    "tests/data/*.jpg",
    "tests/data/*.dcm",
    "../shared/data/samples/*/*",
]


def time_round_robin(tasks: dict[str, Callable[[], object]], repeats: dict[str, int]) -> dict[str, float]:
    """Median seconds per call of each task; one warm-up call each, then interleaved repeats."""
    for task in tasks.values():
        task()
    samples: dict[str, list[float]] = {name: [] for name in tasks}
    for round_ in range(max(repeats.values())):
        for name, task in tasks.items():
            if round_ < repeats[name]:
                start = time.perf_counter()
                task()
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def spread_logits_like_a_trained_model(predictors: list[Predictor], images: list[np.ndarray]) -> None:
    """Scale every predictor's classifier so logits on the samples have std 2, as after training.

    Random initialisation gives logits near 0, where a sigmoid hides any precision loss.
    """
    x = preprocess(images, predictors[0].config)
    with torch.inference_mode():
        std = float(predictors[0].model(x).std())
    for predictor in predictors:
        with torch.no_grad():
            predictor.model.fc.weight.mul_(2.0 / std)
            predictor.model.fc.bias.mul_(2.0 / std)


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--trunk", default="resnet50")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = ModelConfig(trunk=args.trunk)
    model = CXRNet(config).eval()
    predictors = {
        "fp32": Predictor(model),
        "channels_last": Predictor(CXRNet(config).eval(), channels_last=True),
        "bf16": Predictor(CXRNet(config).eval(), precision="bf16"),
        "bf16+channels_last": Predictor(CXRNet(config).eval(), precision="bf16", channels_last=True),
    }
    for predictor in list(predictors.values())[1:]:
        predictor.model.load_state_dict(model.state_dict())
    x = preprocess(load_image(IMAGE), config)

    def forward(predictor: Predictor) -> Callable[[], object]:
        inputs = x.to(memory_format=predictor.memory_format)

        def run() -> object:
            with torch.inference_mode(), precision_context(predictor.device, predictor.precision):
                return predictor.model(inputs)

        return run

    def full_predict(predictor: Predictor) -> Callable[[], object]:
        return lambda: predictor.predict(IMAGE).overlay(predictor.labels[1])

    cam = GradCAM(model=model, target_layers=[model.transition])

    def grad_cam_all_labels() -> object:
        return [cam(input_tensor=x, targets=[ClassifierOutputTarget(k)]) for k in range(config.num_labels)]

    tasks: dict[str, Callable[[], object]] = {}
    for name, predictor in predictors.items():
        tasks[f"(a) forward, {name}"] = forward(predictor)
        tasks[f"(b) full predict, {name}"] = full_predict(predictor)
    tasks["(c) pytorch-grad-cam GradCAM, 14 labels, fp32"] = grad_cam_all_labels
    repeats = {name: (max(2, args.repeats // 2) if name.startswith("(c)") else args.repeats) for name in tasks}
    medians = time_round_robin(tasks, repeats)

    base = medians["(a) forward, fp32"]
    cpu = _cpu_name()
    machine = f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    cam_repeats = repeats[list(tasks)[-1]]
    setup = f"{args.trunk} at {config.image_size} px, batch 1, median of {args.repeats} ({cam_repeats} for c)"
    print(f"\n{machine}, {setup}\n")
    print("| what | seconds | × (a) fp32 |\n| --- | ---: | ---: |")
    for name, seconds in medians.items():
        print(f"| {name} | {seconds:.3f} | {seconds / base:.2f} |")
    for name in predictors:
        print(f"\n(b)/(a) {name}: {medians[f'(b) full predict, {name}'] / medians[f'(a) forward, {name}']:.2f}")
    grad_cam = medians["(c) pytorch-grad-cam GradCAM, 14 labels, fp32"]
    print(f"(c)/(b) fp32: {grad_cam / medians['(b) full predict, fp32']:.1f}")

    samples = sorted({p.resolve() for pattern in SAMPLE_GLOBS for p in ROOT.glob(pattern) if p.is_file()})
    images = [load_image(p) for p in samples]
    spread_logits_like_a_trained_model(list(predictors.values()), images)
    reference = predictors["fp32"].predict_batch(images, batch_size=4)
    print(f"\nAgreement with fp32 on {len(images)} real sample images (random trunk, logits scaled to std 2):")
    for name in list(predictors)[1:]:
        results = predictors[name].predict_batch(images, batch_size=4)
        delta = max(
            float(np.abs(r.probabilities - f.probabilities).max()) for r, f in zip(results, reference, strict=True)
        )
        print(f"- {name}: max |Δ probability| = {delta:.4f} ({'within' if delta <= 0.01 else 'OUTSIDE'} 0.01)")


if __name__ == "__main__":
    main()
