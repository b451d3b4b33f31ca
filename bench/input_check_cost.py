"""What the input check costs: a full predict with the bundled starter's check against the same predict without it.

    python -m bench.input_check_cost [--repeats 7]

Both run round-robin on the same decoded real radiograph (batch 1, fp32, CPU), so machine noise hits them
alike; the check alone (descriptors + head + density score on the already computed transition map) is
timed too. Prints medians and the ratios to the predict without a check, measured in this one run.
"""

from __future__ import annotations

import argparse
import platform

import torch

from bench.predict_speed import IMAGE, ROOT, time_round_robin
from cxr.input_check import descriptors
from cxr.io import load_image
from cxr.predictor import Predictor
from cxr.preprocess import preprocess

STARTER = ROOT / "cxr" / "starter"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    checked = Predictor.from_pretrained(STARTER, device="cpu")
    plain = Predictor.from_pretrained(STARTER, device="cpu")
    plain.input_checker = None
    image = load_image(IMAGE)
    with torch.inference_mode():
        features = checked.features(preprocess([image], checked.config))
    checker = checked.input_checker

    def check_only() -> object:
        return checker.decide(descriptors([image], features))

    tasks = {"predict, no check": lambda: plain.predict_batch([image]),
             "predict with check": lambda: checked.predict_batch([image]),
             "the check alone": check_only}  # fmt: skip
    medians = time_round_robin(tasks, dict.fromkeys(tasks, args.repeats))
    base = medians["predict, no check"]
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {IMAGE.name}")
    for name, seconds in medians.items():
        print(f"{name:<20} {seconds * 1000:9.1f} ms   {seconds / base:6.3f} x predict without the check")


if __name__ == "__main__":
    main()
