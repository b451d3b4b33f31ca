"""Latency of the running Space's API, and what a label switch costs compared with a model run.

    python app.py --weights DIR &                       # the server under test
    python bench/app_latency.py --url http://127.0.0.1:7860/ --weights DIR

Prints median/p90 seconds of ``/predict`` (sequential), the wall time of N concurrent calls, and, in
this process, one ``Predictor.predict`` against one ``Prediction.overlay`` (what switching the label
or opacity re-runs on the server: no model).
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gradio_client import Client, handle_file

from cxr.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
IMAGES = sorted((ROOT / "examples").glob("*.png"))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _summary(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"{name:<34} median {statistics.median(ordered):6.3f} s   p90 {p90:6.3f} s   (n={len(ordered)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a running app.py")
    parser.add_argument("--weights", type=Path, help="the same weights folder, for the in-process comparison")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--concurrent", type=int, default=16)
    args = parser.parse_args()

    client = Client(args.url, verbose=False, analytics_enabled=False)
    files = [handle_file(str(path)) for path in IMAGES]
    client.predict(files[0], api_name="/predict")  # warm-up
    sequential = [
        _timed(lambda i=i: client.predict(files[i % len(files)], api_name="/predict")) for i in range(args.repeats)
    ]
    print(_summary("/predict, one at a time", sequential))
    cam = [_timed(lambda: client.predict(files[0], "Effusion", 0.5, api_name="/cam")) for _ in range(args.repeats)]
    print(_summary("/cam, one at a time", cam))

    def call(i: int) -> None:
        client.predict(files[i % len(files)], api_name="/predict")

    with ThreadPoolExecutor(args.concurrent) as pool:
        wall = _timed(lambda: list(pool.map(call, range(args.concurrent))))
    name = f"{args.concurrent} concurrent /predict calls"
    print(f"{name:<34} wall   {wall:6.3f} s   ({args.concurrent / wall:.2f} calls/s)")

    if args.weights:
        predictor = Predictor.from_pretrained(args.weights)
        prediction = predictor.predict(IMAGES[0])
        model = [_timed(lambda: predictor.predict(IMAGES[0])) for _ in range(args.repeats)]
        redraw = [_timed(lambda: prediction.overlay("Effusion", 0.5)) for _ in range(args.repeats)]
        print(_summary("in-process Predictor.predict", model))
        print(_summary("in-process overlay (label switch)", redraw))


if __name__ == "__main__":
    main()
